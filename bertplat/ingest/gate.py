"""The corpus gate: the pandera schema on every row group of every shard, then whole-dataset
checks (unique ids across shards, counts that agree, reject ratio under the threshold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandera.errors
import polars as pl
import pyarrow.parquet as pq

from bertplat.ingest.config import IngestConfig
from bertplat.ingest.schema import CorpusDocument
from bertplat.progress import NullProgress, Progress
from bertplat.validation import GateReport


def corpus_totals(root: Path, parts: list[str]) -> dict[str, Any]:
    """Rows, distinct ids, sentences and characters over all shards, and the same per source."""
    if not parts:
        return {"rows": 0, "distinct_ids": 0, "sentences": 0, "characters": 0, "per_source": {}}
    files = [str(root / p) for p in parts]
    with duckdb.connect() as con:
        rows, distinct, sentences, chars = con.execute(
            "SELECT count(*), count(DISTINCT doc_id), coalesce(sum(n_sentences), 0), coalesce(sum(n_chars), 0) "
            "FROM read_parquet(?)", [files]).fetchall()[0]
        per_source = con.execute(
            "SELECT source, count(*), sum(n_sentences), sum(n_chars) FROM read_parquet(?) "
            "GROUP BY source ORDER BY source", [files]).fetchall()
    return {"rows": rows, "distinct_ids": distinct, "sentences": int(sentences), "characters": int(chars),
            "per_source": {s: {"documents": d, "sentences": int(n), "characters": int(c)}
                           for s, d, n, c in per_source}}


def validate_corpus(root: Path, parts: list[str], counts: dict[str, int], cfg: IngestConfig, dataset: str,
                    progress: Progress | None = None) -> GateReport:
    """Check every shard under ``root`` and the dataset as a whole; fills counts' sentence and
    character totals from the shards."""
    progress = progress or NullProgress()
    report = GateReport(stage="ingest", dataset=dataset)
    file_rows = 0
    schema_failures = 0
    with progress.task("validating shards", total=len(parts), unit="shards") as bar:
        for part in parts:
            pf = pq.ParquetFile(root / part)
            file_rows += pf.metadata.num_rows
            for i in range(pf.num_row_groups):
                schema_failures += _check_row_group(report, pf, i, part)
            bar.advance(1)
    if schema_failures == 0:
        report.add("schema", True, observed=f"{len(parts)} shards", expected="CorpusDocument",
                   detail="types, non-empty text, id format, n_sentences and n_chars consistent, on every row group")

    totals = corpus_totals(root, parts)
    counts["sentences"], counts["characters"] = totals["sentences"], totals["characters"]
    report.add("documents present", totals["rows"] > 0, observed=totals["rows"], expected="> 0",
               detail="" if totals["rows"] else "nothing was accepted; see the rejects table")
    report.add("unique doc ids across shards", totals["distinct_ids"] == totals["rows"],
               observed=totals["distinct_ids"], expected=totals["rows"])
    report.add("row count matches shard metadata", file_rows == totals["rows"], observed=totals["rows"],
               expected=file_rows)
    report.add("row count matches counts", counts["documents"] == totals["rows"], observed=totals["rows"],
               expected=counts["documents"])
    units = counts["records"] + counts.get("file_rejects", 0)
    ratio = counts["rejects"] / units if units else 0.0
    report.add("reject ratio", ratio <= cfg.max_reject_ratio, observed=round(ratio, 6),
               expected=f"<= {cfg.max_reject_ratio}",
               detail="" if ratio <= cfg.max_reject_ratio else
               f"{counts['rejects']} of {units} records or files were rejected; the rejects table (saved next to "
               "this report) says which and why; fix the input, or raise --max-reject-ratio")
    report.stats = {"per_source": totals["per_source"]}
    return report


def _check_row_group(report: GateReport, pf: pq.ParquetFile, index: int, part: str) -> int:
    frame = pl.from_arrow(pf.read_row_group(index))
    try:
        CorpusDocument.validate(frame, lazy=True)
        return 0
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        failures = 0
        for (check, column), group in cases.group_by(["check", "column"], maintain_order=True):
            rows = [r for r in group.get_column("index").to_list() if r is not None][:5]
            report.add(f"schema: {column} {check}", False, observed=f"{group.height} rows",
                       expected="0 rows", where=f"{part} row group {index}",
                       detail=f"first bad rows: {rows}; example: {str(group.get_column('failure_case')[0])[:80]!r}")
            failures += 1
        return failures
    except pandera.errors.SchemaError as exc:
        report.add("schema", False, where=f"{part} row group {index}", detail=str(exc)[:300])
        return 1
