"""Lightning callbacks of a pretraining run: throughput and MFU, progress, checkpoints on signals and at the end.

- :class:`Throughput` logs tokens/s (real tokens, all ranks) and, on CUDA, model FLOPs utilisation
  ``model FLOPs / (time * peak * devices)`` (PaLM's definition; FLOPs from ``ModelConfig.flops_per_token``
  at each sequence's own length, so padding counts as waste).
- :class:`StepBar` is the terminal's progress bar: one line of optimizer steps out of the total, time,
  loss and tokens/s (Lightning's own bars count micro batches of an endless epoch: ``Epoch 0/-2``,
  ``v_num`` and a second line for ``tok/s``).
- :class:`StepProgress` reports optimizer steps through the bertplat ``Progress`` protocol, so a Prefect
  run log gets a progress line every ~10 s (``LogProgress``) where there is no terminal.
- :class:`RunCheckpoints` saves on SIGTERM / SIGINT and at the end, always at an optimizer-step
  boundary (a checkpoint in the middle of an accumulation window would lose its partial gradients), and
  writes ``state.json`` beside the checkpoints. Lightning 2.6 handles SIGTERM itself by raising after the
  current micro batch without saving; this handler replaces it for the duration of ``fit``. With several
  ranks, the stop decision is all-reduced so that every rank stops at the same step. A second SIGINT
  interrupts at once (KeyboardInterrupt), for a person who really means it.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ProgressBar

from bertplat.model import ModelConfig
from bertplat.pretrain.module import batch_flops
from bertplat.progress import Progress


class _NoAdverts(logging.Filter):
    """Drops Lightning's product tips ("💡 Tip: ... litlogger") from the run's log; keeps everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


def quiet_lightning() -> None:
    """Keep what Lightning prints to what a user can act on: no product tips, and not the deprecation warning
    its own pytree helper raises under torch 2.13 (``isinstance(treespec, LeafSpec)``), which names no code of
    ours. Idempotent; called before each Trainer is built."""
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero_log.filters):
        rank_zero_log.addFilter(_NoAdverts())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")

STATE_FILE = "state.json"


def _at_step_boundary(trainer: pl.Trainer, module: Any) -> bool:
    return module.micro_batches % trainer.accumulate_grad_batches == 0


def peak_flops(device: torch.device, precision: str, override_tflops: float | None) -> float | None:
    """Peak FLOP/s of one device for MFU: the configured value, else Lightning's table (CUDA only)."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    from lightning.fabric.utilities.throughput import get_available_flops

    dtype = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16, "16-mixed": torch.float16}.get(
        precision, "tf32" if torch.get_float32_matmul_precision() != "highest" else torch.float32)
    return get_available_flops(device, dtype)


class Throughput(pl.Callback):
    """tokens/s and MFU every ``log_every_n_steps`` steps; the token count survives resumption."""

    def __init__(self, model_config: ModelConfig, precision: str, peak_tflops: float | None, every: int):
        self.model_config, self.precision, self.peak_tflops, self.every = model_config, precision, peak_tflops, every
        self.tokens_seen = 0  # all ranks, since the start of the run
        self._tokens = self._flops = 0.0
        self._since = self._val_start = 0.0
        self._peak: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._peak = peak_flops(pl_module.device, self.precision, self.peak_tflops)
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        info = pl_module.last_batch_info
        self._tokens += info["num_tokens"]
        self._flops += batch_flops(self.model_config, info["num_tokens"], info["sum_sq_tokens"], info["num_masked"])
        last = trainer.global_step >= trainer.max_steps > 0
        if not _at_step_boundary(trainer, pl_module) or (trainer.global_step % self.every and not last):
            return
        # All ranks reach this at the same steps, so the reduction cannot hang.
        totals = trainer.strategy.reduce(torch.tensor([self._tokens, self._flops], dtype=torch.float64,
                                                      device=pl_module.device), reduce_op="sum").tolist()
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = max(time.perf_counter() - self._since, 1e-9)
        self.tokens_seen += int(totals[0])
        metrics = {"perf/tokens_per_s": totals[0] / elapsed, "perf/tokens_seen": float(self.tokens_seen)}
        if self._peak:
            metrics["perf/mfu"] = totals[1] / elapsed / (self._peak * trainer.world_size)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)
        pl_module.log("tok/s", metrics["perf/tokens_per_s"], prog_bar=True, logger=False)
        self._tokens = self._flops = 0.0
        self._since = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._since += time.perf_counter() - self._val_start  # validation time is not training time

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_seen": self.tokens_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tokens_seen = state_dict["tokens_seen"]


class StepProgress(pl.Callback):
    """Optimizer steps through a bertplat Progress (rank 0 only)."""

    def __init__(self, progress: Progress, desc: str, total_steps: int = 0):
        self.progress, self.desc, self.total_steps = progress, desc, total_steps
        self._cm = self._tracker = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self._cm = self.progress.task(self.desc, total=self.total_steps, unit="steps")
            self._tracker = self._cm.__enter__()
            if trainer.global_step:
                self._tracker.advance(trainer.global_step)  # resumed

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._tracker is not None and _at_step_boundary(trainer, pl_module):
            self._tracker.advance(1)

    def _close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self._tracker = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        self._close()


class StepBar(ProgressBar):
    """``demo-tiny: step 120/200 |████▊   | 00:24<00:16, loss 7.720, 17,196 tok/s`` (rank 0, stderr).

    One line whatever the terminal's width (tqdm shrinks the bar), updated at optimizer-step boundaries;
    the loss and tok/s are what the module and :class:`Throughput` put in the progress-bar metrics."""

    BAR_FORMAT = "{desc}: step {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}"

    def __init__(self, desc: str, total_steps: int = 0):
        super().__init__()
        self.desc, self.total_steps = desc, total_steps
        self._enabled = True
        self._bar = None
        self._postfix = ""

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        from tqdm import tqdm

        tqdm.write(" ".join(map(str, args)), file=sys.stderr)

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        from tqdm import tqdm

        if self._enabled and trainer.is_global_zero:
            self._bar = tqdm(total=self.total_steps, initial=trainer.global_step, desc=self.desc, unit="step",
                             bar_format=self.BAR_FORMAT, dynamic_ncols=True, file=sys.stderr, leave=True)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._bar is None or not _at_step_boundary(trainer, pl_module):
            return
        metrics = trainer.progress_bar_metrics
        parts = [f"loss {float(metrics['loss']):.3f}" if "loss" in metrics else "",
                 f"{float(metrics['tok/s']):,.0f} tok/s" if "tok/s" in metrics else ""]
        self._postfix = ", ".join(p for p in parts if p)
        self._bar.set_postfix_str(self._postfix, refresh=False)
        self._bar.update(trainer.global_step - self._bar.n)
        if trainer.global_step >= self.total_steps:
            self._close()  # ends the line before Lightning prints "`Trainer.fit` stopped"; the final validation follows

    def on_validation_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self._bar is not None and not trainer.sanity_checking:
            self._bar.set_postfix_str(", ".join(p for p in (self._postfix, "validating") if p))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        self._close()


class RunCheckpoints(pl.Callback):
    """Checkpoint on SIGTERM/SIGINT (then stop) and at the end; ``state.json`` says how the run stands."""

    def __init__(self, checkpoint_dir: Path, total_steps: int = 0):
        self.dir, self.total_steps = Path(checkpoint_dir), total_steps
        self.requested: str | None = None  # name of the signal received
        self._old: dict[int, Any] = {}
        self._saved_step = -1

    # -- signals --------------------------------------------------------------------------------
    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl+C
        self.requested = signal.Signals(signum).name

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. not in a worker thread)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)

    def _restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not _at_step_boundary(trainer, pl_module):
            return
        if trainer.global_step >= self.total_steps:
            trainer.should_stop = True  # the last step: Lightning validates once more, then stops
        stop = self.requested is not None
        if trainer.world_size > 1:  # any rank's signal stops all ranks, at this same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self._save(trainer, "interrupted", self.requested or "signal on another rank")
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._restore()
        if trainer.should_stop and self.requested is not None:
            return
        status = "finished" if trainer.global_step >= self.total_steps else "stopped"
        if self._saved_step != trainer.global_step:
            self._save(trainer, status, None)
        else:
            self._write_state(trainer, status, None)

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        self._restore()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._saved_step = trainer.global_step

    # -- files ----------------------------------------------------------------------------------
    def _save(self, trainer: pl.Trainer, status: str, signal_name: str | None) -> None:
        # every rank: FSDP gathers shards collectively; the full state (optimizer, loops, callbacks)
        trainer.save_checkpoint(self.dir / "last.ckpt", weights_only=False)
        self._write_state(trainer, status, signal_name)

    def _write_state(self, trainer: pl.Trainer, status: str, signal_name: str | None) -> None:
        if trainer.is_global_zero:
            state = {"status": status, "global_step": trainer.global_step, "total_steps": self.total_steps,
                     "checkpoint": str(self.dir / "last.ckpt"), "signal": signal_name}
            (self.dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


class PublishRun(pl.Callback):
    """On an object-store data root: upload the run directory's new or changed files (checkpoints, logs)
    to the bucket as training goes, so a lost machine loses at most the steps since the last checkpoint.
    Checkpoints are written whole locally first (Lightning saves to a local file), then uploaded whole."""

    def __init__(self, lake: Any, run_dir: Path):
        self.lake, self.run_dir = lake, Path(run_dir)
        self._sent: dict[str, tuple[int, int]] = {}

    def publish(self) -> int:
        """Upload what changed since the last call; returns the number of files sent."""
        store = self.lake.store
        if store is None or not self.run_dir.is_dir():
            return 0
        sent = 0
        for path in sorted(self.run_dir.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed meanwhile (an old checkpoint past keep_checkpoints)
            rel = path.relative_to(self.run_dir).as_posix()
            if self._sent.get(rel) != (stat.st_mtime_ns, stat.st_size):
                store.put_file(path, f"{self.lake._rel(self.run_dir)}/{rel}")
                self._sent[rel] = (stat.st_mtime_ns, stat.st_size)
                sent += 1
        return sent

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.is_global_zero and _at_step_boundary(trainer, pl_module) and self.lake.store is not None:
            self.publish()
