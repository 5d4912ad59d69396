"""unpad_input / pad_input: hand-computed expectations on a 2x4 mask, then round trips."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.model.padding import pad_input, unpad_input


def test_unpad_2x4_by_hand():
    mask = torch.tensor([[1, 1, 1, 0],
                         [1, 1, 0, 0]])
    hidden = torch.arange(8).view(2, 4) * 10  # (2, 4): the value says where a token came from
    rows, indices, cu_seqlens, max_seqlen = unpad_input(hidden, mask)
    assert rows.tolist() == [0, 10, 20, 40, 50]
    assert indices.tolist() == [0, 1, 2, 4, 5]
    assert cu_seqlens.tolist() == [0, 3, 5]
    assert cu_seqlens.dtype == torch.int32
    assert max_seqlen == 3 and isinstance(max_seqlen, int)


def test_unpad_keeps_trailing_dims_and_pad_restores_zeros():
    mask = torch.tensor([[0, 1, 1, 0],
                         [1, 1, 1, 1]])  # left padding and a full row work too
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    rows, indices, cu_seqlens, max_seqlen = unpad_input(hidden, mask)
    assert rows.shape == (6, 3)
    assert indices.tolist() == [1, 2, 4, 5, 6, 7]
    assert cu_seqlens.tolist() == [0, 2, 6] and max_seqlen == 4
    restored = pad_input(rows, indices, batch=2, seqlen=4)
    assert torch.equal(restored, hidden * mask.unsqueeze(-1))


def test_pad_input_is_differentiable():
    rows = torch.randn(5, 2, requires_grad=True)
    indices = torch.tensor([0, 1, 2, 4, 5])
    pad_input(rows, indices, 2, 4).sum().backward()
    assert torch.equal(rows.grad, torch.ones(5, 2))


def test_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="must be \\(batch, seqlen\\)"):
        unpad_input(torch.zeros(2, 4, 3), torch.ones(2, 5))
    with pytest.raises(ValueError, match="5 rows but 4 indices"):
        pad_input(torch.zeros(5, 3), torch.arange(4), 2, 4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=6, max_size=6), min_size=1, max_size=5))
def test_round_trip_any_mask(mask_rows):
    mask = torch.tensor(mask_rows, dtype=torch.bool)
    hidden = torch.randn(*mask.shape, 2)
    rows, indices, cu_seqlens, max_seqlen = unpad_input(hidden, mask)
    lengths = mask.sum(1)
    assert rows.shape[0] == int(lengths.sum())
    assert cu_seqlens.tolist() == [0, *torch.cumsum(lengths, 0).tolist()]
    assert max_seqlen == int(lengths.max())
    assert torch.equal(pad_input(rows, indices, *mask.shape), hidden * mask.unsqueeze(-1))
