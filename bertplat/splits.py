"""Stable, content-derived document splits: a document's side depends only on its id."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def doc_hash_unit(doc_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each id's first 8 hex digits as a number in [0, 1): uniform, since ids are content hashes."""
    prefixes = pc.utf8_slice_codeunits(doc_ids, 0, 8).to_pylist()
    return np.array([int(p, 16) for p in prefixes], dtype=np.float64) / 2**32


def in_holdout(doc_ids: pa.Array | pa.ChunkedArray, fraction: float) -> np.ndarray:
    """True for the documents of the held-out slice (the vocab gate's held-out text and the examples'
    validation split use the same slice, so validation text is also unseen by the vocabulary)."""
    return doc_hash_unit(doc_ids) < fraction
