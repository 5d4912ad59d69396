"""Batch collators for MLM pretraining: dynamic masking (:class:`MLMCollator`) and pass-through of
statically masked examples (:class:`StaticCollator`).

Dynamic masking draws new masks for every batch (RoBERTa; MosaicBERT/ModernBERT with mask_prob=0.30)
with the same algorithm as static masking (:mod:`bertplat.examples.masking`), so the two differ only in
*when* masks are drawn. The collator owns its ``numpy.random.Generator``: ``state_dict`` /
``load_state_dict`` save and restore it for exact resumption, and ``reseed`` gives every data-loader
worker and rank its own stream (a DataLoader copies the collator into each worker; without reseeding,
workers would draw identical masks), e.g. in a ``worker_init_fn``:
``collator.reseed([base_seed, rank, worker_id])``. Worker copies' states are not visible from the main
process, so exact resumption with workers means reseeding them from (seed, rank, worker, epoch) and
skipping the batches already seen; ``state_dict`` is the building block for collating in-process.

Output tensors, all int64, shapes (B, L) with L the longest example rounded up to ``pad_to_multiple_of``:
``input_ids`` (padded with the pad id), ``attention_mask``, ``token_type_ids`` (1 from ``segment_a_len``
on, 0 on padding), ``labels`` (-100 except at predicted positions, which hold the original ids), and
``next_sentence_label`` (B,) when the examples carry one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bertplat.examples.data import row_ids
from bertplat.examples.masking import MaskingSpec, mask_rows

IGNORE_INDEX = -100  # the label torch's cross-entropy skips


class _PaddedBatch:
    """Examples flattened into one array and their (B, L) padded layout; no per-token Python."""

    def __init__(self, examples: Sequence[Mapping[str, Any]], pad_to_multiple_of: int) -> None:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        ids = [np.asarray(ex["input_ids"], dtype=np.int64).reshape(-1) for ex in examples]
        self.lengths = np.array([len(x) for x in ids], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.flat = np.concatenate(ids)
        # examples without segment_a_len (single-segment data) are all segment 0
        self.segment_a_len = np.array([ex.get("segment_a_len", len(x)) for ex, x in zip(examples, ids, strict=True)])
        multiple = max(1, pad_to_multiple_of)
        self.width = int(-(-max(int(self.lengths.max()), 1) // multiple) * multiple)
        self.rows = row_ids(self.offsets)
        self.cols = np.arange(len(self.flat)) - self.offsets[self.rows]
        self.nsp = _next_sentence_labels(examples)

    def tensors(self, input_ids: np.ndarray, pad_token_id: int, label_positions: np.ndarray,
                label_ids: np.ndarray) -> dict[str, torch.Tensor]:
        """Scatter flat input ids and labels (at flat positions) into padded (B, L) tensors."""
        shape = (len(self.lengths), self.width)
        padded = np.full(shape, pad_token_id, dtype=np.int64)
        padded[self.rows, self.cols] = input_ids
        position = np.arange(self.width)
        attention = position < self.lengths[:, None]
        labels = np.full(shape, IGNORE_INDEX, dtype=np.int64)
        labels[self.rows[label_positions], self.cols[label_positions]] = label_ids
        out = {
            "input_ids": torch.from_numpy(padded),
            "attention_mask": torch.from_numpy(attention.astype(np.int64)),
            "token_type_ids": torch.from_numpy(((position >= self.segment_a_len[:, None]) & attention).astype(np.int64)),
            "labels": torch.from_numpy(labels),
        }
        if self.nsp is not None:
            out["next_sentence_label"] = torch.from_numpy(self.nsp)
        return out


def _next_sentence_labels(examples: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
    has = [ex.get("next_sentence_label") is not None for ex in examples]
    if not any(has):
        return None
    if not all(has):
        raise ValueError(
            f"{has.count(False)} of {len(has)} examples lack next_sentence_label; "
            "do not mix nsp/sop examples with mlm-only examples in one batch"
        )
    return np.array([ex["next_sentence_label"] for ex in examples], dtype=np.int64)


class MLMCollator:
    """Pads a batch and draws fresh MLM masks for it (dynamic masking)."""

    def __init__(
        self,
        vocab_size: int,
        mask_token_id: int,
        pad_token_id: int,
        special_token_ids: Sequence[int],
        mask_prob: float = 0.15,
        max_predictions: int | None = None,
        whole_word: bool = False,
        continuation_lut: np.ndarray | None = None,
        pad_to_multiple_of: int = 8,
        seed: int = 0,
    ) -> None:
        self.spec = MaskingSpec(
            vocab_size=vocab_size, mask_token_id=mask_token_id,
            special_token_ids=(*special_token_ids, pad_token_id), mask_prob=mask_prob,
            max_predictions=max_predictions, whole_word=whole_word, continuation_lut=continuation_lut,
        )
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.reseed(seed)

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Restart the mask stream from ``seed`` (an int, or e.g. ``[base_seed, rank, worker_id]``)."""
        self._rng = np.random.default_rng(np.random.SeedSequence(seed))

    def state_dict(self) -> dict[str, Any]:
        """The generator's state; with :meth:`load_state_dict` it replays the same masks after a resume."""
        return {"bit_generator": copy.deepcopy(self._rng.bit_generator.state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rng.bit_generator.state = copy.deepcopy(dict(state["bit_generator"]))

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = _PaddedBatch(examples, self.pad_to_multiple_of)
        masked, positions, labels = mask_rows(batch.flat, batch.offsets, self.spec, self._rng, "maskable")
        return batch.tensors(masked, self.pad_token_id, positions, labels)


class StaticCollator:
    """Pads statically masked examples (``masked_positions`` / ``masked_label_ids``) and builds labels."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 8) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = _PaddedBatch(examples, self.pad_to_multiple_of)
        try:
            positions = [np.asarray(ex["masked_positions"], dtype=np.int64) for ex in examples]
            label_ids = np.concatenate([np.asarray(ex["masked_label_ids"], dtype=np.int64) for ex in examples])
        except KeyError as err:
            raise ValueError(
                f"StaticCollator needs masked_positions and masked_label_ids in every example (missing {err}); "
                "use MLMCollator for unmasked examples"
            ) from err
        bad = [i for i, p in enumerate(positions) if len(p) and (p.min() < 0 or p.max() >= batch.lengths[i])]
        if bad:
            raise ValueError(f"examples {bad[:5]} have masked_positions outside their input_ids")
        flat_positions = np.concatenate([p + batch.offsets[i] for i, p in enumerate(positions)])
        return batch.tensors(batch.flat, self.pad_token_id, flat_positions, label_ids)
