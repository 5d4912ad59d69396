"""Pooling against hand-computed values on a 2x4 batch whose padding holds garbage."""

from __future__ import annotations

import pytest
import torch

from bertplat.embed.pooling import l2_normalize, pool_padded, pool_rows

# (B=2, T=4, H=2); sequence 0 has 3 real tokens, sequence 1 has 2. Padding holds 100s that must never count.
HIDDEN = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [5.0, 0.0], [100.0, 100.0]],
                       [[-2.0, 1.0], [4.0, 3.0], [100.0, -100.0], [100.0, 100.0]]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])


@pytest.mark.parametrize(("mode", "expected"), [
    ("cls", [[1.0, 2.0], [-2.0, 1.0]]),
    ("mean", [[3.0, -2.0 / 3.0], [1.0, 2.0]]),
    ("max", [[5.0, 2.0], [4.0, 3.0]]),
    ("mean_sqrt_len", [[9.0 / 3 ** 0.5, -2.0 / 3 ** 0.5], [2.0 / 2 ** 0.5, 4.0 / 2 ** 0.5]]),
])
def test_pooling_matches_hand_computed_values_and_ignores_padding(mode, expected):
    out = pool_padded(HIDDEN, MASK, mode)
    torch.testing.assert_close(out, torch.tensor(expected))
    garbage = HIDDEN.clone()
    garbage[MASK == 0] = -7e4  # other padding values: same result
    torch.testing.assert_close(pool_padded(garbage, MASK, mode), out)


def test_unpadded_rows_pool_like_the_padded_batch():
    rows = HIDDEN.flatten(0, 1)[MASK.flatten().bool()]  # (5, 2): sequence 0's 3 rows, then sequence 1's 2
    seq = torch.tensor([0, 0, 0, 1, 1])
    for mode in ("cls", "mean", "max", "mean_sqrt_len"):
        torch.testing.assert_close(pool_rows(rows, seq, torch.tensor([3, 2]), mode), pool_padded(HIDDEN, MASK, mode))


def test_max_pooling_of_all_negative_states_is_not_zero():
    h = torch.full((1, 2, 2), -3.0)
    torch.testing.assert_close(pool_padded(h, torch.tensor([[1, 1]]), "max"), torch.tensor([[-3.0, -3.0]]))


def test_l2_normalisation_gives_unit_rows_in_the_same_direction():
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    torch.testing.assert_close(l2_normalize(x), torch.tensor([[0.6, 0.8], [0.0, -1.0]]))


def test_unknown_pooling_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="cls, mean, max"):
        pool_padded(HIDDEN, MASK, "weightedmean")
