"""Pretraining examples from one window of tokenised documents: packing, optional static masking, dupes.

This is the reference's ``create_training_instances`` loop (``dupe_factor`` passes over the documents,
each with fresh random choices and masks) without its I/O, tokenisation and final shuffle.

Determinism contract for the stage: the output is a pure function of the documents passed in and the
generator's state. The stage derives one generator per corpus shard with :func:`shard_rng`, so a shard's
examples depend only on (its documents, seed, shard index): not on the process, the number of workers
or the order in which shards are processed. Nothing here reads global random state or mutates inputs.
(numpy does not promise identical ``Generator`` streams across its own releases, so pin numpy where
byte-identical rebuilds matter.)
"""

from __future__ import annotations

import numpy as np

from bertplat.examples.data import PackedInstances, TokenizedDocs, concatenate_instances
from bertplat.examples.masking import MaskingSpec, mask_instances
from bertplat.examples.packing import Objective, create_instances


def shard_rng(seed: int, shard_index: int) -> np.random.Generator:
    """The generator for one corpus shard: independent streams per (seed, shard) via SeedSequence."""
    if seed < 0 or shard_index < 0:
        raise ValueError(f"seed and shard_index must be non-negative, got seed={seed}, shard_index={shard_index}")
    return np.random.default_rng(np.random.SeedSequence([seed, shard_index]))


def create_pretraining_examples(
    docs: TokenizedDocs,
    objective: Objective,
    *,
    max_seq_length: int,
    cls_token_id: int,
    sep_token_id: int,
    rng: np.random.Generator,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    masking: MaskingSpec | None = None,
    balance_nsp: bool = True,
    budget_basis: str = "length",
) -> PackedInstances:
    """``dupe_factor`` passes of :func:`create_instances`, each statically masked when ``masking`` is given.

    Leave ``masking`` as None for dynamic masking (the collator masks at load time); the reference uses
    static masking with dupe_factor=10 so that each sequence is seen with 10 different masks.
    """
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    passes = []
    for _ in range(dupe_factor):
        instances = create_instances(
            docs, objective, max_seq_length=max_seq_length, cls_token_id=cls_token_id,
            sep_token_id=sep_token_id, rng=rng, short_seq_prob=short_seq_prob, balance_nsp=balance_nsp,
        )
        passes.append(instances if masking is None else mask_instances(instances, masking, rng, budget_basis))
    return passes[0] if dupe_factor == 1 else concatenate_instances(passes)
