"""run_tasks: a task spec and its files in, a validated ``tasks`` dataset version out.

Steps: resolve and hash the spec's files -> fingerprint (the spec, the import options and every
file's sha256: same input = same version = nothing to do) -> read each split's records -> rows or
rejects -> derived splits -> gate -> one Parquet table with a ``split`` column (view
``task_<name>``) and a rejects table (view ``rejects_<name>``) -> manifest -> atomic rename ->
catalog. A structural error (a missing column, a file that is not SQuAD) stops the run before
anything is written.
"""

from __future__ import annotations

import glob as globlib
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bertplat.catalog import Catalog, sql_name
from bertplat.lake import Lake, check_name, fingerprint, sha256_file
from bertplat.paths import resolve_package_path
from bertplat.plots import plot_length_histogram
from bertplat.progress import NullProgress, Progress
from bertplat.stages import StageResult, catalog_status, find_existing
from bertplat.tasks.gate import CHAR_BINS, gate_tasks, truncation_share
from bertplat.tasks.readers import read_records
from bertplat.tasks.rows import Rejected, RowBuilder
from bertplat.tasks.schema import ALGORITHM_VERSION, REJECTS_SCHEMA, SCHEMA_VERSION, TASK_SCHEMA
from bertplat.tasks.spec import TasksOptions, TaskSpec
from bertplat.tasks.splits import split_by_group, split_by_hash
from bertplat.validation import GateError, GateReport

KIND = "tasks"


class TasksResult(StageResult):
    """What an import made: the dataset handle, the task's type and labels, counts per split."""

    task_type: str
    labels: list[str] | None
    counts: dict[str, Any]

    def summary(self) -> str:
        c = self.counts
        splits = ", ".join(f"{s} {n:,}" for s, n in c["per_split"].items())
        return (f"task {self.dataset.name}@{self.dataset.fingerprint} ({self.task_type}): {c['rows']:,} examples "
                f"({splits}), {c['rejects']:,} rejects - {self._verb('imported')}\n"
                f"  {self.dataset.uri}\n"
                f"  DuckDB: SELECT split, count(*) FROM {sql_name('task_' + self.dataset.name)} GROUP BY split;  "
                f"SELECT * FROM {sql_name('rejects_' + self.dataset.name)};")


class InputFile(dict):
    """split, rel (relative to the root), path, size, sha256."""


def resolve_files(spec: TaskSpec, root: Path) -> list[InputFile]:
    """Every split's files in the spec's order; a glob matches at least one file."""
    files = []
    for split, source in spec.splits.items():
        for pattern in source.paths:
            full = Path(pattern) if Path(pattern).is_absolute() else root / pattern
            if any(ch in pattern for ch in "*?["):
                matches = sorted(Path(p) for p in globlib.glob(str(full), recursive=True) if Path(p).is_file())
                if not matches:
                    raise FileNotFoundError(f"task {spec.name}, split {split!r}: no file matches {pattern!r} under "
                                            f"{root}; relative paths resolve against the root (--root, or root in "
                                            "the YAML)")
            elif not full.is_file():
                raise FileNotFoundError(f"task {spec.name}, split {split!r}: file {full} does not exist; relative "
                                        f"paths resolve against the root {root} (--root, or root in the YAML)")
            else:
                matches = [full]
            for path in matches:
                try:
                    rel = path.resolve().relative_to(root.resolve()).as_posix()
                except ValueError:
                    rel = str(path.resolve())
                files.append(InputFile(split=split, rel=rel, path=path))
    return files


def run_tasks(spec: TaskSpec, lake: Lake, catalog: Catalog | None = None, progress: Progress | None = None, *,
              root: str | Path | None = None, options: TasksOptions | None = None,
              name: str | None = None) -> TasksResult:
    """Import the task ``spec`` describes as the tasks dataset ``name`` (default: the spec's name).

    ``root``: the directory the spec's relative paths resolve against (default: the spec's root,
    else the working directory)."""
    progress = progress or NullProgress()
    options = options or TasksOptions()
    start = time.monotonic()
    name = check_name(name or spec.name)
    if name in lake.names("corpus"):
        raise ValueError(f"a corpus dataset named {name!r} exists, and both would own the DuckDB view "
                         f"rejects_{name}; import the task under another name (--name, e.g. {name}_task)")
    base = Path(resolve_package_path(str(root if root is not None else spec.root or ".")))
    files = resolve_files(spec, base)
    with progress.task("hashing task files", total=len(files), unit="files") as bar:
        for f in files:
            f["size"], f["sha256"] = f["path"].stat().st_size, sha256_file(f["path"])
            bar.advance(1)
    inputs = [f"algorithm:{ALGORITHM_VERSION}", *(f"{f['split']}:{f['rel']}:{f['size']}:{f['sha256']}" for f in files)]
    if options.tokenizer:
        tok = Path(options.tokenizer)
        tok = tok / "tokenizer.json" if tok.is_dir() else tok
        inputs.append(f"tokenizer:{sha256_file(tok) if tok.is_file() else 'missing'}")
    config = json.dumps({"spec": json.loads(spec.fingerprint_json()), "options": options.model_dump(mode="json",
                        exclude={"tokenizer"})}, sort_keys=True, separators=(",", ":"))
    fp = fingerprint(KIND, config, inputs, SCHEMA_VERSION)
    if found := find_existing(lake, catalog, KIND, name, fp):
        handle, m = found
        return TasksResult(dataset=handle, reused=True, catalog_status=catalog_status(catalog, handle), report=GateReport(**m["validation"]), stats=m["stats"],
                           task_type=m["task_type"], labels=m["labels"], counts=m["counts"],
                           elapsed_s=time.monotonic() - start)

    rows, rejects, records = read_splits(spec, files, options.limit, progress)
    splits = list(spec.splits)
    if spec.derive is not None:
        rows, splits = derive_splits(spec, rows)
    order = {s: i for i, s in enumerate(splits)}
    rows.sort(key=lambda r: order[r["split"]])  # stable: file order within a split
    table = pa.Table.from_pylist(rows, schema=TASK_SCHEMA)
    report = gate_tasks(table, rejects, records, spec, options, splits, dataset=f"{KIND}/{name}@{fp}")
    if options.tokenizer and report.passed:
        report.stats["truncation"] = truncation_share(table, spec, splits, options.tokenizer, options.max_length,
                                                      options.truncation_sample)
    rejects_table = pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA)

    with lake.writer(KIND, name, fp) as writer:
        if not report.passed:
            path = report.write(lake.data_dir / "reports")
            pq.write_table(rejects_table, path.with_name(path.stem + "-rejects.parquet"))
            raise GateError(report, path)
        pq.write_table(table, writer.path("part-00000.parquet"), compression="zstd", row_group_size=8192)
        pq.write_table(rejects_table, writer.path("rejects/rejects.parquet"), compression="zstd")
        stats = report.stats
        # One plot (a plot costs about half a second); the word histogram is in the stats and the
        # flow's artifact as a table.
        plot_length_histogram(CHAR_BINS, stats["char_histogram"], writer.path("_report/length_chars.png"),
                              title=f"task {name}: characters per example", xlabel="characters per example")
        counts = {"rows": table.num_rows, "rejects": len(rejects), "records": records,
                  "per_split": stats["rows_per_split"], "labelled_per_split": stats["labelled_per_split"],
                  "rejects_per_split": _count_by(rejects, "split")}
        handle = writer.commit({
            "schema_version": SCHEMA_VERSION,
            "config": {"spec": spec.model_dump(mode="json"), "options": options.model_dump(mode="json")},
            "task_type": spec.task_type,
            "labels": spec.label_list(),
            "tagging_scheme": spec.tagging_scheme,
            "metrics": spec.effective_metrics(),
            "language": spec.language,
            "splits": splits,
            "parents": [],
            "inputs": [{k: f[k] for k in ("split", "rel", "size", "sha256")} for f in files],
            "counts": counts,
            "tables": {"task": "part-*.parquet", "rejects": "rejects/*.parquet"},
            "validation": report.model_dump(mode="json"),
            "stats": stats,
        }, catalog=catalog)
    return TasksResult(dataset=handle, reused=False, catalog_status=catalog_status(catalog, handle), report=report, stats=stats, task_type=spec.task_type,
                       labels=spec.label_list(), counts=counts, elapsed_s=time.monotonic() - start)


def read_splits(spec: TaskSpec, files: list[InputFile], limit: int | None, progress: Progress
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Rows and rejects of every split, and the number of records read."""
    builder = RowBuilder(spec)
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    records = 0
    with progress.task("reading task files", total=sum(f["size"] for f in files), unit="B") as bar:
        for split, source in spec.splits.items():
            columns, opts = spec.split_columns(split), spec.split_options(split)
            seen: set[str] = set()
            n = 0
            for f in (f for f in files if f["split"] == split):
                for raw in read_records(spec.format, f["path"], f["rel"], columns, opts, source.labelled):
                    if limit is not None and n >= limit:
                        break
                    n += 1
                    try:
                        row = builder.build(raw, split, source.labelled, default_id=f"{split}-{n:07d}")
                        row["_content_key"] = None if raw.fields.get("id") not in (None, "") else _content_key(row)
                        if row["id"] in seen:
                            raise Rejected("duplicate id", row["id"], "an earlier example of this split has this id")
                        seen.add(row["id"])
                        rows.append(row)
                    except Rejected as r:
                        rejects.append({"split": split, "source_file": raw.file, "record": raw.record,
                                        "line": raw.line, "value": r.value, "reason": r.reason,
                                        "detail": f"{raw.at()}: {r.detail}" if r.detail else raw.at()})
                bar.advance(f["size"])
            records += n
    return rows, rejects, records


def derive_splits(spec: TaskSpec, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Replace the source split by the derived ones (by hash of id/content, or by article)."""
    d = spec.derive
    assert d is not None
    source = [r for r in rows if r["split"] == d.from_split]
    if d.by == "article":
        keys = [r["title"] or r["context"] or r["text"] or r["id"] for r in source]
        sides = split_by_group(keys, d.fractions, d.salt)
    else:
        # The source's id where it has one, else the content: never the generated id, which is a
        # record number and would move when records before it change.
        keys = [r["_content_key"] or r["id"] for r in source]
        sides = split_by_hash(keys, d.fractions, d.salt)
    for r, side in zip(source, sides):
        r["split"] = side
    splits = []
    for s in spec.splits:
        splits.extend(d.fractions if s == d.from_split else [s])
    return rows, splits


def _content_key(row: dict[str, Any]) -> str:
    parts = [row["text"], row["text_pair"], row["question"], row["context"], " ".join(row["tokens"] or [])]
    return "\t".join(p or "" for p in parts)


def _count_by(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r[key]] = out.get(r[key], 0) + 1
    return out
