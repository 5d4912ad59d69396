"""The ingest flow: raw corpora to a validated corpus dataset, with a summary in the Prefect UI.

(``flows/__init__.py`` sets the Prefect defaults; it runs before this module, and before Prefect.)
"""

from __future__ import annotations

import os

from prefect import flow, task
from pydantic import BaseModel, Field

from bertplat.ingest import IngestConfig, IngestResult, run_ingest
from bertplat.ingest.sources import SourceError
from bertplat.lake import DatasetHandle
from bertplat.paths import PACKAGE_PREFIX, resolve_package_path
from bertplat.plots import text_histogram
from flows.common import (
    artifact_key,
    context,
    gate_report_on_failure,
    png_markdown,
    publish_table,
    retry_on_io_error,
    run_progress,
)


def package_file(path: str) -> str:
    """``package:PACKAGE/FILE`` -> the file inside the installed package (see ``bertplat.paths``): how a
    deployment's defaults name the demo corpus without an absolute path."""
    try:
        return resolve_package_path(path)
    except FileNotFoundError as exc:
        raise SourceError(f"{exc}; or set `paths` in the ingest run form to files that exist") from None


class IngestParams(BaseModel):
    """What to ingest and how; the Prefect UI shows this as the run form."""

    paths: list[str] = Field(description="Files, directories or glob patterns, relative to the working directory "
                             "(under a worker: the clone it was started in; data/raw is the drop folder). "
                             f"{PACKAGE_PREFIX}PACKAGE/FILE names a file inside an installed Python package.")
    name: str = Field(description="Dataset name; queryable in DuckDB as corpus_NAME.")
    options: IngestConfig = Field(default_factory=IngestConfig, description="Ingest options (formats, fields, limits).")


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io_error,
      task_run_name="ingest-{params.name}")
def ingest_corpus(params: IngestParams) -> IngestResult:
    _, lake, catalog = context()
    paths = [package_file(path) for path in params.paths]
    try:
        with gate_report_on_failure("corpus", params.name):
            return run_ingest(paths, params.name, params.options, lake, catalog, progress=run_progress())
    except SourceError as exc:
        raise SourceError(f"{exc} (relative paths are read from {os.getcwd()}). Set `paths` in the ingest run form "
                          "to files, directories or globs that exist there, or put your files in data/raw "
                          "and name that.") from None


def publish_ingest_summary(result: IngestResult) -> None:
    name = result.dataset.name
    c = result.counts
    lines = [
        f"## corpus `{name}`", "", result.summary().split("\n")[0], "",
        f"- version: `{result.dataset.uri}`",
        f"- query: `SELECT * FROM corpus_{name}` and `SELECT * FROM rejects_{name}`",
        f"- documents {c['documents']:,} (before dedup {c['documents_before_dedup']:,}), sentences {c['sentences']:,}, "
        f"characters {c['characters']:,}, rejects {c['rejects']:,}", "",
        "### characters per document", "", text_histogram(result.stats["length_bins"], result.stats["length_histogram"]),
    ]
    lines += quality_markdown(result.stats)
    plot = result.dataset.path / "_report" / "length_histogram.png"
    if plot.exists():
        lines += ["", png_markdown(plot, "length histogram")]
    lines += ["", result.report.to_markdown()]
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact("\n".join(lines), key=artifact_key("corpus", name), description=f"corpus {name}")
    per_source = result.report.stats.get("per_source", {})
    publish_table([{"source": s, **v} for s, v in per_source.items()], key=artifact_key("corpus", name, "sources"),
                  description=f"corpus {name}: documents, sentences and characters per source")


def quality_markdown(stats: dict) -> list[str]:
    """The quality section of the artifact: per filter, documents and characters removed with examples,
    and the length histogram before the filters (the one above is after them and after dedup)."""
    quality = stats.get("quality") or {}
    if not quality:
        return []
    lines = ["", "### quality filters and near-duplicates", "",
             "| filter | removed | characters | example |", "|---|---:|---:|---|"]
    for reason, q in sorted(quality.items()):
        removed = f"{q['lines']:,} lines" if "lines" in q else f"{q['documents']:,}"
        examples = "<br>".join(f"`{e['file']}` record {e['record']}: {e['detail']} - "
                               f"{e['text'][:80]!r}".replace("|", "\\|") for e in q["examples"][:3])
        lines.append(f"| `{reason}` | {removed} | {q['characters']:,} | {examples} |")
    lines += ["", "Query them: `SELECT reason, detail FROM rejects_NAME WHERE reason LIKE 'quality_%' OR reason = "
              "'near_duplicate'`"]
    if before := stats.get("length_histogram_before_filters"):
        lines += ["", "### characters per document before the quality filters", "",
                  text_histogram(stats["length_bins"], before)]
    return lines


@flow(name="ingest", description="Ingest raw corpora into a validated, deduplicated Parquet corpus.")
def ingest_flow(params: IngestParams) -> DatasetHandle:
    result = ingest_corpus(params)
    publish_ingest_summary(result)
    return result.dataset


if __name__ == "__main__":
    import sys

    ingest_flow(IngestParams(paths=sys.argv[2:], name=sys.argv[1]))
