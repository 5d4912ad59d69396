"""Pretraining examples: instance creation and masking as in BERT's create_pretraining_data.py, vectorised.

Pure functions over numpy arrays, no I/O; the pretraining-examples stage reads corpus shards,
tokenises them into :class:`TokenizedDocs`, calls :func:`create_pretraining_examples` with a
:func:`shard_rng` generator, and writes the :class:`PackedInstances` arrays as Parquet list columns.
The collators (:mod:`bertplat.examples.collator`, imported separately because it needs torch)
mask at load time, or pass static masks through.
"""

from bertplat.examples.create import create_pretraining_examples, shard_rng
from bertplat.examples.data import PackedInstances, TokenizedDocs, concatenate_instances
from bertplat.examples.masking import (
    MaskingSpec,
    apply_mask,
    choose_mask_positions,
    mask_instances,
    mask_rows,
    prediction_budget,
)
from bertplat.examples.packing import (
    OBJECTIVES,
    Objective,
    create_instances,
    truncate_seq_pair,
    truncated_lengths,
)

__all__ = [
    "OBJECTIVES",
    "MaskingSpec",
    "Objective",
    "PackedInstances",
    "TokenizedDocs",
    "apply_mask",
    "choose_mask_positions",
    "concatenate_instances",
    "create_instances",
    "create_pretraining_examples",
    "mask_instances",
    "mask_rows",
    "prediction_budget",
    "shard_rng",
    "truncate_seq_pair",
    "truncated_lengths",
]
