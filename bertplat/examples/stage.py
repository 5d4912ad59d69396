"""run_examples: a corpus and a vocabulary in, validated pretraining examples out.

The corpus's row groups are the windows: each is tokenised with ``encode_batch_fast`` (Rust), split
into train and validation by document hash, packed (nsp / sop / mlm) and optionally masked with
numpy, and written as one row group per window and split. Work is spread over processes by runs of
windows; memory holds one window per process, whatever the corpus size.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bertplat.catalog import Catalog
from bertplat.examples.config import ExamplesConfig
from bertplat.examples.gate import add_statistical_checks, validate_examples
from bertplat.examples.shards import (
    LENGTH_BIN,
    SPLITS,
    ExamplesTask,
    SplitStats,
    TaskResult,
    Window,
    init_worker,
    run_task,
)
from bertplat.executor import run_tasks
from bertplat.lake import DatasetHandle, Lake, check_name, fingerprint
from bertplat.plots import plot_length_histogram
from bertplat.progress import NullProgress, Progress
from bertplat.stages import StageResult, catalog_status, find_existing
from bertplat.validation import GateError, GateReport
from bertplat.vocab.tokenizer import VocabInfo, load_tokenizer

KIND = "examples"
SCHEMA_VERSION = 1
ALGORITHM_VERSION = 2  # 2: one-sentence chunks left out past the NSP surplus bound
TASK_BYTES = 64 << 20  # corpus text per unit of parallel work


class ExamplesResult(StageResult):
    corpus: DatasetHandle
    vocab: DatasetHandle
    counts: dict[str, Any]

    def summary(self) -> str:
        c = self.counts
        verb = self._verb("built")
        balance = f", label share {c['label_share']:.3f}" if c.get("label_share") is not None else ""
        return (f"examples {self.dataset.name}@{self.dataset.fingerprint}: {c['train']['instances']:,} train + "
                f"{c['validation']['instances']:,} validation examples, {c['tokens']:,} tokens, padding waste "
                f"{c['padding_waste']:.1%}{balance} from corpus {self.corpus.name} and vocab {self.vocab.name} "
                f"- {verb}\n  {self.dataset.uri}\n"
                f"  DuckDB: SELECT split, count(*) FROM examples_{self.dataset.name} GROUP BY split;")


def plan_tasks(corpus: DatasetHandle, task_bytes: int = TASK_BYTES) -> list[ExamplesTask]:
    """Windows (corpus row groups) in sorted order, grouped into tasks of at most ``task_bytes`` (less
    for small corpora, so that there are about 16 tasks to share out). Depends on the corpus only."""
    groups = [(part, rg, meta.row_group(rg).total_byte_size)
              for part in sorted(corpus.path.glob("part-*.parquet"))
              for meta in [pq.ParquetFile(part).metadata] for rg in range(meta.num_row_groups)]
    task_bytes = min(task_bytes, max(1, sum(g[2] for g in groups) // 16))
    tasks: list[ExamplesTask] = []
    current: list[Window] = []
    size = 0
    for index, (part, rg, group_bytes) in enumerate(groups):
        if current and size + group_bytes > task_bytes:
            tasks.append(ExamplesTask(len(tasks), current))
            current, size = [], 0
        current.append(Window(index, str(part), rg))
        size += group_bytes
    if current:
        tasks.append(ExamplesTask(len(tasks), current))
    return tasks


def run_examples(corpus: DatasetHandle, vocab: DatasetHandle, name: str, config: ExamplesConfig, lake: Lake,
                 catalog: Catalog | None = None, progress: Progress | None = None) -> ExamplesResult:
    """Build pretraining examples from ``corpus`` with the tokenizer of ``vocab``."""
    progress = progress or NullProgress()
    start = time.monotonic()
    check_name(name)
    info = VocabInfo.from_tokenizer(load_tokenizer(vocab.path))
    fp = fingerprint(KIND, config.fingerprint_json(),
                     [f"algorithm:{ALGORITHM_VERSION}", f"corpus:{corpus.fingerprint}", f"vocab:{vocab.fingerprint}"],
                     SCHEMA_VERSION)
    if found := find_existing(lake, catalog, KIND, name, fp):
        handle, m = found
        return ExamplesResult(dataset=handle, corpus=corpus, vocab=vocab, reused=True, catalog_status=catalog_status(catalog, handle), counts=m["counts"],
                              report=GateReport(**m["validation"]), stats=m["stats"],
                              elapsed_s=time.monotonic() - start)

    tasks = plan_tasks(corpus)
    with lake.writer(KIND, name, fp) as writer:
        results = _run_tasks(tasks, config, vocab, writer.tmp, progress)
        files = sorted(f for r in results for f in r.files.values())
        stats = _merge_stats(results)
        report = validate_examples(writer.tmp, files, config, info, dataset=f"{KIND}/{name}@{fp}", progress=progress,
                                   checked=[c for r in results for c in r.failures])
        add_statistical_checks(report, stats, config)
        counts = _counts(stats, config)
        report.stats = {"counts": counts}
        if not report.passed:
            raise GateError(report, report.write(lake.data_dir / "reports"))
        hist = [a + b for a, b in zip(stats["train"]["length_hist"], stats["validation"]["length_hist"])]
        edges = list(range(0, config.max_seq_length, LENGTH_BIN))
        plot_length_histogram(edges[1:] if edges[0] == 0 else edges, hist[1:] if edges[0] == 0 else hist,
                              writer.path("_report/sequence_lengths.png"), title=f"examples {name}: tokens per example",
                              xlabel="tokens per example (special tokens included)")
        handle = writer.commit({
            "schema_version": SCHEMA_VERSION,
            "config": config.model_dump(mode="json"),
            "parents": [corpus.model_dump(include={"kind", "name", "fingerprint"}),
                        vocab.model_dump(include={"kind", "name", "fingerprint"})],
            "inputs": [{"corpus": corpus.ref()}, {"vocab": vocab.ref()}],
            "vocab": {"size": info.size, "pad_id": info.pad_id, "unk_id": info.unk_id, "cls_id": info.cls_id,
                      "sep_id": info.sep_id, "mask_id": info.mask_id, "id_type": str(info.id_dtype)},
            "counts": counts,
            "tables": {"examples": "split=*/part-*.parquet"},
            "files": [{"name": f, "rows": pq.ParquetFile(writer.tmp / f).metadata.num_rows} for f in files],
            "validation": report.model_dump(mode="json"),
            "stats": {**stats, "length_bin": LENGTH_BIN},
        }, catalog=catalog)
    return ExamplesResult(dataset=handle, corpus=corpus, vocab=vocab, reused=False, catalog_status=catalog_status(catalog, handle), counts=counts, report=report,
                          stats=stats, elapsed_s=time.monotonic() - start)


def _run_tasks(tasks: list[ExamplesTask], cfg: ExamplesConfig, vocab: DatasetHandle, out: Path,
               progress: Progress) -> list[TaskResult]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(cfg.workers or cores, len(tasks)))
    with progress.task("building examples", total=sum(len(t.windows) for t in tasks), unit="windows") as bar:
        # one worker runs in this process, where the tokenizer's Rust threads use every core
        results = run_tasks(run_task, [(t, cfg, str(vocab.path), str(out)) for t in tasks], workers=workers,
                            cluster=cfg.cluster, initializer=_init if workers > 1 else None,
                            initargs=(max(1, cores // workers),), cluster_initargs=(1, False),
                            on_done=lambda i, _: bar.advance(len(tasks[i].windows)))
    return sorted(results, key=lambda r: r.index)


def _init(threads: int, die_with_parent: bool = True) -> None:
    from bertplat.ingest.worker import _die_with_parent

    if die_with_parent:
        _die_with_parent()
    init_worker(threads)


def _merge_stats(results: list[TaskResult]) -> dict[str, dict]:
    merged = {s: SplitStats() for s in SPLITS}
    for r in results:
        for split, s in r.stats.items():
            if s.instances:
                merged[split].add(s)
    out = {s: asdict(m) for s, m in merged.items()}
    out["input_bytes"] = sum(r.input_bytes for r in results)  # type: ignore[assignment]
    return out


def _counts(stats: dict, cfg: ExamplesConfig) -> dict[str, Any]:
    splits = {s: {"instances": stats[s]["instances"], "tokens": stats[s]["tokens"], "documents": stats[s]["documents"]}
              for s in SPLITS}
    instances = sum(v["instances"] for v in splits.values())
    tokens = sum(v["tokens"] for v in splits.values())
    counts: dict[str, Any] = {**splits, "instances": instances, "tokens": tokens,
                              "padding_waste": 1 - tokens / (instances * cfg.max_seq_length) if instances else 0.0,
                              "label_share": None}
    if cfg.objective != "mlm" and instances:
        counts["label_share"] = sum(stats[s]["labels_one"] for s in SPLITS) / instances
    if cfg.masking == "static":
        masked = sum(stats[s]["masked"] for s in SPLITS)
        maskable = sum(stats[s]["maskable"] for s in SPLITS)
        counts["mask_rate"] = masked / maskable if maskable else 0.0
    return counts


def examples_files(handle: DatasetHandle, split: str) -> list[Path]:
    """The shards of one split of an examples dataset, in order."""
    return sorted(handle.path.glob(f"split={split}/part-*.parquet"))

