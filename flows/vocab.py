"""The vocab flow: a WordPiece vocabulary from a corpus dataset, with its gate report in the UI."""

from __future__ import annotations

from prefect import flow, task
from pydantic import BaseModel, Field

from bertplat.lake import DatasetHandle
from bertplat.plots import text_histogram
from bertplat.vocab import VocabConfig, VocabResult, run_vocab
from bertplat.vocab.stage import TOKEN_LENGTH_BINS
from flows.common import (
    artifact_key,
    context,
    gate_report_on_failure,
    png_markdown,
    resolve_input,
    retry_on_io_error,
    run_progress,
)


class VocabParams(BaseModel):
    corpus: str = Field(description="Corpus dataset: NAME (newest version) or NAME@FINGERPRINT.")
    name: str = Field(description="Vocab dataset name; queryable in DuckDB as vocab_NAME.")
    options: VocabConfig = Field(default_factory=VocabConfig, description="Vocabulary options.")


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io_error, task_run_name="vocab-{params.name}")
def train_vocab(params: VocabParams) -> VocabResult:
    _, lake, catalog = context()
    with gate_report_on_failure("vocab", params.name):
        corpus = resolve_input(lake, "corpus", params.corpus, "corpus", "ingest")
        return run_vocab(corpus, params.name, params.options, lake, catalog,
                         progress=run_progress())


def publish_vocab_summary(result: VocabResult) -> None:
    from prefect.artifacts import create_markdown_artifact

    name = result.dataset.name
    lines = [f"## vocab `{name}`", "", result.summary().split("\n")[0], "",
             f"- version: `{result.dataset.uri}` (loads with `BertTokenizerFast.from_pretrained`)",
             f"- query: `SELECT * FROM vocab_{name}`", "", "### characters per token", "",
             text_histogram(TOKEN_LENGTH_BINS, result.stats["token_length_histogram"])]
    plot = result.dataset.path / "_report" / "token_lengths.png"
    if plot.exists():
        lines += ["", png_markdown(plot, "token lengths")]
    lines += ["", result.report.to_markdown()]
    create_markdown_artifact("\n".join(lines), key=artifact_key("vocab", name), description=f"vocab {name}")


@flow(name="vocab", description="Train a WordPiece vocabulary on a corpus dataset.")
def vocab_flow(params: VocabParams) -> DatasetHandle:
    result = train_vocab(params)
    publish_vocab_summary(result)
    return result.dataset
