"""PretrainConfig: how a BERT-family model is pretrained from an examples dataset.

Defaults follow BERT (Devlin et al. 2019: AdamW, lr warmup then linear decay, weight decay 0.01
except biases and LayerNorm, eps 1e-6) scaled to small models; MosaicBERT / ModernBERT's 30% mask
rate is one field away (``mask_prob: 0.3``). Every field is checked here; what can only be checked
against the examples (vocabulary size, sequence length, static masks) is checked by
:func:`bertplat.pretrain.stage.plan_run` before any work starts.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from bertplat.config import StageConfig
from bertplat.model.config import ModelConfig

# Fields that change how a run is carried out or judged, not what it computes: they stay out of the
# run's fingerprint, so a resumed run may change them (more workers, another checkpoint interval).
OPERATIONAL_FIELDS = frozenset({
    "num_workers", "checkpoint_every_n_steps", "keep_checkpoints", "log_every_n_steps", "peak_tflops",
    "min_val_mlm_accuracy", "min_val_mlm_accuracy_over_baseline", "require_loss_decrease", "val_every_n_steps",
})


class PretrainConfig(StageConfig):
    """Model, optimiser, schedule, scale, data pipeline, checkpoints and the gate of one pretraining run."""

    # ---- model --------------------------------------------------------------------------------
    model: str = Field(default="mini", description="Model size preset: " + ", ".join(ModelConfig.preset_names())
                       + " (vocab_size always comes from the examples' vocabulary).")
    model_overrides: dict[str, Any] = Field(
        default_factory=dict, description="ModelConfig fields to change on top of the preset, e.g. "
        "{hidden_dropout: 0.0, max_position_embeddings: 128}.")
    init_from: str | None = Field(
        default=None, description="Continue pretraining from this model's weights instead of random ones "
        "(domain-adaptive or longer pretraining): a model directory (Hugging Face BERT/ALBERT layout or one of our "
        "exports), a registry reference, or NAME[@FINGERPRINT] under DATA_DIR/models. Its architecture replaces "
        "the model preset (then model_overrides must be empty) and its vocabulary must be the examples' own. "
        "The schedule starts afresh (warmup, then decay); the run's fingerprint includes the weights' hash.")

    # ---- optimisation -------------------------------------------------------------------------
    optimizer: Literal["adamw", "lamb"] = Field(
        default="adamw", description="adamw (fused kernel on GPU) or lamb (You et al. 2020, for large batches).")
    lr: float = Field(default=5e-4, gt=0.0, le=1.0, description="Peak learning rate, reached after warmup.")
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="Adam beta1, beta2 (RoBERTa: 0.9, 0.98).")
    eps: float = Field(default=1e-6, gt=0.0, description="Adam epsilon (BERT: 1e-6).")
    weight_decay: float = Field(default=0.01, ge=0.0, description="Decoupled weight decay; never applied to "
                                "biases and LayerNorm weights.")
    warmup_steps: int | None = Field(default=None, ge=0, description="Linear warmup steps; default "
                                     "warmup_ratio of the total steps.")
    warmup_ratio: float = Field(default=0.01, ge=0.0, lt=1.0,
                                description="Warmup as a share of the total steps when warmup_steps is not set.")
    schedule: Literal["linear", "cosine"] = Field(default="linear",
                                                  description="Decay after warmup: linear (BERT) or cosine.")
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0,
                                description="The learning rate decays to lr * min_lr_ratio at the last step.")
    max_steps: int | None = Field(default=1000, ge=1, description="Optimizer steps to train for.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Token budget instead of (or as well as) max_steps: converted to steps "
        "with the examples' mean length and the global batch; the smaller of the two budgets wins.")
    micro_batch_size: int = Field(default=32, ge=1, description="Sequences per device per forward pass.")
    accumulate_grad_batches: int = Field(default=1, ge=1,
                                         description="Micro batches per optimizer step (gradient accumulation).")
    grad_clip: float | None = Field(default=1.0, gt=0.0, description="Clip the global gradient norm to this; "
                                    "null turns clipping off.")

    # ---- precision and scale ------------------------------------------------------------------
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true"] = Field(
        default="auto", description="auto: bf16-mixed on a GPU, 32-true on CPU.")
    accelerator: Literal["auto", "cpu", "gpu"] = Field(default="auto", description="Where to train.")
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = Field(
        default="auto", description="auto (one device, or DDP on several), ddp (torchrun/SLURM, or re-launches "
        "the script), ddp_spawn (spawns processes: notebooks and tests), fsdp (sharded weights).")
    devices: int | Literal["auto"] = Field(default="auto", description="Devices (processes) per node.")
    num_nodes: int = Field(default=1, ge=1, description="Machines.")
    compile: bool = Field(default=False, description="torch.compile the model's forward (dynamic shapes).")

    # ---- data ---------------------------------------------------------------------------------
    mask_prob: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="Dynamic masking rate; null = the examples' rate. MosaicBERT "
        "and ModernBERT train with 0.3. Statically masked examples cannot change it.")
    seed: int = Field(default=0, ge=0, description="Seed of weights, data order, masks and dropout.")
    num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes per device (0 = "
                             "collate in the training process).")
    data_streams: int | None = Field(
        default=None, ge=1, description="Independent data streams the train split is dealt into; each device "
        "and worker reads its own streams. Default devices x workers. Fix it to make the global batch the same "
        "whatever the number of devices (as MosaicML streaming's canonical nodes).")
    shuffle_buffer: int = Field(default=8192, ge=1, description="Examples per shuffle block: a block is shuffled, "
                                "sorted by length into batches (when bucketing), and the batches shuffled.")
    bucketing: bool = Field(default=True, description="Batch examples of similar length together (less padding).")

    # ---- validation, logging, checkpoints -----------------------------------------------------
    val_every_n_steps: int = Field(default=200, ge=1, description="Validate every this many optimizer steps "
                                   "(and at the last step).")
    val_examples: int = Field(default=2048, ge=1, description="Validation examples evaluated each time: the "
                              "first of the validation split, with fixed masks, whatever the number of devices.")
    log_every_n_steps: int = Field(default=10, ge=1, description="Log training metrics every this many steps.")
    checkpoint_every_n_steps: int = Field(default=500, ge=1, description="Save a checkpoint every this many steps "
                                          "(and on SIGTERM/SIGINT, and at the end).")
    keep_checkpoints: int = Field(default=3, ge=1, description="Periodic checkpoints kept (newest); last.ckpt "
                                  "is kept as well.")
    peak_tflops: float | None = Field(default=None, gt=0.0, description="Accelerator peak TFLOP/s per device for "
                                      "MFU; default: Lightning's table for known GPUs.")

    # ---- gate ---------------------------------------------------------------------------------
    min_val_mlm_accuracy: float = Field(default=0.1, ge=0.0, le=1.0,
                                        description="Gate: the last validation MLM accuracy must reach this.")
    min_val_mlm_accuracy_over_baseline: float = Field(
        default=0.0, ge=0.0, description="Gate: the last validation MLM accuracy must reach this multiple of the "
        "baseline of always predicting the most frequent masked token of the validation set (1.2: the model "
        "knows more than word frequencies; holds for short runs, whatever the corpus). 0 turns it off.")
    require_loss_decrease: bool = Field(default=True, description="Gate: the mean training loss of the last "
                                        "tenth of logged steps must be below that of the first tenth.")

    @model_validator(mode="after")
    def _check(self):
        if self.max_steps is None and self.max_tokens is None:
            raise ValueError("set max_steps or max_tokens (or both): the run needs a budget")
        if self.model not in ModelConfig.preset_names():
            raise ValueError(f"unknown model preset {self.model!r}; choose one of "
                             f"{', '.join(ModelConfig.preset_names())}")
        if self.init_from is not None and self.model_overrides:
            raise ValueError(f"init_from takes the architecture from {self.init_from!r}; model_overrides "
                             f"{self.model_overrides} cannot apply to it: drop them")
        if "vocab_size" in self.model_overrides:
            raise ValueError("model_overrides must not set vocab_size: it comes from the examples' vocabulary")
        if self.strategy == "fsdp" and self.accelerator == "cpu":
            raise ValueError("strategy fsdp needs GPUs (Lightning's FSDP runs on CUDA only); use ddp on CPU")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.max_steps is not None and self.warmup_steps is not None and self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below max_steps ({self.max_steps})")
        return self

    def fingerprint_json(self) -> str:
        """Canonical JSON of the fields that decide what is computed (see OPERATIONAL_FIELDS). ``init_from`` is
        left out: the run fingerprint takes the hash of the weights it names instead (a name can move, the
        weights cannot), and runs without it keep the fingerprints they had before it existed."""
        data = self.model_dump(mode="json", exclude=set(OPERATIONAL_FIELDS) | {"init_from"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def resolved_precision(self, cuda: bool) -> str:
        if self.precision != "auto":
            return self.precision
        return "bf16-mixed" if cuda else "32-true"

    def warmup_for(self, total_steps: int) -> int:
        steps = self.warmup_steps if self.warmup_steps is not None else round(self.warmup_ratio * total_steps)
        return min(steps, max(total_steps - 1, 0))
