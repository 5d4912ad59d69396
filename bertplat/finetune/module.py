"""The LightningModule of fine-tuning and the batches it trains on.

Lightning owns the loop, precision, accumulation and clipping; this module adds what makes a run exact
across a kill and a resume, as pretraining does:

- **Batch order** is a function of (seed, epoch) only (:func:`epoch_batches`: length-sorted pools under the
  token budget). The module counts the micro batches of the current epoch, the count travels in every
  checkpoint, and a resumed epoch skips what was trained (Lightning does not fast-forward an iterable).
- **Dropout** is reseeded before every micro batch from (seed, micro batch number), so a resumed run draws
  the same masks as an uninterrupted one.

Validation collects the logits of every dev feature row on the CPU and hands them to ``evaluate`` (the
stage's decoder: predictions and the task's metrics), which are logged as ``dev/<metric>`` for the best
checkpoint and early stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from bertplat.finetune.batching import plan_batches
from bertplat.finetune.config import FinetuneConfig
from bertplat.finetune.data import SplitData, make_batch
from bertplat.model.heads import TaskModel
from bertplat.pretrain.module import capture_rng, restore_rng
from bertplat.pretrain.optim import build_optimizer, build_schedule

TAG_DROPOUT = 7
TAG_ORDER = 8


def epoch_batches(split: SplitData, cfg: FinetuneConfig, epoch: int) -> list[np.ndarray]:
    """Training batches of ``epoch``: the same for the same seed and epoch, whatever happened before."""
    rng = np.random.default_rng([cfg.seed, TAG_ORDER, epoch])
    return plan_batches(split.lengths, cfg.batch_size, cfg.max_tokens, rng=rng)


def eval_batches(split: SplitData, cfg: FinetuneConfig) -> list[np.ndarray]:
    return plan_batches(split.lengths, cfg.eval_batch_size, cfg.max_tokens)


def total_steps_for(split: SplitData, cfg: FinetuneConfig) -> int:
    """Optimizer steps of the whole run: each epoch's micro batches in windows of ``accumulate`` (the last
    window of an epoch may be short), capped by max_steps."""
    steps = sum(-(-len(epoch_batches(split, cfg, e)) // cfg.accumulate_grad_batches) for e in range(cfg.epochs))
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


class TrainBatches:
    """The current epoch's batches (Lightning accepts any iterable); skips those a resumed epoch trained."""

    def __init__(self, split: SplitData, cfg: FinetuneConfig, module: FinetuneModule):
        self.split, self.cfg, self.module = split, cfg, module

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self.module.trainer.current_epoch
        skip = self.module.resume_skip(epoch)
        for idx in epoch_batches(self.split, self.cfg, epoch)[skip:]:
            yield make_batch(self.split, idx)

    # The position lives in the module's counters; these keep Lightning from warning that the loader is
    # not resumable.
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EvalBatches:
    def __init__(self, split: SplitData, cfg: FinetuneConfig):
        self.split, self.batches = split, eval_batches(split, cfg)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx in self.batches:
            yield make_batch(self.split, idx)

    def __len__(self) -> int:
        return len(self.batches)


def row_outputs(task: str, out: Any, batch: dict[str, torch.Tensor]) -> dict[int, Any]:
    """Feature row -> its logits as float32 numpy, trimmed to the row's length."""
    lengths = batch["attention_mask"].sum(1).tolist()
    rows = batch["rows"].tolist()
    if task == "sequence_classification":
        logits = out.logits.float().cpu().numpy()
        return {r: logits[b] for b, r in enumerate(rows)}
    if task == "token_classification":
        logits = out.logits.float().cpu().numpy()
        return {r: logits[b, : lengths[b]] for b, r in enumerate(rows)}
    start, end = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
    return {r: (start[b, : lengths[b]], end[b, : lengths[b]]) for b, r in enumerate(rows)}


def split_inputs(batch: dict[str, torch.Tensor], with_targets: bool) -> dict[str, torch.Tensor]:
    keep = {"input_ids", "attention_mask", "token_type_ids"}
    if with_targets:
        keep |= {"labels", "start_positions", "end_positions"}
    return {k: v for k, v in batch.items() if k in keep}


class FinetuneModule(pl.LightningModule):
    """Fine-tuning of one task model; ``evaluate(outputs) -> metrics`` scores the dev split."""

    def __init__(self, model: TaskModel, cfg: FinetuneConfig, total_steps: int,
                 evaluate: Callable[[dict[int, Any]], dict[str, float]] | None = None, monitor: str | None = None):
        super().__init__()
        self.model, self.cfg, self.total_steps, self.evaluate = model, cfg, total_steps, evaluate
        self.monitor = monitor  # the logged metric the best checkpoint is chosen by (``dev/<metric>``)
        self.micro_batches = 0  # since the start of the run, across resumptions
        self.epoch_micro_batches = 0  # of the current epoch
        self._resume: tuple[int, int] | None = None  # (epoch, micro batches of it) of the checkpoint resumed
        self._val: dict[int, Any] = {}
        self._val_loss: list[float] = []
        # global step -> dev outputs of the latest evaluation and of the best one so far, float32 runs only:
        # the stage scores the best checkpoint with them instead of running dev through it again
        self.dev_outputs: dict[int, dict[int, Any]] = {}
        self._best: tuple[float, int] | None = None

    def resume_skip(self, epoch: int) -> int:
        return self._resume[1] if self._resume and self._resume[0] == epoch else 0

    # ---- training -----------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.epoch_micro_batches = self.resume_skip(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self._resume = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        seed = np.random.SeedSequence([self.cfg.seed, TAG_DROPOUT, self.micro_batches])
        torch.manual_seed(int(seed.generate_state(1, np.uint64)[0]))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(**split_inputs(batch, with_targets=True))
        self.micro_batches += 1
        self.epoch_micro_batches += 1
        self.log("train/loss", out.loss.detach(), on_step=True, on_epoch=False)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        self.log("loss", out.loss.detach(), prog_bar=True, logger=False, on_step=True, on_epoch=False)
        return out.loss

    # ---- validation ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val, self._val_loss = {}, []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        labelled = any(k in batch for k in ("labels", "start_positions"))
        out = self.model(**split_inputs(batch, with_targets=labelled))
        if out.loss is not None:
            self._val_loss.append(float(out.loss) * len(batch["rows"]))
        self._val.update(row_outputs(self.model.head_config.task, out, batch))

    def on_validation_epoch_end(self) -> None:
        if self.evaluate is None:
            return
        metrics = {f"dev/{k}": float(v) for k, v in self.evaluate(self._val).items()}
        if self._val_loss:
            metrics["dev/loss"] = sum(self._val_loss) / max(1, len(self._val))
        self.log_dict(metrics, prog_bar=False)
        self.keep_dev_outputs(metrics.get(self.monitor))

    def keep_dev_outputs(self, score: float | None) -> None:
        """Keep this evaluation's outputs if its checkpoint may end up the best (the latest one, and the best
        score so far); half-precision runs keep none, since the final scoring runs in float32."""
        if self.monitor is None or score is None or str(self.trainer.precision) not in ("32-true", "32"):
            return
        step = int(self.trainer.global_step)
        keep = {step} | ({self._best[1]} if self._best else set())
        if self._best is None or score > self._best[0]:  # strictly better, as ModelCheckpoint(mode="max")
            self._best = (score, step)
        self.dev_outputs = {k: v for k, v in {**self.dev_outputs, step: self._val}.items() if k in keep}

    # ---- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.cfg, cuda=self.device.type == "cuda")  # type: ignore[arg-type]
        schedule = build_schedule(optimizer, self.cfg, self.total_steps)  # type: ignore[arg-type]
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}

    # ---- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["bertplat"] = {"micro_batches": self.micro_batches, "epoch": self.current_epoch,
                                  "epoch_micro_batches": self.epoch_micro_batches, "rng": capture_rng()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("bertplat")
        if state is None:
            raise ValueError("this checkpoint was not written by bertplat fine-tuning (no 'bertplat' entry)")
        self.micro_batches = state["micro_batches"]
        self._resume = (state["epoch"], state["epoch_micro_batches"])
        restore_rng(state["rng"])
