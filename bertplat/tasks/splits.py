"""Deterministic splits for sources that lack them: by a hash of each example, or by article.

``by hash``: an example's side depends only on its key (the source id, or its text) and the salt,
through the same hash-to-unit mapping as the corpus splits (:func:`bertplat.splits.doc_hash_unit`);
adding or removing other examples never moves it.

``by article``: every example of an article (SQuAD's ``title``; the context where there is none)
goes to the same side, so no context is seen in training and evaluation both. Articles are ordered
by the hash of their title and dealt out, each to the split whose share of the *examples* it fits
best, which keeps the shares close even with few articles (SQuAD v1.1 dev has 48).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from bertplat.splits import doc_hash_unit


def _hex(keys: Sequence[str], salt: str) -> pa.Array:
    return pa.array([hashlib.blake2b(f"{salt}\0{k}".encode(), digest_size=16).hexdigest() for k in keys])


def split_by_hash(keys: Sequence[str], fractions: dict[str, float], salt: str = "bertplat") -> list[str]:
    """Each key's split: the first whose cumulative share exceeds the key's hash unit."""
    if not keys:
        return []
    units = doc_hash_unit(_hex(keys, salt))
    names = list(fractions)
    edges = np.cumsum([fractions[n] for n in names])
    edges[-1] = 1.0 + 1e-9
    return [names[i] for i in np.searchsorted(edges, units, side="right")]


def split_by_group(groups: Sequence[str], fractions: dict[str, float], salt: str = "bertplat") -> list[str]:
    """Each example's split, whole groups at a time, each split taking its share of the examples."""
    if not groups:
        return []
    sizes: dict[str, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    order = sorted(sizes, key=lambda g: hashlib.blake2b(f"{salt}\0{g}".encode(), digest_size=16).hexdigest())
    names = list(fractions)
    targets = np.cumsum([fractions[n] for n in names]) * len(groups)
    side: dict[str, str] = {}
    done, i, in_split = 0, 0, 0
    for k, g in enumerate(order):
        later_splits = len(names) - 1 - i
        # Move on when this group would take the split further past its share than short of it, or
        # when the groups left are just enough to give every later split one.
        if later_splits and in_split and (done + sizes[g] / 2 >= targets[i] - 1e-9 or len(order) - k <= later_splits):
            i, in_split = i + 1, 0
        side[g] = names[i]
        done += sizes[g]
        in_split += 1
    return [side[g] for g in groups]
