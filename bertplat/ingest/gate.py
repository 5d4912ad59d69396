"""The corpus gate: the pandera schema on every row group of every shard, then whole-dataset
checks (unique ids across shards, counts that agree, reject ratio under the threshold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandera.errors
import pandera.polars as pa
import polars as pl
import pyarrow
import pyarrow.parquet as pq

from bertplat.ingest.config import IngestConfig
from bertplat.progress import NullProgress, Progress
from bertplat.validation import Check, GateReport


class CorpusDocument(pa.DataFrameModel):
    """One row of a corpus shard."""

    # Unique ids are a dataset-level check (DuckDB, across shards, after dedup), not a row-group one:
    # workers validate each row group before the cross-shard dedup.
    doc_id: str = pa.Field(str_matches=r"^[0-9a-f]{32}$")
    text: str = pa.Field(str_length={"min_value": 1})
    sentences: pl.List(pl.Utf8) = pa.Field()
    n_chars: pl.Int32 = pa.Field(ge=1)
    n_sentences: pl.Int32 = pa.Field(ge=1)
    title: str | None = pa.Field(nullable=True)
    label: str | None = pa.Field(nullable=True)
    source_id: str | None = pa.Field(nullable=True)
    source: str = pa.Field(str_length={"min_value": 1})
    source_file: str = pa.Field(str_length={"min_value": 1})
    source_record: pl.Int64 = pa.Field(ge=1)
    source_line: pl.Int64 | None = pa.Field(nullable=True, ge=1)

    @pa.dataframe_check
    def n_sentences_is_list_length(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("sentences").list.len() == pl.col("n_sentences"))

    @pa.dataframe_check
    def n_chars_is_text_length(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("text").str.len_chars() == pl.col("n_chars"))

    @pa.dataframe_check
    def sentences_are_non_empty(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("sentences").list.eval(pl.element().str.len_chars() > 0).list.all())

    class Config:
        strict = True   # no unexpected columns
        ordered = True


def corpus_totals(root: Path, parts: list[str]) -> dict[str, Any]:
    """Rows, distinct ids, sentences and characters over all shards, and the same per source."""
    import duckdb  # here, not at the top: worker processes import this module and never need it

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
                    progress: Progress | None = None, checked: list[Check] | None = None) -> GateReport:
    """Check every shard under ``root`` and the dataset as a whole; fills counts' sentence and
    character totals from the shards.

    ``checked``: the schema failures the workers found when they validated each row group before
    writing it (the stage passes them, so shards are not read back); None reads and checks every
    row group here."""
    progress = progress or NullProgress()
    report = GateReport(stage="ingest", dataset=dataset)
    if checked is None:
        checked = []
        with progress.task("validating shards", total=len(parts), unit="shards") as bar:
            for part in parts:
                pf = pq.ParquetFile(root / part)
                for i in range(pf.num_row_groups):
                    checked += check_row_group(pf.read_row_group(i), f"{part} row group {i}")
                bar.advance(1)
    report.checks += checked
    if not checked:
        report.add("schema", True, observed=f"{len(parts)} shards", expected="CorpusDocument",
                   detail="types, non-empty text, id format, n_sentences and n_chars consistent, on every row group")
    file_rows = sum(pq.ParquetFile(root / part).metadata.num_rows for part in parts)
    totals = corpus_totals(root, parts)
    counts["sentences"], counts["characters"] = totals["sentences"], totals["characters"]
    report.add("documents present", totals["rows"] > 0, observed=totals["rows"], expected="> 0",
               detail="" if totals["rows"] else "nothing was accepted; the rejected records file named below says why")
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


def check_row_group(table: pyarrow.Table, where: str) -> list[Check]:
    """The CorpusDocument schema on one row group; a failed check per broken rule, naming ``where``."""
    try:
        CorpusDocument.validate(pl.from_arrow(table), lazy=True)
        return []
    except pandera.errors.SchemaErrors as exc:
        failures = []
        for (check, column), group in exc.failure_cases.group_by(["check", "column"], maintain_order=True):
            rows = [r for r in group.get_column("index").to_list() if r is not None][:5]
            failures.append(Check(name=f"schema: {column} {check}", passed=False, observed=f"{group.height} rows",
                                  expected="0 rows", where=where,
                                  detail=f"first bad rows: {rows}; example: "
                                         f"{str(group.get_column('failure_case')[0])[:80]!r}"))
        return failures
    except pandera.errors.SchemaError as exc:
        return [Check(name="schema", passed=False, where=where, detail=str(exc)[:300])]
