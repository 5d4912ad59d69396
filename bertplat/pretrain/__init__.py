"""Pretraining: examples in, a gated, Hugging Face-format BERT out (Lightning owns the loop).

    from bertplat.pretrain import PretrainConfig, run_pretrain
    result = run_pretrain(lake.resolve("examples", "demo"), "demo-mini", PretrainConfig(model="mini"), lake)
    print(result.summary())

Modules: ``config`` (PretrainConfig), ``data`` (seekable, disjoint streams of batches), ``datamodule``
(the Lightning DataModule and the data position in checkpoints), ``module`` (the LightningModule),
``optim`` (LAMB, warmup + decay), ``callbacks`` (throughput/MFU, progress, signal checkpoints),
``report`` (history, plot, gate, model card) and ``stage`` (run_pretrain). Never imports prefect.
The stage is imported on first use: Lightning takes seconds to import, the config and data need none of it.
"""

from __future__ import annotations

from typing import Any

from bertplat.pretrain.config import PretrainConfig

__all__ = ["PretrainConfig", "PretrainInterrupted", "PretrainResult", "run_pretrain"]


def __getattr__(name: str) -> Any:
    if name in ("PretrainInterrupted", "PretrainResult", "run_pretrain"):
        from bertplat.pretrain import stage

        return getattr(stage, name)
    raise AttributeError(f"module 'bertplat.pretrain' has no attribute {name!r}")
