"""Batching by length under a token budget: every row once, budgets kept, padding as expected."""

from __future__ import annotations

import numpy as np
import pytest

from bertplat.finetune.batching import pad_batch, pad_labels, plan_batches


@pytest.mark.parametrize("train", [True, False])
def test_every_row_is_in_exactly_one_batch_and_budgets_hold(train):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=1000)
    batches = plan_batches(lengths, max_batch_size=32, max_tokens=1024,
                           rng=np.random.default_rng(1) if train else None, pool_batches=4)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    for b in batches:
        assert 1 <= len(b) <= 32 and len(b) * lengths[b].max() <= 1024


def test_sorted_batches_pad_less_than_random_ones():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=2000)
    batches = plan_batches(lengths, max_batch_size=32, rng=np.random.default_rng(2), pool_batches=20)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    naive = sum(len(c) * lengths[c].max() for c in np.array_split(np.arange(2000), 2000 // 32))
    assert padded < 0.7 * naive


def test_default_pools_hold_at_most_a_quarter_of_a_small_set_so_batches_change_between_epochs():
    lengths = np.random.default_rng(0).integers(3, 60, size=1508)   # CoNLL-2003's 1,508-sentence sample
    batches = [plan_batches(lengths, 32, rng=np.random.default_rng([0, epoch])) for epoch in range(2)]
    # 1508 // (4 * 32) = 11 batches per pool: 4 pools of 352 rows and one of 100, each sorted on its own, so
    # the length bands of the batches overlap (one pool over all rows gives disjoint bands); only the last
    # batch of the last pool is short, so an epoch has ceil(1508 / 32) = 48 batches
    assert len(batches[0]) == 48 and sorted(map(len, batches[0]))[1] == 32
    spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches[0])
    assert sum(lo < prev_hi for (lo, _), (_, prev_hi) in zip(spans[1:], spans)) > len(spans) // 2
    same = {tuple(sorted(b.tolist())) for b in batches[0]} & {tuple(sorted(b.tolist())) for b in batches[1]}
    assert len(same) <= 2, f"{len(same)} batches repeat exactly from one epoch to the next"
    one_pool = [plan_batches(lengths, 32, rng=np.random.default_rng([0, e]), pool_batches=50) for e in range(2)]
    spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in one_pool[0])
    assert sum(lo < prev_hi for (lo, _), (_, prev_hi) in zip(spans[1:], spans)) == 0


def test_evaluation_order_is_deterministic_and_longest_first():
    lengths = np.array([5, 9, 1, 9, 3])
    assert [b.tolist() for b in plan_batches(lengths, max_batch_size=2)] == [[1, 3], [0, 4], [2]]


def test_training_order_depends_only_on_the_seed():
    lengths = np.arange(100) % 17 + 1
    a = plan_batches(lengths, 8, rng=np.random.default_rng(5))
    b = plan_batches(lengths, 8, rng=np.random.default_rng(5))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_a_budget_below_the_longest_example_is_refused():
    with pytest.raises(ValueError, match="smaller than the longest example"):
        plan_batches(np.array([10, 200]), 8, max_tokens=128)


def test_pad_batch_builds_mask_and_segments():
    out = pad_batch([np.array([2, 7, 3, 8, 3]), np.array([2, 9, 3])], np.array([3, 3]), pad_id=0,
                    pad_to_multiple_of=4)
    assert out["input_ids"].tolist() == [[2, 7, 3, 8, 3, 0, 0, 0], [2, 9, 3, 0, 0, 0, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]]
    assert pad_labels([np.array([1, 2]), np.array([3])], 3).tolist() == [[1, 2, -100], [3, -100, -100]]
