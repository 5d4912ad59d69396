"""FinetuneConfig: how a BERT-family model is fine-tuned on a tasks dataset.

Defaults follow BERT's fine-tuning recipe (Devlin et al. 2019, appendix A.3) and HF's ``run_glue`` /
``run_ner`` / ``run_qa``: AdamW, lr 5e-5 warmed up over the first 10% of steps then decayed linearly,
weight decay 0.01 off biases and LayerNorm, 3 epochs, dropout 0.1. The optimiser and schedule code is
pretraining's (``bertplat.pretrain.optim``), which reads the same field names.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from bertplat.config import StageConfig

# Fields that change how a run is carried out or judged, not what it computes: they stay out of the
# fingerprint, so a resumed run may change them and a reused export is still the same model.
OPERATIONAL_FIELDS = frozenset({"log_every_n_steps", "min_dev_metric", "require_beats_baseline", "eval_batch_size"})


class FinetuneConfig(StageConfig):
    """Optimiser, schedule, batches, evaluation, early stopping and the gate of one fine-tuning run."""

    # ---- optimisation -------------------------------------------------------------------------
    optimizer: Literal["adamw", "lamb"] = Field("adamw", description="adamw (fused on GPU) or lamb.")
    lr: float = Field(5e-5, gt=0.0, le=1.0, description="Peak learning rate, reached after warmup.")
    weight_decay: float = Field(0.01, ge=0.0, description="Decoupled weight decay (not on biases and LayerNorm).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")
    eps: float = Field(1e-8, gt=0.0, description="Adam epsilon (HF Trainer's default).")
    schedule: Literal["linear", "cosine"] = Field("linear", description="Decay after warmup: linear (BERT) or cosine.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Warmup as a share of the total optimizer steps.")
    warmup_steps: int | None = Field(None, ge=0, description="Warmup in steps (overrides warmup_ratio).")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="The lr decays to this share of the peak.")
    grad_clip: float | None = Field(1.0, gt=0.0, description="Clip the gradient norm to this (None: no clipping).")
    seed: int = Field(42, description="Seeds the head's initialisation, the batch order and dropout.")

    # ---- budget and batches -------------------------------------------------------------------
    epochs: int = Field(3, ge=1, description="Passes over the training split.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (a cap on epochs).")
    batch_size: int = Field(32, ge=1, description="Rows per micro batch at most.")
    max_tokens: int | None = Field(None, ge=1, description="Token budget per micro batch (rows x longest row); "
                                   "None: batch_size rows whatever their length.")
    accumulate_grad_batches: int = Field(1, ge=1, description="Micro batches per optimizer step.")
    eval_batch_size: int = Field(128, ge=1, description="Rows per evaluation batch at most.")

    # ---- features -----------------------------------------------------------------------------
    max_length: int = Field(128, ge=8, description="Tokens per input at most, [CLS] and [SEP] included "
                            "(QA: 384 is usual); longer inputs are truncated (pairs longest-first).")
    doc_stride: int = Field(128, ge=1, description="QA: a new window starts every this many context tokens.")
    max_query_length: int = Field(64, ge=1, description="QA: question tokens kept.")
    max_answer_length: int = Field(30, ge=1, description="QA: answer tokens at most.")
    n_best: int = Field(20, ge=1, description="QA: start and end candidates per window.")

    # ---- the model ----------------------------------------------------------------------------
    classifier_dropout: float | None = Field(None, ge=0.0, lt=1.0, description="Dropout before the classifier "
                                             "(None: the backbone's hidden dropout).")
    reset_head: bool = Field(False, description="Start a fresh head on an already fine-tuned model of the same task "
                             "(needed when its labels differ).")
    model_overrides: dict[str, Any] = Field(default_factory=dict, description="ModelConfig fields to change on the "
                                            "base, e.g. {hidden_dropout: 0.0, unpad: false}.")

    # ---- hardware -----------------------------------------------------------------------------
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field("auto", description="Lightning accelerator.")
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true"] = Field(
        "auto", description="auto: bf16-mixed on CUDA, else 32-true.")

    # ---- splits, evaluation, early stopping ---------------------------------------------------
    train_split: str = Field("train", description="The split trained on.")
    dev_split: str | None = Field(None, description="The split evaluated during training and gated on "
                                  "(default: validation, else dev).")
    metric: str | None = Field(None, description="The dev metric that picks the best checkpoint, stops early and is "
                               "gated (default: the task's first metric).")
    eval_every_n_steps: int | None = Field(None, ge=1, description="Evaluate on dev every this many optimizer steps "
                                           "(None: at the end of every epoch).")
    early_stopping_patience: int | None = Field(None, ge=1, description="Stop after this many evaluations without "
                                                "a better dev metric (None: never stop early).")
    log_every_n_steps: int = Field(10, ge=1, description="Log training metrics every this many steps.")
    score_splits: list[str] | None = Field(None, description="The splits the best checkpoint is scored on after "
                                           "training, besides the dev split (None: every split of the task; [] "
                                           "only dev). metrics.json and the predictions cover these.")

    # ---- gate ---------------------------------------------------------------------------------
    min_dev_metric: float = Field(0.0, description="Gate: the best dev metric must reach this floor.")
    require_beats_baseline: bool = Field(True, description="Gate: the dev metric must be strictly above the "
                                         "majority-class baseline (regression: predicting the train mean; "
                                         "NER and QA: 0).")

    @model_validator(mode="after")
    def _check(self):
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.max_tokens is not None and self.max_tokens < self.max_length:
            raise ValueError(f"max_tokens ({self.max_tokens}) must be at least max_length ({self.max_length}) so "
                             "that the longest input fits in a batch")
        if "vocab_size" in self.model_overrides:
            raise ValueError("model_overrides must not set vocab_size: it is the base model's")
        return self

    def fingerprint_json(self) -> str:
        """Canonical JSON of the fields that decide what is computed (see OPERATIONAL_FIELDS)."""
        exclude = set(OPERATIONAL_FIELDS)
        if self.score_splits is None:  # the default, left out so that fingerprints from before the field hold
            exclude.add("score_splits")
        return json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":"))

    def resolved_precision(self, cuda: bool) -> str:
        if self.precision != "auto":
            return self.precision
        return "bf16-mixed" if cuda else "32-true"

    def warmup_for(self, total_steps: int) -> int:
        """Warmup steps (read by ``bertplat.pretrain.optim.build_schedule``)."""
        steps = self.warmup_steps if self.warmup_steps is not None else round(self.warmup_ratio * total_steps)
        return min(steps, max(total_steps - 1, 0))
