"""Array containers of the pretraining-examples stage and the segmented-array helpers they share.

Everything is flat numpy arrays plus offsets (the layout of ``pa.ListArray.from_arrays(offsets, values)``),
so a shard of documents or instances is a handful of arrays and never a Python list of tokens.

- :class:`TokenizedDocs`: tokenised documents, each a list of sentences (no special tokens).
- :class:`PackedInstances`: model inputs with ``[CLS]``/``[SEP]`` inserted, optionally statically masked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + n)`` for every ``(s, n)``: ``(k,), (k,) -> (sum(lengths),)`` int64."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    # each output element is its range's start plus its rank inside the range
    range_begin = np.cumsum(lengths) - lengths
    return np.repeat(starts - range_begin, lengths) + np.arange(total, dtype=np.int64)


def row_ids(offsets: np.ndarray) -> np.ndarray:
    """Row index of every element of a flat array with row ``offsets``: ``(n + 1,) -> (offsets[-1],)``."""
    lengths = np.diff(offsets)
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def _check_offsets(name: str, offsets: np.ndarray, end: int, what: str) -> None:
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != end:
        raise ValueError(
            f"{name} must be 1-D, start at 0 and end at {end} (the number of {what}); "
            f"got shape {offsets.shape}, first {offsets[:1].tolist()}, last {offsets[-1:].tolist()}"
        )
    bad = np.flatnonzero(np.diff(offsets) < 0)
    if len(bad):
        raise ValueError(f"{name} must be non-decreasing; it decreases after index {int(bad[0])}")


@dataclass(frozen=True)
class TokenizedDocs:
    """Tokenised documents as flat arrays (a streaming window: a row group or a shard of the corpus).

    token_ids: (n_tokens,) int32, the tokens of all sentences concatenated, no special tokens.
    sentence_offsets: (n_sentences + 1,) int64; sentence i is ``token_ids[so[i]:so[i + 1]]``.
    doc_offsets: (n_docs + 1,) int64; document d is sentences ``doc_offsets[d]:doc_offsets[d + 1]``.
    doc_ids: (n_docs,) the documents' ids, carried for lineage and split checks.
    Empty sentences and documents are allowed; instance creation skips them (the reference drops them).
    """

    token_ids: np.ndarray
    sentence_offsets: np.ndarray
    doc_offsets: np.ndarray
    doc_ids: Sequence[str]

    def __post_init__(self) -> None:
        # coerce once here so the algorithms can rely on dtypes without copying again
        object.__setattr__(self, "token_ids", np.ascontiguousarray(self.token_ids, dtype=np.int32))
        object.__setattr__(self, "sentence_offsets", np.asarray(self.sentence_offsets, dtype=np.int64))
        object.__setattr__(self, "doc_offsets", np.asarray(self.doc_offsets, dtype=np.int64))
        _check_offsets("sentence_offsets", self.sentence_offsets, len(self.token_ids), "tokens")
        _check_offsets("doc_offsets", self.doc_offsets, len(self.sentence_offsets) - 1, "sentences")
        if len(self.doc_ids) != self.n_docs:
            raise ValueError(f"doc_ids has {len(self.doc_ids)} entries but doc_offsets describes {self.n_docs} documents")

    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1

    @classmethod
    def from_lists(cls, docs: Sequence[Sequence[Sequence[int]]], doc_ids: Sequence[str] | None = None) -> TokenizedDocs:
        """Build from nested lists ``docs[d][s] = [token ids]`` (tests, notebooks, small inputs)."""
        sentences = [np.asarray(s, dtype=np.int32) for doc in docs for s in doc]
        sentence_lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        doc_lengths = np.array([len(doc) for doc in docs], dtype=np.int64)
        return cls(
            token_ids=np.concatenate(sentences) if sentences else np.zeros(0, np.int32),
            sentence_offsets=np.concatenate([[0], np.cumsum(sentence_lengths)]),
            doc_offsets=np.concatenate([[0], np.cumsum(doc_lengths)]),
            doc_ids=list(doc_ids) if doc_ids is not None else [str(d) for d in range(len(docs))],
        )


@dataclass(frozen=True)
class PackedInstances:
    """Pretraining instances as flat arrays; instance i is ``input_ids[offsets[i]:offsets[i + 1]]``.

    input_ids: (n_tokens,) int32 with [CLS]/[SEP] inserted (and masks applied when statically masked).
    offsets: (n + 1,) int64.
    segment_a_len: (n,) int32, length of ``[CLS] A [SEP]``; token_type_ids are 0 for the first
        segment_a_len positions and 1 after. For mlm it is the whole instance length.
    next_sentence_label: (n,) int8, 0 = B follows A in the document, 1 = B is random (nsp) or
        A and B are swapped (sop); None for mlm.
    doc_index: (n,) int64, index into the input documents of segment A's document (mlm: of the first token).
    b_doc_index: (n,) int64, document of segment B (-1 for mlm); lineage, and lets tests check NSP negatives.
    a_token_start / b_token_start: (n,) int64, index in ``TokenizedDocs.token_ids`` of the first token of
        segment A / B after truncation (b: -1 for mlm). For mlm the instance's tokens are the contiguous
        range starting at a_token_start, with a [SEP] inserted before each document start.
    masked_positions: (n_masked,) int32 positions within the instance, sorted per instance, or None.
    masked_label_ids: (n_masked,) int32 original ids at masked_positions, or None.
    masked_offsets: (n + 1,) int64 row offsets of the two arrays above, or None.
    """

    input_ids: np.ndarray
    offsets: np.ndarray
    segment_a_len: np.ndarray
    next_sentence_label: np.ndarray | None
    doc_index: np.ndarray
    b_doc_index: np.ndarray
    a_token_start: np.ndarray
    b_token_start: np.ndarray
    masked_positions: np.ndarray | None = None
    masked_label_ids: np.ndarray | None = None
    masked_offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def is_masked(self) -> bool:
        return self.masked_offsets is not None

    def instance(self, i: int) -> dict[str, object]:
        """Instance i as the dict the collators take (numpy arrays; for inspection and data loaders)."""
        out: dict[str, object] = {
            "input_ids": self.input_ids[self.offsets[i] : self.offsets[i + 1]],
            "segment_a_len": int(self.segment_a_len[i]),
        }
        if self.next_sentence_label is not None:
            out["next_sentence_label"] = int(self.next_sentence_label[i])
        if self.masked_offsets is not None:
            lo, hi = self.masked_offsets[i], self.masked_offsets[i + 1]
            out["masked_positions"] = self.masked_positions[lo:hi]
            out["masked_label_ids"] = self.masked_label_ids[lo:hi]
        return out


def _concat_offsets(parts: Sequence[np.ndarray]) -> np.ndarray:
    # shift each part's offsets by the number of elements before it and drop the duplicated zeros
    shifts = np.cumsum([0] + [int(p[-1]) for p in parts[:-1]])
    return np.concatenate([parts[0][:1]] + [p[1:] + s for p, s in zip(parts, shifts, strict=True)])


def concatenate_instances(parts: Sequence[PackedInstances]) -> PackedInstances:
    """Concatenate instance sets (e.g. the ``dupe_factor`` copies); all must be masked or none."""
    if not parts:
        raise ValueError("concatenate_instances needs at least one PackedInstances")
    if len({p.is_masked for p in parts}) > 1 or len({p.next_sentence_label is None for p in parts}) > 1:
        raise ValueError("cannot concatenate masked with unmasked instances, or mlm with nsp/sop instances")

    def cat(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays)

    fields = {f.name: cat(f.name) for f in dataclasses.fields(PackedInstances) if "offsets" not in f.name}
    fields["offsets"] = _concat_offsets([p.offsets for p in parts])
    fields["masked_offsets"] = _concat_offsets([p.masked_offsets for p in parts]) if parts[0].is_masked else None
    return PackedInstances(**fields)
