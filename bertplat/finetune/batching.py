"""Batches for fine-tuning and evaluation: by length, under a token budget, padded to the batch's longest.

Sentence lengths in task data vary tenfold (SST-2: 3 to 60 tokens), so a fixed batch of padded 128-token
rows wastes most of its compute. Here examples are sorted by length inside shuffled pools of
``pool_batches`` batches (the ``group_by_length`` idea of HF's Trainer, and the length bucketing of
pretraining). A pool holds at most 50 batches and at most a quarter of the data (HF's
``LengthGroupedSampler`` rule), so a small train set still has four pools or more and a batch's
neighbours change from epoch to epoch. With one pool over all of a small set, every epoch made nearly
the same batches, each of one narrow length band (all the 2-token lines of CoNLL-2003 in one batch): on
CoNLL-2003 with 1,508 train sentences that cost 1.2 to 5.2 points of entity F1 on every one of three
seeds (benchmarks/RESULTS.md). A batch takes examples until its padded size ``rows * longest`` would exceed
``max_tokens`` (or it has ``max_batch_size`` rows). The model's unpadded path then skips the padding
entirely; the budget keeps the memory of a batch bounded whatever its lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def plan_batches(lengths: np.ndarray, max_batch_size: int, max_tokens: int | None = None,
                 rng: np.random.Generator | None = None, pool_batches: int | None = None) -> list[np.ndarray]:
    """Row indices of each batch. ``rng`` given: training order (pools shuffled, lengths sorted inside a
    pool, batches shuffled); ``rng`` None: evaluation order (all sorted by length, deterministic).
    ``pool_batches`` None: min(50, n // (4 * max_batch_size)), at least 1 (see the module docstring)."""
    lengths = np.asarray(lengths)
    n = len(lengths)
    if n == 0:
        return []
    if max_tokens is not None and max_tokens < int(lengths.max()):
        raise ValueError(f"max_tokens {max_tokens} is smaller than the longest example ({int(lengths.max())} "
                         "tokens); raise it to at least the model's max_length")
    if rng is None:
        pools = [np.argsort(-lengths, kind="stable")]
    else:
        order = rng.permutation(n)
        if pool_batches is None:
            pool_batches = min(50, n // (4 * max_batch_size))
        size = max(1, max_batch_size * max(1, pool_batches))
        # pools of exactly ``size`` rows (the last one shorter): without a token budget only the last batch
        # of an epoch is short, and an epoch has ceil(n / max_batch_size) batches, as HF's sampler gives
        pools = [p[np.argsort(-lengths[p], kind="stable")] for p in (order[i:i + size] for i in range(0, n, size))]
    batches: list[np.ndarray] = []
    for pool in pools:
        batches.extend(_pack(pool, lengths, max_batch_size, max_tokens))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _pack(rows: np.ndarray, lengths: np.ndarray, max_batch_size: int, max_tokens: int | None) -> list[np.ndarray]:
    """Consecutive runs of ``rows`` (longest first) whose padded size fits the budget."""
    out, start = [], 0
    while start < len(rows):
        longest = int(lengths[rows[start]])  # rows are sorted longest first
        cap = max_batch_size if max_tokens is None else max(1, min(max_batch_size, max_tokens // max(1, longest)))
        out.append(rows[start:start + cap])
        start += cap
    return out


def pad_batch(input_ids: Sequence[np.ndarray], segment_a_len: np.ndarray | None, pad_id: int,
              pad_to_multiple_of: int = 8) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T), right-padded to the batch's longest row
    (rounded up to a multiple of ``pad_to_multiple_of``, which tensor cores like)."""
    lengths = np.fromiter((len(r) for r in input_ids), np.int64, len(input_ids))
    T = int(lengths.max())
    T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(input_ids), T), pad_id, np.int64)
    for i, row in enumerate(input_ids):
        ids[i, : len(row)] = row
    positions = np.arange(T)
    mask = positions[None, :] < lengths[:, None]
    types = np.zeros_like(ids)
    if segment_a_len is not None:
        types = ((positions[None, :] >= np.asarray(segment_a_len)[:, None]) & mask).astype(np.int64)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64)),
            "token_type_ids": torch.from_numpy(types)}


def pad_labels(labels: Sequence[np.ndarray], width: int, fill: int = -100) -> torch.Tensor:
    """Per-token labels (B, T) padded with ``fill`` to the batch width."""
    out = np.full((len(labels), width), fill, np.int64)
    for i, row in enumerate(labels):
        out[i, : len(row)] = row
    return torch.from_numpy(out)
