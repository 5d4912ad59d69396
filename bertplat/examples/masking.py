"""Masked-LM predictions as in BERT's ``create_masked_lm_predictions`` (create_pretraining_data.py), vectorised.

One implementation serves static masking (:func:`mask_instances`, the reference's behaviour, written into
the example shards) and dynamic masking (:class:`bertplat.examples.collator.MLMCollator`, new masks per
batch as in RoBERTa/MosaicBERT). Per row (an instance or a batch row):

1. candidates are the positions whose token is not special; with whole-word masking a candidate is a
   word: a token plus the "##" continuation pieces that follow it;
2. ``num_to_predict = min(max_predictions, max(1, round(n * mask_prob)))``;
3. candidates are visited in random order and each is taken if it still fits in ``num_to_predict``
   (a word that would overshoot is skipped, later shorter ones may still fit), as in the reference;
4. each chosen token becomes [MASK] 80% of the time, stays itself 10%, and a random token 10%.

Deviations from the reference, and why:

- Special tokens are whatever ``special_token_ids`` lists (the reference only skips [CLS]/[SEP]); [MASK]
  is always special.
- The random replacement is drawn uniformly from the vocabulary *without* the special tokens (the
  reference draws from the whole vocabulary): a random [CLS]/[SEP]/[PAD] inside a sentence teaches
  the model nothing and can confuse segment handling; with a 30k vocabulary it changes 0.02% of the draws.
- Whole-word groups never cross a special token: the reference would glue a "##" piece that directly
  follows [SEP] onto the last word before it.
- ``n`` in step 2 is the row length with special tokens for static masking (the reference's
  ``len(tokens)``); the collator uses the number of maskable tokens, so ``mask_prob`` is the fraction of
  real tokens that are predicted (the meaning HF/MosaicBERT give it). ``round`` is half-to-even, as
  Python 3's.
- The 80/10/10 choice is made per token also for whole words, as in the reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bertplat.examples.data import PackedInstances, expand_ranges


@dataclass(frozen=True, eq=False)
class MaskingSpec:
    """What to mask and with what; shared by static masking and the collator.

    vocab_size: size of the vocabulary; token ids must lie in [0, vocab_size).
    mask_token_id: id of [MASK]; it is always treated as special.
    special_token_ids: ids that are never masked nor used as random replacements ([PAD], [UNK], [CLS], ...).
    mask_prob: fraction of tokens to predict (BERT 0.15, MosaicBERT/ModernBERT 0.30).
    max_predictions: cap per row (the reference's max_predictions_per_seq, 20 at length 128), or None.
    whole_word: mask all pieces of a word together; needs ``continuation_lut``.
    continuation_lut: (vocab_size,) bool, True for "##" continuation pieces.
    """

    vocab_size: int
    mask_token_id: int
    special_token_ids: Sequence[int]
    mask_prob: float = 0.15
    max_predictions: int | None = None
    whole_word: bool = False
    continuation_lut: np.ndarray | None = None
    special_lut: np.ndarray = field(init=False, repr=False)
    replacement_ids: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.max_predictions is not None and self.max_predictions < 1:
            raise ValueError(f"max_predictions must be >= 1 or None, got {self.max_predictions}")
        specials = np.unique(np.asarray([*self.special_token_ids, self.mask_token_id], dtype=np.int64))
        if specials.min() < 0 or specials.max() >= self.vocab_size:
            raise ValueError(f"special token ids {specials.tolist()} must lie in [0, vocab_size={self.vocab_size})")
        special_lut = np.zeros(self.vocab_size, dtype=bool)
        special_lut[specials] = True
        object.__setattr__(self, "special_token_ids", tuple(specials.tolist()))
        object.__setattr__(self, "special_lut", special_lut)
        object.__setattr__(self, "replacement_ids", np.flatnonzero(~special_lut).astype(np.int32))
        if self.whole_word:
            lut = self.continuation_lut
            if lut is None or np.shape(lut) != (self.vocab_size,):
                raise ValueError(
                    "whole_word=True needs continuation_lut, a bool array of length vocab_size that is True "
                    "for '##' pieces (e.g. [t.startswith('##') for t in vocab])"
                )
            object.__setattr__(self, "continuation_lut", np.asarray(lut, dtype=bool))


def prediction_budget(n_tokens: np.ndarray, mask_prob: float, max_predictions: int | None) -> np.ndarray:
    """The reference's ``num_to_predict`` per row: ``min(max_predictions, max(1, round(n * mask_prob)))``."""
    budget = np.maximum(1, np.rint(np.asarray(n_tokens) * mask_prob)).astype(np.int64)
    return budget if max_predictions is None else np.minimum(budget, max_predictions)


def _word_starts(row_offsets: np.ndarray, maskable: np.ndarray, continuation: np.ndarray | None) -> np.ndarray:
    """True at the first token of every candidate (a token, or a word of pieces)."""
    if continuation is None:
        return maskable.copy()
    prev_maskable = np.zeros_like(maskable)
    prev_maskable[1:] = maskable[:-1]
    row_starts = row_offsets[:-1]
    prev_maskable[row_starts[row_starts < len(maskable)]] = False  # words never span rows
    return maskable & ~(continuation & prev_maskable)


def greedy_fill(lengths: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Take candidates in column order while they fit: (rows, W) lengths (0 = none), (rows,) -> (rows, W) bool.

    Exactly the reference loop (skip a word that would overshoot, keep looking). Each round takes, per
    row, the longest run of pending candidates that fits; the candidate that stopped the run can never
    fit again (the budget only shrinks), so the ``lengths <= remaining`` filter drops it. Rows with
    nothing left that fits leave the loop; rounds are few because words are a few pieces long.
    """
    take = np.zeros(lengths.shape, dtype=bool)
    rows = np.arange(len(lengths))
    remaining = np.asarray(budget, dtype=np.int64)
    pending = (lengths > 0) & (lengths <= remaining[:, None])
    while len(rows):
        sub_lengths = lengths[rows]
        running = np.cumsum(np.where(pending, sub_lengths, 0), axis=1)
        fits = pending & (running <= remaining[:, None])
        take[rows] |= fits
        remaining = remaining - np.where(fits, sub_lengths, 0).sum(axis=1)
        pending &= ~fits & (sub_lengths <= remaining[:, None])
        active = pending.any(axis=1)
        rows, remaining, pending = rows[active], remaining[active], pending[active]
    return take


def _word_lengths(starts: np.ndarray, maskable: np.ndarray) -> np.ndarray:
    """(n_tokens,) int32: the number of pieces of the word starting at each word start, 0 elsewhere."""
    inside = maskable & ~starts  # continuation pieces; never at a row start (see _word_starts)
    ends = maskable.copy()
    ends[:-1] &= ~inside[1:]  # a word ends where the next token does not continue it
    lengths = np.zeros(len(starts), dtype=np.int32)
    lengths[starts] = np.flatnonzero(ends) - np.flatnonzero(starts) + 1
    return lengths


def choose_mask_positions(row_offsets: np.ndarray, maskable: np.ndarray, budget: np.ndarray,
                          rng: np.random.Generator, continuation: np.ndarray | None = None) -> np.ndarray:
    """Flat positions to predict, sorted: a uniform random order of each row's candidates, filled greedily.

    row_offsets: (rows + 1,) int64 over a flat token array; maskable: (n_tokens,) bool;
    budget: (rows,) tokens to predict per row; continuation: (n_tokens,) bool "##" flags for whole-word
    masking, or None to mask single tokens. Returns (n_masked,) int64.
    """
    row_offsets = np.asarray(row_offsets, dtype=np.int64)
    row_lengths = np.diff(row_offsets)
    starts = _word_starts(row_offsets, maskable, continuation)
    if not starts.any():
        return np.zeros(0, dtype=np.int64)
    # candidates in a (rows, width) grid whose column is the position inside the row; each cell holds
    # the candidate's length in tokens (0 = no candidate there)
    n_rows, width = len(row_lengths), int(row_lengths.max())
    cell = np.arange(len(maskable)) + np.repeat(np.arange(n_rows) * width - row_offsets[:-1], row_lengths)
    lengths = np.zeros(n_rows * width, dtype=np.int32)
    lengths[cell] = starts if continuation is None else _word_lengths(starts, maskable)
    lengths = lengths.reshape(n_rows, width)
    # random keys, absent cells last: sorting each row gives a uniform shuffle of its candidates
    keys = rng.random((n_rows, width))
    keys[lengths == 0] = np.inf
    order = np.argsort(keys, axis=1)
    if continuation is None:
        # single tokens all fit until the budget is spent: the greedy fill is a prefix of the shuffle
        n_candidates = (lengths > 0).sum(axis=1)
        take = np.arange(width) < np.minimum(budget, n_candidates)[:, None]
    else:
        take = greedy_fill(np.take_along_axis(lengths, order, axis=1), budget)
    rows, rank = np.nonzero(take)
    cols = order[rows, rank]
    first = row_offsets[rows] + cols
    chosen = np.zeros(len(maskable), dtype=bool)  # a flag array sorts the positions for free
    chosen[first if continuation is None else expand_ranges(first, lengths[rows, cols])] = True
    return np.flatnonzero(chosen)


def apply_mask(input_ids: np.ndarray, positions: np.ndarray, spec: MaskingSpec,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """80% [MASK], 10% unchanged, 10% a random non-special token; returns (masked copy, original ids)."""
    labels = input_ids[positions]
    u = rng.random(len(positions))
    random_ids = spec.replacement_ids[rng.integers(0, len(spec.replacement_ids), len(positions))]
    replaced = np.where(u < 0.8, spec.mask_token_id, np.where(u < 0.9, labels, random_ids))
    masked = input_ids.copy()
    masked[positions] = replaced
    return masked, labels


MASK_CHUNK_ROWS = 4096  # rows masked at a time: the (rows, width) work arrays stay a few MB


def mask_rows(input_ids: np.ndarray, row_offsets: np.ndarray, spec: MaskingSpec, rng: np.random.Generator,
              budget_basis: Literal["length", "maskable"]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask every row of a flat token array; returns (masked input_ids, flat positions, label ids).

    Rows are processed ``MASK_CHUNK_ROWS`` at a time, so memory does not grow with the row count."""
    row_offsets = np.asarray(row_offsets, dtype=np.int64)
    n_rows = len(row_offsets) - 1
    if n_rows <= MASK_CHUNK_ROWS:
        return _mask_rows(input_ids, row_offsets, spec, rng, budget_basis)
    masked = np.empty_like(input_ids)
    positions, labels = [], []
    for a in range(0, n_rows, MASK_CHUNK_ROWS):
        b = min(a + MASK_CHUNK_ROWS, n_rows)
        lo, hi = row_offsets[a], row_offsets[b]
        m, p, lab = _mask_rows(input_ids[lo:hi], row_offsets[a:b + 1] - lo, spec, rng, budget_basis)
        masked[lo:hi] = m
        positions.append(p + lo)
        labels.append(lab)
    return masked, np.concatenate(positions), np.concatenate(labels)


def _mask_rows(input_ids: np.ndarray, row_offsets: np.ndarray, spec: MaskingSpec, rng: np.random.Generator,
               budget_basis: Literal["length", "maskable"]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask every row of a flat token array; returns (masked input_ids, flat positions, label ids).

    ``budget_basis`` picks the ``n`` of ``round(n * mask_prob)``: the row length with its special tokens
    (``"length"``, the reference) or its number of maskable tokens (``"maskable"``, the collator).
    """
    if len(input_ids) and (input_ids.min() < 0 or input_ids.max() >= spec.vocab_size):
        raise ValueError(
            f"token ids must lie in [0, vocab_size={spec.vocab_size}); found ids in "
            f"[{int(input_ids.min())}, {int(input_ids.max())}]: was the vocabulary size configured correctly?"
        )
    maskable = ~spec.special_lut[input_ids]
    if budget_basis == "length":
        n = np.diff(row_offsets)
    else:
        maskable_before = np.concatenate([[0], np.cumsum(maskable)])
        n = maskable_before[row_offsets[1:]] - maskable_before[row_offsets[:-1]]
    budget = np.where(n > 0, prediction_budget(n, spec.mask_prob, spec.max_predictions), 0)
    continuation = spec.continuation_lut[input_ids] if spec.whole_word else None
    positions = choose_mask_positions(row_offsets, maskable, budget, rng, continuation)
    masked, labels = apply_mask(input_ids, positions, spec, rng)
    return masked, positions, labels


def mask_instances(instances: PackedInstances, spec: MaskingSpec, rng: np.random.Generator,
                   budget_basis: Literal["length", "maskable"] = "length") -> PackedInstances:
    """Static masking of packed instances (the reference's ``create_masked_lm_predictions``).

    ``budget_basis="length"`` is the reference (``round(len(tokens) * mask_prob)``, specials included);
    ``"maskable"`` makes ``mask_prob`` the share of maskable tokens, like the collator."""
    if instances.is_masked:
        raise ValueError("these instances are already masked; mask the unmasked output of create_instances")
    masked, positions, labels = mask_rows(instances.input_ids, instances.offsets, spec, rng, budget_basis)
    masked_offsets = np.searchsorted(positions, instances.offsets, side="left").astype(np.int64)
    row_of_position = np.repeat(np.arange(len(instances)), np.diff(masked_offsets))
    return dataclasses.replace(
        instances,
        input_ids=masked,
        masked_positions=(positions - instances.offsets[row_of_position]).astype(np.int32),
        masked_label_ids=labels.astype(np.int32),
        masked_offsets=masked_offsets,
    )
