"""run_finetune: a BERT-family model and a tasks dataset in, a fine-tuned, gated, Hugging Face-format model out.

Steps: the base model is imported with the task's head (a model that is not BERT-family, or whose
vocabulary does not fit its embeddings, is refused here, before any work) -> the fingerprint (the base
model's files, the task dataset's fingerprint, the config) -> features of the train and dev splits ->
the run directory ``<data_dir>/runs/<name>-<fingerprint>/`` (config.yaml, checkpoints/, logs/) ->
Lightning fit with dev evaluation every epoch (or every N steps), the best checkpoint kept, early
stopping; resumed from ``checkpoints/last.ckpt`` when asked -> the best checkpoint scored on every
split -> gate (a floor, and strictly above the majority baseline on dev) -> only then the export to
``<data_dir>/models/<name>/<fingerprint>/`` (HF layout, model card, metrics.json, _manifest.json) and the
predictions dataset (view ``predictions_<name>``). The same command with the same inputs reuses the export.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from pydantic import BaseModel

from bertplat.allocator import retain_freed_memory
from bertplat.catalog import Catalog, sql_name
from bertplat.finetune.config import FinetuneConfig
from bertplat.finetune.data import SplitData, TaskData, baseline_metrics, build_split, decode_split
from bertplat.finetune.evaluate import (
    MANIFEST,
    hash_model_dir,
    model_lineage,
    predict_split,
    resolve_model,
    tokenizer_dir,
    write_predictions,
)
from bertplat.finetune.features import load_tokenizer
from bertplat.finetune.gate import gate_finetune, selection_metric
from bertplat.finetune.module import EvalBatches, FinetuneModule, TrainBatches, total_steps_for
from bertplat.finetune.report import model_card, plot_learning_curve
from bertplat.lake import DatasetHandle, Lake, check_name, fingerprint, write_json_atomic
from bertplat.model.checkpoint import write_dir_atomically
from bertplat.model.convert_heads import TaskImport, export_task_hf, import_task_hf
from bertplat.pretrain.callbacks import STATE_FILE, RunCheckpoints, StepProgress, quiet_lightning
from bertplat.pretrain.report import read_history
from bertplat.progress import NullProgress, Progress
from bertplat.validation import GateError, GateReport

KIND = "model"
SCHEMA_VERSION = 1
log = logging.getLogger(__name__)


class FinetuneInterrupted(RuntimeError):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; the message says how to resume."""


class FinetuneResult(BaseModel):
    """What a fine-tuning run made and where."""

    name: str
    fingerprint: str
    model_dir: Path
    run_dir: Path
    task: DatasetHandle
    predictions: DatasetHandle | None
    dev_split: str
    metric: str
    dev_metric: float
    baseline: float
    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    steps: int
    report: GateReport
    reused: bool = False
    resumed_from_step: int | None = None
    elapsed_s: float = 0.0

    def summary(self) -> str:
        done = "already up to date" if self.reused else f"{self.steps:,} steps in {self.elapsed_s:.0f}s" + (
            f" (resumed at step {self.resumed_from_step})" if self.resumed_from_step else "")
        lines = [f"model {self.name}@{self.fingerprint} fine-tuned on {self.task.ref()}: {done}; dev "
                 f"({self.dev_split}) {self.metric} {self.dev_metric:.4f} (majority baseline {self.baseline:.4f})"]
        for split, m in self.metrics.items():
            lines.append(f"  {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
        lines.append(f"  model: {self.model_dir}  (metrics.json, README.md, learning_curve.png)")
        lines.append(f"  run:   {self.run_dir}")
        if self.predictions is not None:
            lines.append(f"  DuckDB: SELECT * FROM {sql_name('predictions_' + self.predictions.name)} WHERE NOT correct "
                         "ORDER BY confidence DESC LIMIT 10;")
        return "\n".join(lines)


# ---- planning ---------------------------------------------------------------------------------
def import_base(base_dir: Path, data: TaskData, cfg: FinetuneConfig) -> TaskImport:
    """The base model with the task's head: refused here when it is not a BERT-family model directory."""
    try:
        return import_task_hf(base_dir, data.head(cfg.classifier_dropout), reset_head=cfg.reset_head,
                              **cfg.model_overrides)
    except ValueError as exc:
        raise ValueError(f"cannot fine-tune {base_dir}: {exc}") from None


def run_fingerprint(base_hash: str, task: DatasetHandle, cfg: FinetuneConfig) -> str:
    return fingerprint(KIND, cfg.fingerprint_json(), [f"base:{base_hash}", f"task:{task.fingerprint}"],
                       SCHEMA_VERSION)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def prepare_run_dir(run_dir: Path, cfg: FinetuneConfig, resume: bool) -> tuple[Path | None, str]:
    """(checkpoint to resume from, status). status 'done' means training finished (or stopped early)
    and only scoring, the gate and the export are left."""
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    state = _read_json(ckpt_dir / STATE_FILE).get("status")
    if state in ("finished", "stopped") and (ckpt_dir / "best.ckpt").is_file():
        return None, "done"
    if last.is_file() and not resume:
        raise ValueError(f"{run_dir} already holds an unfinished run with checkpoints; pass resume=True (--resume) "
                         "to continue it, or delete the directory to start over")
    saved = run_dir / "config.yaml"
    if last.is_file() and saved.is_file():
        old = FinetuneConfig.model_validate(yaml.safe_load(saved.read_text(encoding="utf-8")))
        if old.fingerprint_json() != cfg.fingerprint_json():
            raise ValueError(f"cannot resume {run_dir}: it was made with another config ({saved})")
    if not last.is_file():
        shutil.rmtree(run_dir / "logs", ignore_errors=True)  # an attempt that died before its first checkpoint
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=True), encoding="utf-8")
    return (last if last.is_file() else None), "train"


def build_trainer(cfg: FinetuneConfig, run_dir: Path, monitor: str, total: int, callbacks: list) -> pl.Trainer:
    logs = run_dir / "logs"
    segment = f"segment-{len(list((logs / 'csv').glob('segment-*'))):03d}"
    # best.ckpt holds the weights alone: it is only ever scored and exported (resuming reads last.ckpt), and
    # the optimizer's two moments would triple what each new best writes (270 MB against 90 MB for MiniLM)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="max",
                           save_top_k=1, save_last=False, auto_insert_metric_name=False, enable_version_counter=False,
                           save_weights_only=True)
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", every_n_train_steps=max(1, min(200, total)),
                           save_top_k=1, monitor=None, enable_version_counter=False)
    cbs: list[Any] = [best, last, RunCheckpoints(run_dir / "checkpoints", total), *callbacks]
    if cfg.early_stopping_patience:
        cbs.append(EarlyStopping(monitor=monitor, mode="max", patience=cfg.early_stopping_patience,
                                 check_on_train_epoch_end=False))
    cuda = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    every = cfg.eval_every_n_steps
    quiet_lightning()
    return pl.Trainer(
        accelerator=cfg.accelerator, devices=1, precision=cfg.resolved_precision(cuda), max_epochs=cfg.epochs,
        max_steps=total, accumulate_grad_batches=cfg.accumulate_grad_batches, gradient_clip_val=cfg.grad_clip,
        val_check_interval=every * cfg.accumulate_grad_batches if every else None,
        check_val_every_n_epoch=None if every else 1, num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every_n_steps, logger=CSVLogger(run_dir, name="logs/csv", version=segment),
        callbacks=cbs, enable_progress_bar=False, enable_model_summary=False, default_root_dir=run_dir,
        deterministic=False)


# ---- the stage ----------------------------------------------------------------------------------
def run_finetune(base_model: str | Path, task: DatasetHandle, name: str, config: FinetuneConfig, lake: Lake,
                 catalog: Catalog | None = None, progress: Progress | None = None, run_dir: str | Path | None = None,
                 resume: bool = False, *, callbacks: list | None = None) -> FinetuneResult:
    """Fine-tune ``base_model`` on ``task``; export it as model ``name`` if the gate passes.

    When the export of this base, task and config exists, it is returned (``reused``). ``resume=True``
    continues the run from ``checkpoints/last.ckpt``. ``callbacks``: extra Lightning callbacks. Raises
    :class:`FinetuneInterrupted` after a SIGTERM/SIGINT checkpoint, :class:`GateError` when the gate fails
    (nothing exported, no predictions written)."""
    start = time.monotonic()
    retain_freed_memory()  # activations reuse freed blocks instead of page-faulting (bertplat.allocator)
    check_name(name)
    progress = progress or NullProgress()
    base_dir = resolve_model(base_model, lake)  # a directory, or NAME[@FINGERPRINT] of an exported model
    data = TaskData.open(task, lake)
    torch.manual_seed(config.seed)  # a fresh head's init depends on the seed, not on what ran before
    imported = import_base(base_dir, data, config)  # refuses a model that is not BERT-family, before any work
    tok_dir = tokenizer_dir(base_dir)
    fp = run_fingerprint(hash_model_dir(base_dir), task, config)
    final = lake.data_dir / "models" / name / fp
    if lake.fetch(final):  # on an object store: from the bucket, when it holds the export
        return reused_result(final, task, lake, start)
    dev_name = config.dev_split or data.default_dev_split()
    metric = selection_metric(data, config)
    unknown = [s for s in (config.score_splits or []) if s not in data.splits]
    if unknown:
        raise ValueError(f"score_splits names {unknown}, which {task.ref()} does not have; its splits are "
                         f"{data.splits}")
    tok = load_tokenizer(tok_dir)
    with progress.task("task features", total=2, unit="splits") as bar:
        train = build_split(data, config.train_split, tok, config)
        bar.advance(1)
        dev = build_split(data, dev_name, tok, config)
        bar.advance(1)
    for split in (train, dev):
        if not split.labelled or not len(split):
            raise ValueError(f"split {split.name!r} of {task.ref()} is empty or unlabelled; fine-tuning needs a "
                             "labelled train split and a labelled dev split (train_split, dev_split)")
    run_dir = Path(run_dir) if run_dir else lake.data_dir / "runs" / f"{name}-{fp}"
    ckpt, status = prepare_run_dir(run_dir, config, resume)
    write_json_atomic(run_dir / "run.json", {"name": name, "fingerprint": fp, "task": task.ref(),
                                             "base_model": str(base_dir)})
    resumed, dev_outputs = None, {}
    if status == "train":
        resumed, dev_outputs = _fit(imported, data, train, dev, config, run_dir, metric, name, progress, ckpt,
                                    callbacks or [])
    return finish(name, fp, run_dir, base_dir, tok_dir, imported, data, train, dev, config, metric, lake, catalog,
                  progress, resumed, start, dev_outputs)


def _fit(imported: TaskImport, data: TaskData, train: SplitData, dev: SplitData, cfg: FinetuneConfig, run_dir: Path,
         metric: str, name: str, progress: Progress, ckpt: Path | None,
         callbacks: list) -> tuple[int | None, dict[int, dict[int, Any]]]:
    """Train -> (the step resumed from, the dev outputs the module kept by global step)."""
    total = total_steps_for(train, cfg)
    pl.seed_everything(cfg.seed, workers=False, verbose=False)
    model = imported.model

    def evaluate(outputs: dict[int, Any]) -> dict[str, float]:
        return decode_split(data, dev, outputs, max_answer_length=cfg.max_answer_length, n_best=cfg.n_best).metrics

    monitor = f"dev/{metric}"  # what the best checkpoint is chosen by, and the module keeps dev outputs by
    module = FinetuneModule(model.train(), cfg, total, evaluate, monitor=monitor)
    trainer = build_trainer(cfg, run_dir, monitor, total,
                            [StepProgress(progress, f"fine-tuning {name}", total), *callbacks])
    resumed = int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["global_step"]) if ckpt else None
    trainer.fit(module, train_dataloaders=TrainBatches(train, cfg, module), val_dataloaders=EvalBatches(dev, cfg),
                ckpt_path=ckpt, weights_only=True)
    state = _read_json(run_dir / "checkpoints" / STATE_FILE)
    if state.get("status") == "interrupted":
        raise FinetuneInterrupted(f"fine-tuning {name} stopped on {state['signal']} at step {state['global_step']} "
                                  f"of {total}; checkpoint {state['checkpoint']}. Resume with the same command and "
                                  f"--resume (resume=True, run_dir={str(run_dir)!r}).")
    if not (run_dir / "checkpoints" / "best.ckpt").is_file():
        raise ValueError(f"fine-tuning {name} ended without a dev evaluation (no best.ckpt in {run_dir}); train "
                         "for at least one epoch or set eval_every_n_steps below the total steps")
    return resumed, module.dev_outputs


def load_best(imported: TaskImport, run_dir: Path) -> tuple[torch.nn.Module, int]:
    """The best checkpoint's model (eval mode) and its global step."""
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True, mmap=True)
    state = ckpt["state_dict"]
    model = imported.model
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model.eval(), int(ckpt["global_step"])


def finish(name: str, fp: str, run_dir: Path, base_dir: Path, tok_dir: Path, imported: TaskImport, data: TaskData,
           train: SplitData, dev: SplitData, cfg: FinetuneConfig, metric: str, lake: Lake, catalog: Catalog | None,
           progress: Progress, resumed: int | None, start: float,
           dev_outputs: dict[int, dict[int, Any]] | None = None) -> FinetuneResult:
    """Score the best checkpoint on every split, gate, then export and write the predictions. ``dev_outputs``
    (global step -> dev outputs of that step's evaluation) spares the dev pass when the best step is there."""
    model, best_step = load_best(imported, run_dir)
    tok = load_tokenizer(tok_dir)
    decoded, threshold = {}, None
    splits = [dev.name] + [s for s in data.splits if s != dev.name and (cfg.score_splits is None
                                                                       or s in cfg.score_splits)]
    with progress.task("scoring splits", total=len(splits), unit="splits") as bar:
        for s in splits:
            split = dev if s == dev.name else train if s == train.name else build_split(data, s, tok, cfg)
            kept = (dev_outputs or {}).get(best_step) if s == dev.name else None
            outputs = kept if kept is not None else predict_split(model, split, cfg)
            decoded[s] = decode_split(data, split, outputs, null_threshold=threshold,
                                      max_answer_length=cfg.max_answer_length, n_best=cfg.n_best)
            if s == dev.name:
                threshold = decoded[s].null_threshold  # SQuAD v2: tuned on dev, applied to the rest
            bar.advance(1)
    metrics = {s: d.metrics for s, d in decoded.items() if d.metrics}
    baseline = baseline_metrics(data, train, dev, data.metrics).get(metric, 0.0)
    history = read_history(run_dir / "logs" / "csv")
    steps = int(max((r["step"] for r in history), default=0))
    report = gate_finetune(metrics[dev.name], metric, baseline, cfg, f"{KIND}/{name}@{fp}")
    if not report.passed:
        raise GateError(report, report.write(lake.data_dir / "reports"))
    plot_learning_curve(history, metric, run_dir / "learning_curve.png", f"fine-tuning {name} on {data.handle.ref()}")
    final = lake.data_dir / "models" / name / fp
    parents = model_lineage(base_dir, data.handle)
    summary = {"task": data.handle.ref(), "task_type": data.task_type, "dev_split": dev.name, "metric": metric,
               "dev_metric": metrics[dev.name][metric], "baseline": baseline, "splits": metrics, "steps": steps,
               "null_threshold": threshold}
    manifest = {"schema_version": SCHEMA_VERSION, "kind": KIND, "name": name, "fingerprint": fp,
                "format": "huggingface", "parents": parents, "config": cfg.model_dump(mode="json"),
                "head": model.head_config.to_dict(), "metrics": summary, "validation": report.model_dump(mode="json"),
                "run_dir": str(run_dir), "base_model": str(base_dir)}

    def write(tmp: Path) -> None:
        export_task_hf(model, tmp / "hf", tokenizer_dir=tok_dir)
        for f in (tmp / "hf").iterdir():
            os.replace(f, tmp / f.name)
        (tmp / "hf").rmdir()
        plot = run_dir / "learning_curve.png"
        if plot.is_file():
            shutil.copyfile(plot, tmp / "learning_curve.png")
        write_json_atomic(tmp / "metrics.json", summary)
        (tmp / "README.md").write_text(model_card(name, fp, final, summary, parents, cfg), encoding="utf-8")
        import datetime as dt

        from bertplat import __version__

        write_json_atomic(tmp / MANIFEST, {**manifest, "bertplat_version": __version__,
                                           "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})

    model_dir = write_dir_atomically(final, write, overwrite=True)
    lake.publish(model_dir)  # on an object store: the files, then the manifest (the commit marker)
    records = [r for d in decoded.values() for r in d.records]
    predictions = write_predictions(records, name, fp, lake, catalog, parents=[
        data.handle.model_dump(include={"kind", "name", "fingerprint"}), {"kind": KIND, "name": name, "fingerprint": fp}],
        config={"model": str(model_dir), "task": data.handle.ref(), "splits": list(decoded)})
    return FinetuneResult(name=name, fingerprint=fp, model_dir=model_dir, run_dir=run_dir, task=data.handle,
                          predictions=predictions, dev_split=dev.name, metric=metric,
                          dev_metric=metrics[dev.name][metric], baseline=baseline, metrics=metrics, steps=steps,
                          report=report, resumed_from_step=resumed, elapsed_s=time.monotonic() - start)


def reused_result(final: Path, task: DatasetHandle, lake: Lake, start: float) -> FinetuneResult:
    """The result of a run whose export exists: read from its manifest, nothing trained or written."""
    m = _read_json(final / MANIFEST)
    s = m["metrics"]
    pred = lake.find("predictions", m["name"], m["fingerprint"])
    return FinetuneResult(name=m["name"], fingerprint=m["fingerprint"], model_dir=final, run_dir=Path(m["run_dir"]),
                          task=task, predictions=pred, dev_split=s["dev_split"], metric=s["metric"],
                          dev_metric=s["dev_metric"], baseline=s["baseline"], metrics=s["splits"], steps=s["steps"],
                          report=GateReport(**m["validation"]), reused=True, elapsed_s=time.monotonic() - start)
