"""Issue 10 item 11: a quote in the data directory's path broke ingest (two DuckDB statements pasted the
path unquoted). The whole pipeline runs here under a data directory whose name has a quote, a space and
non-ASCII characters, and the catalog's views are queried through ``Catalog.fetch``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertplat.catalog import Catalog
from bertplat.examples.config import ExamplesConfig
from bertplat.examples.stage import run_examples
from bertplat.ingest import IngestConfig, run_ingest
from bertplat.lake import Lake
from bertplat.pretrain import PretrainConfig, run_pretrain
from bertplat.vocab import VocabConfig, run_vocab
from tests.ingest.conftest import write

WORDS = ("river stone light garden window paper morning silver market winter forest music letter "
         "harbour candle orchard meadow lantern bridge valley").split()


def _corpus(directory, n_docs: int = 240) -> None:
    rng = np.random.default_rng(7)
    lines = []
    for _ in range(n_docs):
        sentences = [" ".join(rng.choice(WORDS, rng.integers(5, 12))).capitalize() + "." for _ in range(6)]
        lines.append(json.dumps({"text": " ".join(sentences)}))
    lines += [lines[0], lines[1]]   # two duplicates: the dedup query runs (its temp directory and COPY)
    write(directory / "docs.jsonl", "\n".join(lines) + "\n")


@pytest.mark.slow
def test_pipeline_under_a_data_dir_with_a_quote_a_space_and_non_ascii(tmp_path):
    data = tmp_path / "it's a dír ✓" / "data"
    _corpus(tmp_path / "in")
    lake = Lake(str(data))
    catalog = Catalog(data / "catalog.duckdb", lake)
    corpus = run_ingest([str(tmp_path / "in")], "quoted", IngestConfig(workers=1), lake, catalog)
    assert corpus.counts["duplicates"] == 2 and corpus.counts["documents"] == 240
    vocab = run_vocab(corpus.dataset, "quoted", VocabConfig(vocab_size=128), lake, catalog)
    examples = run_examples(corpus.dataset, vocab.dataset, "quoted",
                            ExamplesConfig(workers=1, max_seq_length=64, validation_fraction=0.1), lake, catalog)
    result = run_pretrain(examples.dataset, "quoted", PretrainConfig(
        model="tiny", micro_batch_size=16, max_steps=6, warmup_steps=1, val_every_n_steps=6, val_examples=32,
        log_every_n_steps=1, checkpoint_every_n_steps=6, min_val_mlm_accuracy=0.0), lake, catalog)
    assert result.steps == 6 and result.report.passed
    assert str(result.model_dir).startswith(str(data))

    assert catalog.fetch("SELECT count(*) FROM corpus_quoted")[1] == [(240,)]
    assert catalog.fetch("SELECT count(*) FROM rejects_quoted WHERE reason = 'duplicate'")[1] == [(2,)]
    assert catalog.fetch("SELECT count(*) FROM vocab_quoted")[1][0][0] >= 128
    _, splits = catalog.fetch("SELECT split, count(*) FROM examples_quoted GROUP BY split ORDER BY split")
    assert [s for s, _ in splits] == ["train", "validation"] and all(n > 0 for _, n in splits)
