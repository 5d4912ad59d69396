"""run_ingest: raw files in, a validated, deduplicated corpus dataset version out.

Steps: resolve and hash the inputs -> fingerprint (same inputs + config = nothing to do) ->
read, clean and segment in parallel tasks, each writing its own shards into the version's
temporary directory -> drop exact duplicates, keeping the first in input order (without dedup:
give each later copy its own id) -> gate ->
statistics -> manifest -> atomic rename -> catalog.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertplat.catalog import Catalog, sql_name
from bertplat.executor import cluster_address, run_tasks
from bertplat.ingest.config import IngestConfig
from bertplat.ingest.gate import validate_corpus
from bertplat.ingest.schema import ALGORITHM_VERSION, REJECTS_SCHEMA, SCHEMA_VERSION
from bertplat.ingest.sources import InputFile, hash_inputs, resolve_sources
from bertplat.ingest.worker import LENGTH_BINS, Task, TaskResult, default_workers, init_worker, run_task
from bertplat.lake import Lake, check_name, fingerprint
from bertplat.plots import plot_length_histogram
from bertplat.progress import NullProgress, Progress
from bertplat.stages import StageResult, catalog_status, find_existing
from bertplat.validation import GateError, GateReport

KIND = "corpus"


class IngestResult(StageResult):
    """What an ingest run made: the dataset handle, its counts, gate report and statistics."""

    counts: dict[str, int]

    def _quality_line(self) -> str:
        c = self.counts
        parts = []
        if c.get("near_duplicates"):
            parts.append(f"{c['near_duplicates']:,} near-duplicates dropped")
        if c.get("filtered"):
            parts.append(f"{c['filtered']:,} filtered by quality")
        return "".join(p + ", " for p in parts)

    def summary(self) -> str:
        c = self.counts
        verb = self._verb("written")
        return (f"corpus {self.dataset.name}@{self.dataset.fingerprint}: {c['documents']:,} documents, "
                f"{c['sentences']:,} sentences, {c['characters']:,} characters from {c['files']:,} files "
                f"({c['duplicates']:,} duplicates dropped, {self._quality_line()}{c['rejects']:,} rejects) - {verb}\n"
                f"  {self.dataset.uri}\n"
                f"  DuckDB: SELECT * FROM {sql_name('corpus_' + self.dataset.name)};  SELECT * FROM {sql_name('rejects_' + self.dataset.name)};")


def run_ingest(sources: list[str], name: str, config: IngestConfig, lake: Lake, catalog: Catalog | None = None,
               progress: Progress | None = None) -> IngestResult:
    """Ingest ``sources`` (files, directories, globs) as the corpus dataset ``name``."""
    progress = progress or NullProgress()
    start = time.monotonic()
    check_name(name)
    if name in lake.names("tasks"):  # both would claim the DuckDB view rejects_<name>
        raise ValueError(f"{name!r} is already the name of a task dataset (views task_{name}, rejects_{name}); "
                         "give the corpus another --name")
    files = resolve_sources(sources, config.include, config.exclude)
    with progress.task("hashing inputs", total=len(files), unit="files") as bar:
        hashed = []
        for f in files:
            hashed.extend(hash_inputs([f]))
            bar.advance(1)
    files = hashed
    fp = fingerprint(KIND, config.fingerprint_json(),
                     [f"algorithm:{ALGORITHM_VERSION}", *(f"{f.relname}:{f.size}:{f.sha256}" for f in files)],
                     SCHEMA_VERSION)
    if found := find_existing(lake, catalog, KIND, name, fp):
        handle, m = found
        return IngestResult(dataset=handle, reused=True, catalog_status=catalog_status(catalog, handle), counts=m["counts"], report=GateReport(**m["validation"]),
                            stats=m["stats"], elapsed_s=time.monotonic() - start)

    with lake.writer(KIND, name, fp) as writer:
        out = writer.tmp
        results = _run_tasks(_plan_tasks(files, config.task_bytes), config, out, progress,
                             total_bytes=sum(f.size for f in files))
        parts = [p for r in results for p in r.parts]
        duplicates = _drop_duplicates(out, parts) if config.dedup else 0
        copies_kept = 0 if config.dedup else _rename_duplicates(out, parts)
        parts = [p for p in parts if (out / p).exists()]
        near = _drop_near_duplicates(out, parts, results, config, progress) if config.near_dedup.threshold else {}
        shutil.rmtree(out / "_near", ignore_errors=True)
        parts = [p for p in parts if (out / p).exists()]
        counts = _counts(results, duplicates, files, near.get("documents", 0))
        report = validate_corpus(out, parts, counts, config, dataset=f"{KIND}/{name}@{fp}", progress=progress,
                                 checked=[c for r in results for c in r.schema_failures])
        stats = {**_stats(results, counts), "duplicate_copies_kept": copies_kept}
        stats["quality"] = _quality_stats(results, near)
        add_quality_checks(report, stats["quality"])
        if not report.passed:
            path = report.write(lake.data_dir / "reports")
            _keep_rejects_for_debugging(out, path)
            raise GateError(report, path)
        plot_length_histogram(LENGTH_BINS, stats["length_histogram"], out / "_report" / "length_histogram.png",
                              title=f"corpus {name}: characters per document")
        handle = writer.commit({
            "schema_version": SCHEMA_VERSION,
            "config": config.model_dump(mode="json"),
            "inputs": [f.describe() for f in files],
            "parents": [],
            "counts": counts,
            "tables": {"corpus": "part-*.parquet", "rejects": "rejects/*.parquet"},
            "files": [{"name": p, "rows": pq.ParquetFile(out / p).metadata.num_rows,
                       "bytes": (out / p).stat().st_size} for p in parts],
            "validation": report.model_dump(mode="json"),
            "stats": stats,
        }, catalog=catalog)
    return IngestResult(dataset=handle, reused=False, catalog_status=catalog_status(catalog, handle), counts=counts, report=report, stats=stats,
                        elapsed_s=time.monotonic() - start)


MIN_TASK_BYTES = 8 << 20


def _plan_tasks(files: list[InputFile], task_bytes: int) -> list[Task]:
    """Consecutive files grouped into tasks of at most ``task_bytes`` (less for small corpora, so
    that there are about 16 tasks to spread over the cores); a large file is a task alone.
    Depends only on the inputs, never on the number of workers, so the output does not either."""
    task_bytes = min(task_bytes, max(MIN_TASK_BYTES, sum(f.size for f in files) // 16))
    tasks: list[Task] = []
    current: list[InputFile] = []
    size = 0
    for f in files:
        if current and size + f.size > task_bytes:
            tasks.append(Task(len(tasks), current))
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        tasks.append(Task(len(tasks), current))
    return tasks


def _run_tasks(tasks: list[Task], cfg: IngestConfig, out: Path, progress: Progress, total_bytes: int
               ) -> list[TaskResult]:
    workers = min(cfg.workers or default_workers(), len(tasks)) or 1
    remote = cluster_address(cfg.cluster) is not None
    counter = mp.get_context("spawn").Value("q", 0)
    with progress.task("ingesting", total=total_bytes, unit="B") as bar:
        stop = threading.Event()
        seen = [0]

        def poll() -> None:
            while not stop.wait(0.5):
                value = counter.value
                bar.advance(value - seen[0])
                seen[0] = value

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        # a cluster's workers cannot share the counter: progress then counts whole tasks
        done = (lambda i, _: bar.advance(sum(f.size for f in tasks[i].files))) if remote else None
        try:
            results = run_tasks(run_task, [(t, cfg, str(out)) for t in tasks], workers=workers, cluster=cfg.cluster,
                                initializer=init_worker, initargs=(counter, workers > 1),
                                cluster_initargs=(None, False), on_done=done)
        finally:
            stop.set()
            poller.join()
            bar.advance(counter.value - seen[0])
    return results


def _connect_for_dedup(out: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB with a memory limit, spilling to disk inside the version's temporary directory."""
    con = duckdb.connect()
    con.execute("SET memory_limit = '512MB'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET temp_directory = ?", [(out / ".duckdb_tmp").as_posix()])   # paths are bound, never pasted
    return con


def _find_copies(con: duckdb.DuckDBPyConnection, out: Path, parts: list[str]) -> int:
    """The temp table ``dups``: every document whose doc_id an earlier one in input order (shard
    names sort in task order) already has, with k = its copy number (2 for the first copy) and the
    first occurrence's file and record. Returns its row count."""
    con.execute("""
        CREATE TEMP TABLE dups AS
        SELECT * FROM (
            SELECT parse_filename(filename) AS part, file_row_number AS row, doc_id, source, source_file,
                   source_record, source_line,
                   row_number() OVER w AS k,
                   first_value(source_file) OVER w AS first_file,
                   first_value(source_record) OVER w AS first_record
            FROM read_parquet(?, filename = true, file_row_number = true)
            WINDOW w AS (PARTITION BY doc_id ORDER BY filename, file_row_number)
        ) WHERE k > 1
    """, [[str(out / p) for p in parts]])
    return con.execute("SELECT count(*) FROM dups").fetchall()[0][0]


def _drop_duplicates(out: Path, parts: list[str]) -> int:
    """Remove exact duplicates (same doc_id) across all shards, keeping the first occurrence in
    input order. DuckDB does the grouping with a memory limit and spills to disk, so this stays
    bounded whatever the corpus size. Returns the number dropped and appends them to the rejects
    table with the document they duplicate."""
    if not parts:
        return 0
    con = _connect_for_dedup(out)
    try:
        total = _find_copies(con, out, parts)
        if total == 0:
            return 0
        dup_rejects = out / "rejects" / "duplicates.parquet"
        con.execute("""
            COPY (SELECT source, source_file, source_record AS record, source_line AS line,
                         'duplicate' AS reason,
                         'duplicate of ' || first_file || ' record ' || first_record AS detail
                  FROM dups ORDER BY part, row)
            TO ? (FORMAT parquet, COMPRESSION zstd)
        """, [dup_rejects.as_posix()])
        by_part = con.execute("SELECT part, list(row ORDER BY row) FROM dups GROUP BY part").fetchall()
    finally:
        con.close()
    _cast_rejects(dup_rejects)
    for part, rows in by_part:
        _rewrite_without(out / part, np.asarray(rows, dtype=np.int64))
    return int(total)


def copy_id(doc_id: str, k: int) -> str:
    """The id of the k-th copy (k >= 2, in input order) of a document kept without dedup: blake2b-128
    of '<doc_id>#<k>', so that ids stay unique and the same input gives the same ids."""
    return hashlib.blake2b(f"{doc_id}#{k}".encode(), digest_size=16).hexdigest()


def _rename_duplicates(out: Path, parts: list[str]) -> int:
    """Without dedup, duplicates are kept: give every copy after the first its own id (``copy_id``),
    so that doc ids stay unique across shards. Returns the number of copies renamed."""
    if not parts:
        return 0
    con = _connect_for_dedup(out)
    try:
        total = _find_copies(con, out, parts)
        by_part = con.execute("SELECT part, list(row ORDER BY row), list(doc_id ORDER BY row), "
                              "list(k ORDER BY row) FROM dups GROUP BY part").fetchall() if total else []
    finally:
        con.close()
    for part, rows, ids, ks in by_part:
        _rewrite_ids(out / part, dict(zip(rows, (copy_id(i, k) for i, k in zip(ids, ks)))))
    return int(total)


def _rewrite_ids(path: Path, new_ids: dict[int, str]) -> None:
    """Rewrite a shard with the doc_id of the given row numbers replaced, row group by row group."""
    pf = pq.ParquetFile(path)
    tmp = path.with_suffix(".ids")
    with pq.ParquetWriter(tmp, pf.schema_arrow, compression="zstd",
                          use_dictionary=["source", "source_file", "label"]) as writer:
        start = 0
        for i in range(pf.num_row_groups):
            group = pf.read_row_group(i)
            ids = group.column("doc_id").to_pylist()
            for j in range(len(ids)):
                ids[j] = new_ids.get(start + j, ids[j])
            group = group.set_column(0, pf.schema_arrow.field("doc_id"), pa.array(ids, pa.string()))
            writer.write_table(group, row_group_size=group.num_rows)
            start += group.num_rows
    tmp.replace(path)


def _cast_rejects(path: Path) -> None:
    table = pq.read_table(path).cast(REJECTS_SCHEMA)
    pq.write_table(table, path, compression="zstd")


def _rewrite_without(path: Path, rows: np.ndarray) -> None:
    """Rewrite a shard without the given row numbers, row group by row group."""
    pf = pq.ParquetFile(path)
    if len(rows) == pf.metadata.num_rows:
        path.unlink()
        return
    tmp = path.with_suffix(".dedup")
    with pq.ParquetWriter(tmp, pf.schema_arrow, compression="zstd",
                          use_dictionary=["source", "source_file", "label"]) as writer:
        start = 0
        for i in range(pf.num_row_groups):
            group = pf.read_row_group(i)
            keep = ~np.isin(np.arange(start, start + group.num_rows), rows)
            if keep.any():
                writer.write_table(group.filter(pa.array(keep)), row_group_size=group.num_rows)
            start += group.num_rows
    tmp.replace(path)


def _counts(results: list[TaskResult], duplicates: int, files: list[InputFile], near_duplicates: int = 0
            ) -> dict[str, int]:
    documents_before = sum(r.documents for r in results)
    per_source = Counter()
    for r in results:
        for c in r.per_source.values():
            per_source.update(c)
    return {
        "files": len(files),
        "input_bytes": sum(f.size for f in files),
        "records": sum(r.records for r in results),
        "documents_before_dedup": documents_before,
        "duplicates": duplicates,
        "near_duplicates": near_duplicates,
        "filtered": sum(v for r in results for k, v in r.filtered.items() if k != "quality_mojibake_line"),
        "documents": documents_before - duplicates - near_duplicates,
        "rejects": sum(r.rejects for r in results),
        "file_rejects": sum(r.file_rejects for r in results),
        "sentences": 0,      # filled from the shards by the gate (after dedup)
        "characters": 0,
    }


def _stats(results: list[TaskResult], counts: dict[str, int]) -> dict[str, Any]:
    per_source: dict[str, Counter] = {}
    reasons: Counter = Counter()
    hist = np.zeros(len(LENGTH_BINS), dtype=np.int64)
    for r in results:
        for source, c in r.per_source.items():
            per_source.setdefault(source, Counter()).update(c)
        reasons.update(r.reasons)
        hist += np.asarray(r.length_hist)
    return {
        "per_source_before_dedup": {s: dict(c) for s, c in per_source.items()},
        "reject_reasons": dict(reasons),
        "length_bins": LENGTH_BINS,
        "length_histogram": hist.tolist(),
        "length_histogram_before_filters": np.sum([r.length_hist_before_filters for r in results], axis=0
                                                  ).astype(int).tolist() if results else [0] * len(LENGTH_BINS),
    }


def _quality_stats(results: list[TaskResult], near: dict[str, Any]) -> dict[str, Any]:
    """Per quality filter (and near-dedup): documents and characters removed, a few examples."""
    out: dict[str, Any] = {}
    for r in results:
        for reason, n in r.filtered.items():
            q = out.setdefault(reason, {"documents": 0, "characters": 0, "examples": []})
            q["documents"] += n
            q["characters"] += r.filtered_chars[reason]
            q["examples"] = (q["examples"] + r.filtered_examples.get(reason, []))[:3]
    if near:
        out["near_duplicate"] = {k: near[k] for k in ("documents", "characters", "examples")}
    if "quality_mojibake_line" in out:   # lines, not documents
        out["quality_mojibake_line"]["lines"] = out["quality_mojibake_line"].pop("documents")
    return out


def add_quality_checks(report: GateReport, quality: dict[str, Any]) -> None:
    """One informational line per quality filter in the gate report (removals are decisions, not failures)."""
    for reason, q in sorted(quality.items()):
        what = f"{q['lines']:,} lines" if "lines" in q else f"{q['documents']:,} documents, {q['characters']:,} characters"
        example = q["examples"][0] if q["examples"] else None
        detail = f"e.g. {example['file']} record {example['record']}: {example['detail']}" if example else ""
        report.add(f"quality: {reason}", True, observed=f"{what} removed", expected="reported", detail=detail[:300])


def _drop_near_duplicates(out: Path, parts: list[str], results: list[TaskResult], cfg: IngestConfig,
                          progress: Progress) -> dict[str, Any]:
    """Remove near-duplicates (``bertplat.ingest.neardup``) from the shards; each goes to the rejects
    table pointing at the document it duplicates. Returns counts and examples."""
    from bertplat.ingest.neardup import find_near_duplicates

    sig_files = sorted(str(out / "_near" / p) for r in results for p in r.signature_parts)
    if not parts or not sig_files:
        return {"documents": 0, "characters": 0, "examples": []}
    con = _connect_for_dedup(out)
    try:
        with progress.task("near-dedup (MinHash LSH)", total=1, unit="steps") as bar:
            found = find_near_duplicates(con, sig_files, cfg.near_dedup)
            bar.advance(1)
        if not found:
            return {"documents": 0, "characters": 0, "examples": []}
        con.execute("CREATE TEMP TABLE near_found AS SELECT unnest(?::VARCHAR[]) AS doc_id, unnest(?::VARCHAR[]) "
                    "AS kept, unnest(?::DOUBLE[]) AS jaccard, unnest(?::BOOLEAN[]) AS exact",
                    [[f[0] for f in found], [f[1] for f in found], [f[2] for f in found], [f[3] for f in found]])
        con.execute("""
            CREATE TEMP TABLE near_rows AS
            SELECT parse_filename(c.filename) AS part, c.file_row_number AS row, c.doc_id, c.source,
                   c.source_file, c.source_record, c.source_line, c.n_chars, left(c.text, 160) AS text, f.kept,
                   f.jaccard, f.exact
            FROM read_parquet(?, filename = true, file_row_number = true) c JOIN near_found f USING (doc_id)
        """, [[str(out / p) for p in parts]])
        near_rejects = out / "rejects" / "near_duplicates.parquet"
        con.execute("""
            COPY (SELECT n.source, n.source_file, n.source_record AS record, n.source_line AS line,
                         'near_duplicate' AS reason,
                         'near-duplicate (' || CASE WHEN n.exact THEN 'Jaccard ' ELSE 'estimated Jaccard ' END
                         || round(n.jaccard, 3) || ') of ' || k.source_file
                         || ' record ' || k.source_record || ' (doc_id ' || n.kept || ')' AS detail
                  FROM near_rows n JOIN read_parquet(?) k ON k.doc_id = n.kept ORDER BY n.part, n.row)
            TO ? (FORMAT parquet, COMPRESSION zstd)
        """, [[str(out / p) for p in parts], near_rejects.as_posix()])
        chars = con.execute("SELECT coalesce(sum(n_chars), 0), count(*) FROM near_rows").fetchall()[0]
        examples = [{"file": f, "record": r, "detail": f"{'' if e else 'estimated '}Jaccard {j:.3f} with doc_id {k}",
                     "text": t}
                    for f, r, j, e, k, t in con.execute("SELECT source_file, source_record, jaccard, exact, kept, text "
                                                     "FROM near_rows ORDER BY part, row LIMIT 3").fetchall()]
        by_part = con.execute("SELECT part, list(row ORDER BY row) FROM near_rows GROUP BY part").fetchall()
    finally:
        con.close()
    _cast_rejects(near_rejects)
    for part, rows in by_part:
        _rewrite_without(out / part, np.asarray(rows, dtype=np.int64))
    return {"documents": int(chars[1]), "characters": int(chars[0]), "examples": examples}


def _keep_rejects_for_debugging(out: Path, report_path: Path) -> None:
    """A failed gate commits nothing; keep the rejects table beside the report so the user can see why."""
    files = sorted((out / "rejects").glob("*.parquet"))
    if files:
        table = pa.concat_tables([pq.read_table(f) for f in files])
        pq.write_table(table, report_path.with_name(report_path.stem + "-rejects.parquet"))
