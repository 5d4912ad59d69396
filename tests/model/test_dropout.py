"""The CPU dropout (bertplat.model.dropout), the packed layout of the padded attention fallback, and the
math attention path that uses both."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bertplat.model.attention import _attend_math, attend_padded, attend_unpadded, token_layout
from bertplat.model.dropout import Dropout, dropout, keep_mask
from bertplat.model.padding import unpad_input


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_drop_share_and_scale_follow_the_quantised_probability(p):
    torch.manual_seed(0)
    n = 400_000
    mask = keep_mask((n,), p)
    drop = round(p * 65536) / 65536  # p' of the docstring
    assert abs(drop - p) <= 2**-17
    kept = mask != 0
    # every kept element is scaled by exactly 1 / (1 - p'), so the expectation is the input's
    torch.testing.assert_close(mask[kept], torch.full((int(kept.sum()),), 1 / (1 - drop)), rtol=1e-6, atol=0)
    share = 1 - kept.double().mean().item()
    sd = math.sqrt(drop * (1 - drop) / n)
    assert abs(share - drop) < 5 * sd, (share, drop)
    assert abs(mask.double().mean().item() - 1.0) < 5 * sd / (1 - drop)


def test_bits_are_independent_between_neighbouring_elements():
    # four elements share one 64-bit draw: their keep decisions must still be independent
    torch.manual_seed(1)
    kept = (keep_mask((200_000, 4), 0.5) != 0).double()
    both = (kept[:, 0] * kept[:, 1]).mean().item()
    assert abs(both - 0.25) < 0.005
    assert abs((kept[:, 2] * kept[:, 3]).mean().item() - 0.25) < 0.005


def test_dropout_is_reproducible_from_the_torch_seed_and_differs_between_seeds():
    x = torch.ones(64, 384)
    torch.manual_seed(7)
    a = dropout(x, 0.1)
    torch.manual_seed(7)
    b = dropout(x, 0.1)
    torch.manual_seed(8)
    c = dropout(x, 0.1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_identity_off_training_or_at_zero_and_zeros_at_one():
    x = torch.randn(5, 7)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    assert dropout(x, 1e-9) is x  # below the 16-bit resolution: nothing is ever dropped
    assert torch.count_nonzero(dropout(x, 1.0)) == 0
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(x, 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(-0.1)
    module = Dropout(0.3).eval()
    assert module(x) is x and module.state_dict() == {} and "p=0.3" in repr(module)


def test_gradient_is_the_mask():
    x = torch.randn(32, 48, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.2)
    y.sum().backward()
    torch.manual_seed(3)
    mask = keep_mask(x.shape, 0.2)
    torch.testing.assert_close(y, x.detach() * mask)
    torch.testing.assert_close(x.grad, mask)


def test_math_attention_matches_sdpa_without_dropout_and_applies_the_mask_with_it():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 8) for _ in range(3))
    key_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]).bool().view(3, 1, 1, 6)
    for m in (key_mask, None):
        torch.testing.assert_close(_attend_math(q, k, v, m, 0.0), F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                                   atol=1e-6, rtol=0)
    torch.manual_seed(5)
    out = attend_padded(q, k, v, key_mask, 0.1)  # CPU + dropout: the math path
    torch.manual_seed(5)
    drop = keep_mask((3, 2, 6, 6), 0.1)
    probs = torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~key_mask, float("-inf")), dim=-1)
    torch.testing.assert_close(out, (probs * drop) @ v, atol=1e-6, rtol=0)


def test_packed_layout_attends_within_each_row_for_any_mask_and_a_wider_input():
    # holes, left padding and two columns that no row uses: the fallback attends over (B, longest row) only
    torch.manual_seed(0)
    mask = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 0],
                         [1, 1, 1, 1, 0, 0, 0, 0],
                         [0, 0, 0, 1, 0, 0, 0, 0]])
    qkv = torch.randn(3, 8, 3, 2, 4)
    rows, indices, cu_seqlens, max_seqlen = unpad_input(qkv, mask)
    layout = token_layout(indices, cu_seqlens, max_seqlen, 3, 8)
    assert max_seqlen == 4 and layout.key_mask.shape == (3, 1, 1, 4)
    assert layout.packed.tolist() == [0, 1, 2, 4, 5, 6, 7, 8]  # row * 4 + place within the row
    q, k, v = rows.unbind(1)
    out = attend_unpadded(q, k, v, layout, 0.0, impl="padded")
    for b in range(3):
        s, e = int(cu_seqlens[b]), int(cu_seqlens[b + 1])
        qs, ks, vs = (x[s:e].transpose(0, 1) for x in (q, k, v))  # (nh, n, hd)
        ref = torch.softmax(qs @ ks.transpose(1, 2) / 2, dim=-1) @ vs
        torch.testing.assert_close(out[s:e], ref.transpose(0, 1), atol=1e-6, rtol=0)
