"""run_evaluate: score a fine-tuned model on a split of a tasks dataset without training, and write its
predictions; plus what fine-tuning shares with it (inference over a split, the predictions dataset,
hashing and lineage of model directories).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel

from bertplat.catalog import Catalog, sql_name
from bertplat.finetune.config import FinetuneConfig
from bertplat.finetune.data import (
    PREDICTIONS_SCHEMA,
    SplitData,
    TaskData,
    build_split,
    decode_split,
    make_batch,
)
from bertplat.finetune.features import load_tokenizer
from bertplat.finetune.module import eval_batches, row_outputs, split_inputs
from bertplat.lake import DatasetHandle, Lake, check_name, fingerprint, sha256_file
from bertplat.model.convert_heads import import_task_hf
from bertplat.model.hf_dir import TOKENIZER_FILES, read_hf_config
from bertplat.progress import NullProgress, Progress
from bertplat.registry.refs import resolve_model

MANIFEST = "_manifest.json"
WEIGHT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class EvaluateResult(BaseModel):
    """What an evaluation scored and where its predictions are."""

    model_dir: Path
    task: DatasetHandle
    split: str
    metrics: dict[str, float]
    predictions: DatasetHandle
    examples: int
    elapsed_s: float
    recorded: str | None = None  # the registry version the metrics were recorded for, if the model is one

    def summary(self) -> str:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items()) or "no labels: predictions only"
        registry = (f"\n  registry: recorded for {self.recorded} (bertplat models show {self.recorded})"
                    if self.recorded else "")
        return (f"evaluated {self.model_dir} on {self.task.ref()} split {self.split} ({self.examples:,} examples) in "
                f"{self.elapsed_s:.1f}s: {scores}\n"
                f"  predictions: {self.predictions.uri}\n"
                f"  DuckDB: SELECT * FROM {sql_name('predictions_' + self.predictions.name)} LIMIT 10;{registry}")


def record_in_registry(model_dir: Path, task: DatasetHandle, split: str, metrics: dict[str, float],
                       catalog: Catalog | None) -> str | None:
    """Record ``metrics`` for the registered version whose directory is ``model_dir``; returns its reference
    (``name@vN``), or None when the model is not registered (nothing to record against)."""
    from bertplat.registry.refs import has_registry
    from bertplat.registry.store import record_evaluation

    if catalog is None or not metrics or not catalog.path.exists():
        return None
    with catalog.connect(read_only=True) as con:
        if not has_registry(con):
            return None
        found = con.execute("SELECT name, number, version_id FROM registry_versions WHERE path IN (?, ?)",
                            [str(model_dir), str(model_dir.resolve())]).fetchall()
    if not found:
        return None
    name, number, vid = found[0]
    record_evaluation(f"{name}@{vid}", task.name, task.fingerprint, split, metrics, catalog)
    return f"{name}@v{number}"


# ---- model directories ------------------------------------------------------------------------
def tokenizer_dir(model_dir: Path) -> Path:
    """Where the tokenizer of a model directory is: beside config.json, or at the top of a
    sentence-transformers folder whose transformer sits in a sub-folder."""
    model_dir = Path(model_dir)
    if any((model_dir / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        return model_dir
    return read_hf_config(model_dir)[0]


def hash_model_dir(model_dir: Path) -> str:
    """sha256 over the config, weights and tokenizer files of a model directory (what decides its outputs)."""
    import hashlib

    weights_dir = read_hf_config(model_dir)[0]
    tok = tokenizer_dir(model_dir)
    h = hashlib.sha256()
    for d, names in ((weights_dir, WEIGHT_FILES), (tok, TOKENIZER_FILES)):
        for n in names:
            if (d / n).is_file():
                h.update(f"{n}:{sha256_file(d / n)}\n".encode())
    index = weights_dir / "model.safetensors.index.json"
    if index.is_file():
        for shard in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())):
            h.update(f"{shard}:{sha256_file(weights_dir / shard)}\n".encode())
    return h.hexdigest()[:16]


def base_model_parent(model_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The lineage entry of a base model directory (its manifest's name and fingerprint when bertplat made it,
    else the directory's name and no fingerprint), and that manifest ({} when there is none)."""
    manifest = Path(model_dir) / MANIFEST
    m = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}
    return {"kind": "model", "name": m.get("name", Path(model_dir).name), "fingerprint": m.get("fingerprint"),
            "path": str(Path(model_dir).resolve())}, m


def model_lineage(model_dir: Path, task: DatasetHandle) -> list[dict[str, Any]]:
    """Parents of a fine-tuned model: the task dataset, the base model directory and, when the base has a
    bertplat manifest, the base model and its own parents."""
    base, m = base_model_parent(model_dir)
    parents: list[dict[str, Any]] = [task.model_dump(include={"kind", "name", "fingerprint"}), base]
    parents.extend(p for p in m.get("parents", []) if p not in parents)
    return parents


# ---- inference --------------------------------------------------------------------------------
def inference_device(cfg: FinetuneConfig) -> torch.device:
    if cfg.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@torch.inference_mode()
def predict_split(model: torch.nn.Module, split: SplitData, cfg: FinetuneConfig,
                  device: torch.device | None = None) -> dict[int, Any]:
    """Feature row -> logits of ``model`` (eval mode, float32) on every row of ``split``, in length order."""
    device = device or inference_device(cfg)
    model = model.eval().to(device)
    outputs: dict[int, Any] = {}
    for idx in eval_batches(split, cfg):
        batch = make_batch(split, idx, with_targets=False)
        inputs = {k: v.to(device) for k, v in split_inputs(batch, with_targets=False).items()}
        outputs.update(row_outputs(model.head_config.task, model(**inputs), batch))
    model.to("cpu")
    return outputs


def write_predictions(records: list[dict[str, Any]], name: str, fp: str, lake: Lake, catalog: Catalog | None,
                      parents: list[dict[str, Any]], config: dict[str, Any]) -> DatasetHandle:
    """The predictions dataset version (view ``predictions_<name>``), written like every other stage's."""
    found = lake.find("predictions", name, fp)
    if found is not None:
        if catalog is not None:
            catalog.register(found)
        return found
    table = pa.Table.from_pylist(records, schema=PREDICTIONS_SCHEMA)
    with lake.writer("predictions", name, fp) as writer:
        pq.write_table(table, writer.path("part-00000.parquet"), compression="zstd")
        splits: dict[str, int] = {}
        for r in records:
            splits[r["split"]] = splits.get(r["split"], 0) + 1
        return writer.commit({"schema_version": 1, "parents": parents, "config": config,
                              "counts": {"rows": table.num_rows, "per_split": splits},
                              "tables": {"predictions": "part-*.parquet"}}, catalog)


# ---- the stage --------------------------------------------------------------------------------
def run_evaluate(model_dir_or_ref: str | Path, task: DatasetHandle, split: str, lake: Lake,
                 catalog: Catalog | None = None, progress: Progress | None = None,
                 config: FinetuneConfig | None = None, name: str | None = None) -> EvaluateResult:
    """Score a fine-tuned model on ``split`` of ``task``; predictions go to ``predictions_<name>`` (default
    ``<model name>_<task name>_<split>``). The features use the model's fine-tuning config (its manifest)
    unless ``config`` is given; a model whose head does not match the task's labels is refused."""
    start = time.monotonic()
    progress = progress or NullProgress()
    model_dir = resolve_model(model_dir_or_ref, lake, catalog)
    manifest_path = model_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    if config is None:
        config = FinetuneConfig.model_validate(manifest["config"]) if "config" in manifest else FinetuneConfig()
    data = TaskData.open(task, lake)
    wanted = data.head()
    try:
        imported = import_task_hf(model_dir, None)
    except ValueError as exc:
        raise ValueError(f"cannot evaluate {model_dir}: {exc}") from None
    head = imported.head
    if head.task != wanted.task or head.num_labels != wanted.num_labels or (
            wanted.labels and head.labels and tuple(head.labels) != tuple(wanted.labels)):
        raise ValueError(f"{model_dir} has a {head.task} head with labels {list(head.label_names)[:10]}, but task "
                         f"{task.ref()} ({data.task_type}) needs {wanted.task} with {list(wanted.label_names)[:10]}; "
                         "evaluate it on a task with its own label set")
    tok = load_tokenizer(tokenizer_dir(model_dir))
    with progress.task(f"evaluating on {split}", total=1, unit="splits") as bar:
        features = build_split(data, split, tok, config)
        outputs = predict_split(imported.model, features, config)
        threshold = (manifest.get("metrics") or {}).get("null_threshold")
        decoded = decode_split(data, features, outputs, null_threshold=threshold,
                               max_answer_length=config.max_answer_length, n_best=config.n_best)
        bar.advance(1)
    model_name = manifest.get("name") or model_dir.name
    name = check_name(name or f"{model_name}_{task.name}_{split}"[:64])
    fp = fingerprint("predictions", config.fingerprint_json(), [f"model:{hash_model_dir(model_dir)}",
                                                                 f"task:{task.fingerprint}", f"split:{split}"], 1)
    handle = write_predictions(decoded.records, name, fp, lake, catalog,
                               parents=[task.model_dump(include={"kind", "name", "fingerprint"}),
                                        {"kind": "model", "name": model_name, "fingerprint": manifest.get("fingerprint"),
                                         "path": str(model_dir)}],
                               config={"model": str(model_dir), "task": task.ref(), "split": split,
                                       "metrics": decoded.metrics})
    recorded = record_in_registry(model_dir, task, split, decoded.metrics, catalog)
    return EvaluateResult(model_dir=model_dir, task=task, split=split, metrics=decoded.metrics, predictions=handle,
                          examples=len(features.rows), elapsed_s=time.monotonic() - start, recorded=recorded)
