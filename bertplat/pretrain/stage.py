"""run_pretrain: an examples dataset in, a pretrained, gated, Hugging Face-format model out.

Steps: check the config against the examples (vocabulary, lengths, masking) -> the finished export of
this fingerprint, if any, is returned as it is (``reused``) -> the run directory
``<data_dir>/runs/<name>-<fingerprint>/`` (config.yaml, model_config.json, run.json, checkpoints/, logs/)
-> Lightning fit, resuming when asked from the newest checkpoint that loads (``last.ckpt``, else the
newest ``step=*.ckpt``) -> metric history, metrics.csv/json, loss_curve.png -> gate (loss finite and
falling, validation MLM accuracy, absolute and over the most-frequent-token baseline) -> only then the
export to ``<data_dir>/models/<name>/<fingerprint>/`` with a model card and a manifest. The fingerprint
hashes the examples' fingerprint and the config's computing fields, so the same command finds the same
run; a resume that would find only another run of the name (another config) is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from pydantic import BaseModel

from bertplat.allocator import retain_freed_memory
from bertplat.catalog import Catalog
from bertplat.lake import DatasetHandle, Lake, check_name, fingerprint, write_json_atomic
from bertplat.model import BertPretrainingModel, ModelConfig, export_hf, save_checkpoint
from bertplat.model.checkpoint import write_dir_atomically
from bertplat.model.layers import EncoderLayer
from bertplat.pretrain.callbacks import (
    STATE_FILE,
    PublishRun,
    RunCheckpoints,
    StepBar,
    StepProgress,
    Throughput,
    quiet_lightning,
)
from bertplat.pretrain.config import OPERATIONAL_FIELDS, PretrainConfig
from bertplat.pretrain.datamodule import ExamplesSource, PretrainDataModule
from bertplat.pretrain.module import PretrainModule
from bertplat.pretrain.report import final_metrics, gate, model_card, plot_run, read_history, write_metrics
from bertplat.progress import NullProgress, Progress, TqdmProgress
from bertplat.validation import GateError, GateReport

KIND = "model"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SCHEMA_VERSION = 1
RUN_FILE = "run.json"  # what a run directory was made from: name, fingerprint, examples
MANIFEST = "_manifest.json"
_RUN_DIR_RE = re.compile(r"[0-9a-f]{16}")
log = logging.getLogger(__name__)


class PretrainInterrupted(RuntimeError):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; the message says how to resume."""


class PretrainResult(BaseModel):
    """What a pretraining run made and where."""

    name: str
    fingerprint: str
    run_dir: Path
    model_dir: Path | None  # None on ranks other than 0
    examples: DatasetHandle
    vocab: DatasetHandle
    steps: int
    metrics: dict[str, float]
    report: GateReport
    resumed_from_step: int | None
    elapsed_s: float
    rank: int = 0  # the process's global rank; only rank 0 has metrics and an export
    export_format: str = "huggingface"  # or "bertplat" for pre-LN models, which HF BERT cannot express
    reused: bool = False  # the export with this fingerprint existed: nothing was trained or written
    resumed_from: str | None = None  # the checkpoint file resumed from (not last.ckpt when that was unreadable)
    initial_weights: str | None = None  # init_from as given: the model this run continued

    def summary(self) -> str:
        if self.rank:
            return f"rank {self.rank} of pretraining {self.name}@{self.fingerprint} done; rank 0 reports and exports"
        m = self.metrics
        nsp = f", NSP/SOP accuracy {m['val/nsp_acc']:.3f}" if "val/nsp_acc" in m else ""
        resumed = f" (resumed at step {self.resumed_from_step})" if self.resumed_from_step else ""
        if self.resumed_from and self.resumed_from != "last.ckpt":
            resumed = f" (resumed at step {self.resumed_from_step} from {self.resumed_from}: last.ckpt was unreadable)"
        start = f" from {self.initial_weights}" if self.initial_weights else ""
        done = (f"already up to date, {self.steps:,} steps{start} on examples {self.examples.name}" if self.reused
                else f"{self.steps:,} steps{start} on examples {self.examples.name}{resumed} in {self.elapsed_s:.0f}s")
        return (f"model {self.name}@{self.fingerprint}: {done}; validation MLM accuracy "
                f"{m.get('val/mlm_acc', float('nan')):.3f}, "
                f"perplexity {m.get('val/mlm_ppl', float('nan')):.1f}{nsp}\n"
                f"  model: {self.model_dir}\n  run:   {self.run_dir} (loss_curve.png, metrics.csv; "
                f"tensorboard --logdir {self.run_dir / 'logs' / 'tensorboard'})\n"
                + (f"  transformers: BertForPreTraining.from_pretrained('{self.model_dir}')"
                   if self.export_format == "huggingface" else
                   f"  bertplat: bertplat.model.load_checkpoint('{self.model_dir}') (pre-LN: not loadable by "
                   "transformers)"))


# ---- planning: everything is checked before any work ---------------------------------------------
def model_config_for(source: ExamplesSource, cfg: PretrainConfig) -> ModelConfig:
    overrides = dict(cfg.model_overrides)
    overrides.setdefault("pad_token_id", source.vocab_info.pad_id)
    if not source.has_nsp:  # RoBERTa-style MLM-only examples: an NSP head would get no gradient
        if overrides.get("sop_or_nsp_head"):
            raise ValueError(f"{source.handle.ref()} has no next_sentence_label (objective "
                             f"{source.config.get('objective')!r}); drop sop_or_nsp_head from model_overrides")
        overrides["sop_or_nsp_head"] = False
    try:
        model = ModelConfig.preset(cfg.model, vocab_size=source.vocab_info.size, **overrides)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model preset {cfg.model!r} with model_overrides {cfg.model_overrides}: {exc}") from None
    if source.max_seq_length > model.max_position_embeddings:
        raise ValueError(f"the examples are up to {source.max_seq_length} tokens long but the model has "
                         f"max_position_embeddings={model.max_position_embeddings}; raise it in model_overrides")
    return model


@dataclasses.dataclass
class InitModel:
    """``init_from`` resolved: where the weights are, their content hash and the model they make."""

    path: Path
    digest: str  # hash_model_dir: config, weights and tokenizer files
    model: BertPretrainingModel | None  # None once copied into the run's module
    config: ModelConfig


def load_init_model(ref: str, source: ExamplesSource, lake: Lake) -> InitModel:
    """The model ``init_from`` names, checked against the examples before any work: a BERT-family model whose
    vocabulary is the examples' own, long enough for their sequences. Its NSP/SOP head is dropped for MLM-only
    examples, and a fresh one is built for NSP/SOP examples when it has none."""
    from bertplat.finetune.evaluate import hash_model_dir
    from bertplat.model.convert import load_model_dir
    from bertplat.registry.refs import resolve_model

    path = resolve_model(ref, lake)
    try:
        model, config = load_model_dir(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"init_from {ref!r} ({path}) cannot be loaded as a BERT-family model: {exc}") from None
    check_same_vocabulary(path, source, ref)
    if config.pad_token_id != source.vocab_info.pad_id:
        raise ValueError(f"init_from {ref!r} pads with token id {config.pad_token_id}, the examples' vocabulary with "
                         f"{source.vocab_info.pad_id}; use the vocabulary the model was trained with")
    if source.max_seq_length > config.max_position_embeddings:
        raise ValueError(f"the examples are up to {source.max_seq_length} tokens long but init_from {ref!r} has "
                         f"max_position_embeddings={config.max_position_embeddings}; build shorter examples")
    config = dataclasses.replace(config, sop_or_nsp_head=source.has_nsp)
    return InitModel(path=path, digest=hash_model_dir(path), model=model, config=config)


def check_same_vocabulary(model_dir: Path, source: ExamplesSource, ref: str) -> None:
    """The model's vocab.txt holds the examples' vocabulary, token for token (the ids in the examples index it)."""
    from bertplat.finetune.evaluate import tokenizer_dir

    mine, theirs = source.vocab.path / "vocab.txt", tokenizer_dir(model_dir) / "vocab.txt"
    if not theirs.is_file() or not mine.is_file():
        raise ValueError(f"init_from {ref!r}: no vocab.txt in {tokenizer_dir(model_dir)} to compare with the examples' "
                         f"vocabulary {source.vocab.ref()}; continued pretraining needs a WordPiece vocab.txt")
    a = mine.read_text(encoding="utf-8").splitlines()
    b = theirs.read_text(encoding="utf-8").splitlines()
    if a != b:
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        x, y = (v[i] if i < len(v) else "<end>" for v in (a, b))
        raise ValueError(f"init_from {ref!r} has another vocabulary than the examples ({source.vocab.ref()}): "
                         f"{len(b):,} tokens against {len(a):,}, first difference at id {i} ({y!r} in the model, "
                         f"{x!r} in the examples). Build the examples with the vocabulary the model was trained with.")


def load_initial_weights(model: BertPretrainingModel, init: InitModel) -> None:
    """Copy ``init``'s weights into ``model``; only an NSP/SOP head may be left fresh or dropped."""
    missing, unexpected = model.load_state_dict(init.model.state_dict(), strict=False)
    bad = [k for k in [*missing, *unexpected] if not k.startswith("nsp.")]  # the NSP/SOP head is `nsp`
    if bad:
        raise ValueError(f"init_from {init.path}: weights that do not fit the model: {bad[:5]}")


def check_config(source: ExamplesSource, cfg: PretrainConfig) -> None:
    if source.static and cfg.mask_prob is not None:
        raise ValueError(f"{source.handle.ref()} is statically masked (masks are in the examples), so mask_prob "
                         f"{cfg.mask_prob} cannot apply; drop mask_prob or build the examples with masking: dynamic")
    if not source.val_units:
        raise ValueError(f"{source.handle.ref()} has an empty validation split; the gate needs one")


def total_steps_for(source: ExamplesSource, cfg: PretrainConfig, world_size: int) -> int:
    """max_steps, or the token budget in steps at the examples' mean length, whichever is smaller."""
    budgets = [cfg.max_steps] if cfg.max_steps else []
    if cfg.max_tokens:
        per_step = source.mean_length() * cfg.micro_batch_size * cfg.accumulate_grad_batches * world_size
        budgets.append(max(1, round(cfg.max_tokens / per_step)))
    return min(budgets)


def run_fingerprint(source: ExamplesSource, cfg: PretrainConfig, init: InitModel | None = None) -> str:
    parents = [f"examples:{source.handle.fingerprint}"] + ([f"init:{init.digest}"] if init is not None else [])
    return fingerprint(KIND, cfg.fingerprint_json(), parents, SCHEMA_VERSION)


# ---- the run directory -----------------------------------------------------------------------------
def _config_diff(old: PretrainConfig, new: PretrainConfig) -> dict[str, tuple[Any, Any]]:
    """The computing fields (not OPERATIONAL_FIELDS) whose values differ: field -> (old, new)."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    return {k: (a[k], b[k]) for k in sorted(a) if a[k] != b[k] and k not in OPERATIONAL_FIELDS}


def _describe_diff(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} (run: {old!r}, now: {new!r})" for k, (old, new) in diff.items())


def _saved_config(run_dir: Path) -> PretrainConfig | None:
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return None
    return PretrainConfig.model_validate(yaml.safe_load(saved.read_text(encoding="utf-8")))


def runs_named(lake: Lake, name: str) -> list[Path]:
    """The run directories ``runs/<name>-<fingerprint>/`` of model ``name`` that hold a config, newest
    (config written last) first. ``demo`` does not match ``demo-tiny-<fingerprint>``."""
    runs = lake.data_dir / "runs"
    found = [d for d in runs.glob(f"{name}-*") if _RUN_DIR_RE.fullmatch(d.name[len(name) + 1:])
             and (d / "config.yaml").is_file()] if runs.is_dir() else []
    return sorted(found, key=lambda d: (d / "config.yaml").stat().st_mtime_ns, reverse=True)


def check_resume(lake: Lake, name: str, fp: str, cfg: PretrainConfig, source: ExamplesSource) -> None:
    """``--resume`` continues the run of this name, config and examples. When that run does not exist but
    another run of the same name does (the newest, if several), the resume would silently start a new
    run instead: refuse it, naming what differs."""
    others = [d for d in runs_named(lake, name) if d.name != f"{name}-{fp}"]
    if not others:
        return
    newest, old = others[0], _saved_config(others[0])
    diff = _describe_diff(_config_diff(old, cfg)) if old else ""
    info = _read_json(newest / RUN_FILE)
    if not diff and info.get("examples") and info["examples"] != source.handle.ref():
        diff = f"the examples (run: {info['examples']}, now: {source.handle.ref()})"
    elif not diff:
        diff = f"the examples (the run was made from other examples than {source.handle.ref()})"
    raise ValueError(f"cannot resume pretraining {name}: its newest run {newest} differs in {diff}. Resume "
                     "with that run's config (its config.yaml), or drop --resume (resume=False) to start a new "
                     f"run in {lake.data_dir / 'runs' / f'{name}-{fp}'}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def resume_checkpoint(checkpoint_dir: Path) -> tuple[Path, int] | None:
    """The newest checkpoint that loads and its step: last.ckpt, else the step=*.ckpt files newest first.
    An unreadable one (a truncated write, a full disk) is skipped with a warning that names it and why."""
    steps = sorted(checkpoint_dir.glob("step=*.ckpt"), key=lambda p: p.name, reverse=True)  # zero-padded
    last = checkpoint_dir / "last.ckpt"
    candidates = ([last] if last.is_file() else []) + steps
    errors = []
    for path in candidates:
        try:
            step = _checkpoint_step(path)
        except Exception as exc:  # torch raises RuntimeError, EOFError, pickle or zip errors for a bad file
            errors.append(f"{path.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            log.warning("checkpoint %s cannot be loaded (%s); trying an older one", path, errors[-1])
            continue
        if errors:
            log.warning("resuming from %s (step %d) instead: %s", path, step, "; ".join(errors))
        return path, step
    if errors:
        raise ValueError(f"no checkpoint in {checkpoint_dir} can be loaded ({'; '.join(errors)}); delete the run "
                         "directory to start over")
    return None


def prepare_run_dir(run_dir: Path, cfg: PretrainConfig, model: ModelConfig, resume: bool, write: bool,
                    info: dict[str, Any] | None = None) -> tuple[Path, int] | None:
    """The checkpoint to continue from and its step (None: a fresh start); writes the configs beside the
    checkpoints. A run that finished (its gate may have failed) is continued without ``resume``: there is
    nothing left to train, only the gate and the export to redo."""
    ckpt_dir = run_dir / "checkpoints"
    saved = run_dir / "config.yaml"
    has_ckpt = ckpt_dir.is_dir() and any(ckpt_dir.glob("*.ckpt"))
    finished = _read_json(ckpt_dir / STATE_FILE).get("status") == "finished"
    if has_ckpt and not resume and not finished:
        raise ValueError(f"{run_dir} already holds a run with checkpoints; pass resume=True (--resume) to continue "
                         "it, or delete the directory to start over")
    old = _saved_config(run_dir) if resume or finished else None
    if old is not None and old.fingerprint_json() != cfg.fingerprint_json():
        diff = _config_diff(old, cfg)
        raise ValueError(f"cannot resume {run_dir}: the config differs in {sorted(diff)} (saved: "
                         f"{ {k: v[0] for k, v in diff.items()} }, now: { {k: v[1] for k, v in diff.items()} })")
    ckpt = resume_checkpoint(ckpt_dir) if has_ckpt and (resume or finished) else None
    if write:
        if ckpt is None:  # logs of an attempt that died before its first checkpoint would mix into this run's history
            shutil.rmtree(run_dir / "logs", ignore_errors=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=True), encoding="utf-8")
        model.to_file(run_dir / "model_config.json")
        if info:
            write_json_atomic(run_dir / RUN_FILE, info)
    return ckpt


def find_export(lake: Lake, name: str, fp: str) -> dict[str, Any] | None:
    """The manifest of the finished export ``models/<name>/<fp>/``, or None (no manifest: not complete)."""
    path = lake.data_dir / "models" / name / fp / MANIFEST
    if not lake.fetch(path.parent):  # on an object store: from the bucket, when it holds the export
        return None
    return _read_json(path) or None


def reused_result(name: str, fp: str, source: ExamplesSource, manifest: dict[str, Any], lake: Lake,
                  start: float) -> PretrainResult:
    """The result of a run whose export exists: read from its manifest, nothing trained or written."""
    metrics = {k: float(v) for k, v in manifest.get("metrics", {}).items()}
    report = GateReport(**manifest["validation"])
    result = _result(name, fp, Path(manifest.get("run_dir") or lake.data_dir / "runs" / f"{name}-{fp}"),
                     lake.data_dir / "models" / name / fp, source, int(metrics.get("steps", 0)), metrics, report,
                     None, start)
    return result.model_copy(update={"reused": True, "export_format": manifest.get("format", "huggingface")})


def _strategy(cfg: PretrainConfig):
    if cfg.strategy != "fsdp":
        return cfg.strategy
    from lightning.pytorch.strategies import FSDPStrategy

    # One FSDP unit per encoder layer; embeddings, the tied MLM decoder and the heads stay in the root
    # unit together. use_orig_params keeps the parameters (and so the weight-decay groups) as they are.
    return FSDPStrategy(auto_wrap_policy={EncoderLayer}, use_orig_params=True)


def build_trainer(cfg: PretrainConfig, run_dir: Path, callbacks: list, progress_bar: bool, cuda: bool) -> pl.Trainer:
    quiet_lightning()
    logs = run_dir / "logs"
    segment = f"segment-{len(list((logs / 'csv').glob('segment-*'))):03d}"  # one per launch; merged by step
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="step={step:07d}", auto_insert_metric_name=False,
                           every_n_train_steps=cfg.checkpoint_every_n_steps, monitor="step", mode="max",
                           save_top_k=cfg.keep_checkpoints, save_last=True,
                           enable_version_counter=False)  # one last.ckpt, whichever callback wrote it last
    return pl.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=_strategy(cfg),
        precision=cfg.resolved_precision(cuda), max_steps=-1, max_epochs=-1,
        accumulate_grad_batches=cfg.accumulate_grad_batches, gradient_clip_val=cfg.grad_clip,
        # val_check_interval counts micro batches; the dataset is infinite, so never "per epoch".
        val_check_interval=cfg.val_every_n_steps * cfg.accumulate_grad_batches, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, log_every_n_steps=cfg.log_every_n_steps, use_distributed_sampler=False,
        logger=[CSVLogger(run_dir, name="logs/csv", version=segment),
                TensorBoardLogger(run_dir, name="logs/tensorboard", version=segment, default_hp_metric=False)],
        callbacks=[ckpt, *callbacks], enable_progress_bar=progress_bar, enable_model_summary=progress_bar,
        default_root_dir=run_dir)


# ---- the stage --------------------------------------------------------------------------------------
def run_pretrain(examples: DatasetHandle, name: str, config: PretrainConfig, lake: Lake,
                 catalog: Catalog | None = None, progress: Progress | None = None, run_dir: str | Path | None = None,
                 resume: bool = False, refuse_other_runs: bool = True) -> PretrainResult:
    """Pretrain ``config.model`` on ``examples``; export it as model ``name`` if the gate passes.

    When the export of this name, examples and config exists, it is returned (``reused``) and nothing
    runs. ``resume=True`` continues ``run_dir`` (default: this name, examples and config's run) from its
    newest loadable checkpoint, or starts it when it has none; it is refused when only another run of this
    name exists (another config or other examples), which it would not continue, unless
    ``refuse_other_runs=False`` (the flows: a re-run picks up its own run, and a changed config is a new
    run, as in every content-addressed stage). Raises :class:`PretrainInterrupted` after a SIGTERM/SIGINT
    checkpoint, GateError (report in ``<data_dir>/reports``) when the gate fails. ``catalog`` is taken for
    the uniform stage signature; models are not datasets and are not indexed there.
    """
    start = time.monotonic()
    retain_freed_memory()  # activations reuse freed blocks instead of page-faulting (bertplat.allocator)
    check_name(name)
    progress = progress or NullProgress()
    source = ExamplesSource.open(examples, lake)
    check_config(source, config)
    init = load_init_model(config.init_from, source, lake) if config.init_from is not None else None
    model_cfg = init.config if init is not None else model_config_for(source, config)
    fp = run_fingerprint(source, config, init)
    manifest = find_export(lake, name, fp)
    if manifest is not None:  # same examples, same config: the model exists (the run is left as it is)
        return reused_result(name, fp, source, manifest, lake, start).model_copy(
            update={"initial_weights": config.init_from})
    default_dir = lake.data_dir / "runs" / f"{name}-{fp}"
    if resume and refuse_other_runs and not run_dir and not (default_dir / "checkpoints").is_dir():
        check_resume(lake, name, fp, config, source)
    run_dir = Path(run_dir) if run_dir else default_dir
    if resume and lake.store is not None and run_dir.is_relative_to(lake.data_dir):
        lake.fetch_files(run_dir)  # continue a run another machine checkpointed to the bucket

    datamodule = PretrainDataModule(source, config)
    bar = isinstance(progress, TqdmProgress) and not progress.disable
    cuda = config.accelerator == "gpu" or (config.accelerator == "auto" and torch.cuda.is_available())
    callbacks: list[Any] = [Throughput(model_cfg, config.resolved_precision(cuda), config.peak_tflops,
                                       config.log_every_n_steps), RunCheckpoints(run_dir / "checkpoints")]
    publish = PublishRun(lake, run_dir) if run_dir.is_relative_to(lake.data_dir) else None
    if publish is not None and lake.store is not None:
        callbacks.append(publish)
    callbacks.append(StepBar(name) if bar else StepProgress(progress, f"pretraining {name}"))
    trainer = build_trainer(config, run_dir, callbacks, bar, cuda)
    datamodule.make_layout(trainer.world_size)  # the world size decides the data layout and the steps
    total = total_steps_for(source, config, trainer.world_size)
    trainer.fit_loop.epoch_loop.max_steps = total
    for cb in callbacks:
        if hasattr(cb, "total_steps"):
            cb.total_steps = total
    info = {"name": name, "fingerprint": fp, "examples": source.handle.ref()}
    found = prepare_run_dir(run_dir, config, model_cfg, resume, write=trainer.is_global_zero, info=info)
    ckpt, resumed = found if found else (None, None)

    pl.seed_everything(config.seed, workers=False, verbose=False)  # the initial weights
    module = PretrainModule(model_cfg.to_dict(), config.model_dump(mode="json"), total)
    if init is not None:  # continued pretraining (a resumed run's checkpoint then overrides these weights)
        load_initial_weights(module.model, init)
        init.model = None
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)  # our checkpoints hold no pickles
    finally:
        if publish is not None and trainer.is_global_zero:
            publish.publish()  # the last checkpoint and state.json, also after a signal or an error

    if not trainer.is_global_zero:  # under torchrun / re-launched DDP, rank 0 reports and exports
        result = _result(name, fp, run_dir, None, source, total, {}, GateReport(stage="pretrain", dataset=name),
                         resumed, start)
        return result.model_copy(update={"rank": trainer.global_rank})
    state = json.loads((run_dir / "checkpoints" / STATE_FILE).read_text(encoding="utf-8"))
    if state["status"] == "interrupted":
        raise PretrainInterrupted(f"pretraining {name} stopped on {state['signal']} at step {state['global_step']} "
                                  f"of {total}; checkpoint {state['checkpoint']}. Resume with the same command "
                                  f"and --resume (resume=True, run_dir={str(run_dir)!r}).")
    try:
        result = finish(name, fp, run_dir, source, config, model_cfg, lake, resumed, start, init)
    finally:
        if publish is not None:
            publish.publish()  # metrics.json and the loss curve, written by finish
    return result.model_copy(update={"resumed_from": ckpt.name if ckpt else None,
                                     "initial_weights": config.init_from})


def finish(name: str, fp: str, run_dir: Path, source: ExamplesSource, cfg: PretrainConfig, model_cfg: ModelConfig,
           lake: Lake, resumed: int | None, start: float, init: InitModel | None = None) -> PretrainResult:
    """History, metrics, plot and gate from the run directory; the export when the gate passes."""
    history = read_history(run_dir / "logs" / "csv")
    write_metrics(history, run_dir)
    what = cfg.model if cfg.init_from is None else f"from {cfg.init_from}"
    plot_run(history, run_dir / "loss_curve.png", f"pretraining {name} ({what}) on {source.handle.ref()}")
    report = gate(history, cfg, f"{KIND}/{name}@{fp}")
    metrics = final_metrics(history)
    if not report.passed:
        raise GateError(report, report.write(lake.data_dir / "reports"))
    model_dir = export_model(name, fp, run_dir, source, cfg, model_cfg, lake, metrics, report, init)
    result = _result(name, fp, run_dir, model_dir, source, int(metrics["steps"]), metrics, report, resumed, start)
    return result.model_copy(update={"export_format": export_format(model_cfg)})


def export_format(model_cfg: ModelConfig) -> str:
    """huggingface, except for pre-LN models (HF BERT is post-LN): those keep bertplat's own format."""
    return "bertplat" if model_cfg.pre_ln else "huggingface"


def _result(name, fp, run_dir, model_dir, source, steps, metrics, report, resumed, start) -> PretrainResult:
    return PretrainResult(name=name, fingerprint=fp, run_dir=run_dir, model_dir=model_dir, examples=source.handle,
                          vocab=source.vocab, steps=steps, metrics=metrics, report=report, resumed_from_step=resumed,
                          elapsed_s=time.monotonic() - start)


def _checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def load_trained_model(checkpoint: Path, model_cfg: ModelConfig) -> BertPretrainingModel:
    """The weights of a Lightning checkpoint as a plain BertPretrainingModel (any strategy: full state dict)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    model = BertPretrainingModel(model_cfg)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model.eval()


def export_model(name: str, fp: str, run_dir: Path, source: ExamplesSource, cfg: PretrainConfig,
                 model_cfg: ModelConfig, lake: Lake, metrics: dict[str, float], report: GateReport,
                 init: InitModel | None = None) -> Path:
    """HF directory + README.md model card + _manifest.json, renamed into place whole."""
    model = load_trained_model(run_dir / "checkpoints" / "last.ckpt", model_cfg)
    final = lake.data_dir / "models" / name / fp
    parents = [p for p in source.manifest.get("parents", []) if p.get("kind") == "corpus"]
    lineage = {"examples": source.handle.ref(), "vocab": source.vocab.ref(),
               **{f"corpus {p['name']}": f"corpus/{p['name']}@{p['fingerprint']}" for p in parents}, "run": str(run_dir)}
    if init is not None:
        lineage["initial weights"] = f"{init.path} (sha256 {init.digest})"

    def write(tmp: Path) -> None:
        if export_format(model_cfg) == "huggingface":
            export_hf(model, tmp / "hf", tokenizer_dir=source.vocab.path)
        else:  # config.json + model.safetensors in bertplat's layout, the tokenizer files beside them
            save_checkpoint(model, tmp / "hf")
            for f in TOKENIZER_FILES:
                if (source.vocab.path / f).is_file():
                    shutil.copyfile(source.vocab.path / f, tmp / "hf" / f)
        for f in (tmp / "hf").iterdir():
            os.replace(f, tmp / f.name)
        (tmp / "hf").rmdir()
        plot = run_dir / "loss_curve.png"
        if plot.is_file():
            (tmp / "loss_curve.png").write_bytes(plot.read_bytes())
        (tmp / "README.md").write_text(model_card(name, fp, str(final), lineage, cfg, model_cfg.to_dict(), metrics,
                                                  report, plot.is_file()), encoding="utf-8")
        write_json_atomic(tmp / "_manifest.json",
                          _manifest(name, fp, source, cfg, model_cfg, metrics, report, run_dir, init))

    write_dir_atomically(final, write, overwrite=True)
    lake.publish(final)  # on an object store: the files, then the manifest (the commit marker)
    return final


def _manifest(name: str, fp: str, source: ExamplesSource, cfg: PretrainConfig, model_cfg: ModelConfig,
              metrics: dict[str, float], report: GateReport, run_dir: Path, init: InitModel | None = None
              ) -> dict[str, Any]:
    import datetime as dt

    from bertplat import __version__

    parents = [source.handle.model_dump(include={"kind", "name", "fingerprint"}),
               source.vocab.model_dump(include={"kind", "name", "fingerprint"}),
               *[p for p in source.manifest.get("parents", []) if p.get("kind") == "corpus"]]
    if init is not None:  # continued pretraining: the weights it started from, named as fine-tuning names its base
        from bertplat.finetune.evaluate import base_model_parent

        parents.append({**base_model_parent(init.path)[0], "sha256": init.digest})
    return {"schema_version": SCHEMA_VERSION, "kind": KIND, "name": name, "fingerprint": fp,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "bertplat_version": __version__, "format": export_format(model_cfg), "parents": parents,
            "config": cfg.model_dump(mode="json"), "model_config": model_cfg.to_dict(), "metrics": metrics,
            "validation": report.model_dump(mode="json"), "run_dir": str(run_dir)}
