"""The examples flow: pretraining examples from a corpus and a vocabulary, with a report in the UI."""

from __future__ import annotations

from prefect import flow, task
from pydantic import BaseModel, Field

from bertplat.examples.config import ExamplesConfig
from bertplat.examples.stage import ExamplesResult, run_examples
from bertplat.lake import DatasetHandle
from flows.common import (
    artifact_key,
    context,
    gate_report_on_failure,
    png_markdown,
    publish_table,
    resolve_input,
    retry_on_io_error,
    run_progress,
)


class ExamplesParams(BaseModel):
    corpus: str = Field(description="Corpus dataset: NAME or NAME@FINGERPRINT.")
    vocab: str = Field(description="Vocab dataset: NAME or NAME@FINGERPRINT.")
    name: str = Field(description="Examples dataset name; queryable in DuckDB as examples_NAME.")
    options: ExamplesConfig = Field(default_factory=ExamplesConfig, description="Examples options.")


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io_error,
      task_run_name="examples-{params.name}")
def build_examples(params: ExamplesParams) -> ExamplesResult:
    _, lake, catalog = context()
    with gate_report_on_failure("examples", params.name):
        corpus = resolve_input(lake, "corpus", params.corpus, "corpus", "ingest")
        vocab = resolve_input(lake, "vocab", params.vocab, "vocab", "vocab")
        return run_examples(corpus, vocab, params.name, params.options, lake, catalog, progress=run_progress())


def publish_examples_summary(result: ExamplesResult) -> None:
    from prefect.artifacts import create_markdown_artifact

    name, c = result.dataset.name, result.counts
    lines = [f"## examples `{name}`", "", result.summary().split("\n")[0], "",
             f"- version: `{result.dataset.uri}`",
             f"- query: `SELECT split, count(*) FROM examples_{name} GROUP BY split`",
             f"- tokens {c['tokens']:,}; padding waste at max length {c['padding_waste']:.1%}"
             + (f"; label share {c['label_share']:.3f}" if c.get("label_share") is not None else "")
             + (f"; mask rate {c['mask_rate']:.4f}" if "mask_rate" in c else "")]
    plot = result.dataset.path / "_report" / "sequence_lengths.png"
    if plot.exists():
        lines += ["", "### tokens per example", "", png_markdown(plot, "sequence lengths")]
    lines += ["", result.report.to_markdown()]
    create_markdown_artifact("\n".join(lines), key=artifact_key("examples", name), description=f"examples {name}")
    publish_table([{"split": s, **c[s]} for s in ("train", "validation")], key=artifact_key("examples", name, "splits"),
                  description=f"examples {name}: instances, tokens and documents per split")


@flow(name="examples", description="Build MLM + NSP/SOP/MLM-only pretraining examples, validated.")
def examples_flow(params: ExamplesParams) -> DatasetHandle:
    result = build_examples(params)
    publish_examples_summary(result)
    return result.dataset
