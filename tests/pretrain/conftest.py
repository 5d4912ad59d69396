"""Fixtures for the pretraining tests: hand-written shards in the examples layout, and real examples
built from the demo corpus (10,033 Wikipedia lead sections) by the ingest, vocab and examples stages."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertplat.lake import Lake

CLS, SEP, FIRST_ID = 2, 3, 10
VOCAB_SIZE = 2000


def example_tokens(i: int, length: int) -> np.ndarray:
    """[CLS] <id of example i in two tokens> filler... [SEP]: the example can be told from its tokens."""
    body = np.full(length - 2, FIRST_ID + 999, dtype=np.uint16)
    body[0], body[1] = FIRST_ID + i // 1000, FIRST_ID + i % 1000
    return np.concatenate([[CLS], body, [SEP]]).astype(np.uint16)


def example_id(row) -> int:
    """The example number from a collated row of input_ids (static masks leave tokens unchanged)."""
    return int(row[1] - FIRST_ID) * 1000 + int(row[2] - FIRST_ID)


def write_shards(directory: Path, n_examples: int, rows_per_group: int, files: int = 2, seed: int = 0,
                 static: bool = True) -> list[Path]:
    """``files`` Parquet shards of the examples layout (nsp, static masks with no masked positions unless
    ``static`` is False), example lengths 8-64, one row group per ``rows_per_group`` examples."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 65, n_examples)
    directory.mkdir(parents=True, exist_ok=True)
    per_file = -(-n_examples // files)
    paths = []
    for f in range(files):
        rows = range(f * per_file, min(n_examples, (f + 1) * per_file))
        cols = {
            "input_ids": pa.array([example_tokens(i, int(lengths[i])) for i in rows], pa.list_(pa.uint16())),
            "segment_a_len": pa.array([int(lengths[i]) // 2 for i in rows], pa.uint16()),
            "next_sentence_label": pa.array([i % 2 for i in rows], pa.int8()),
            "doc_id": pa.array([f"doc-{i}" for i in rows]),
        }
        if static:
            cols["masked_positions"] = pa.array([[] for _ in rows], pa.list_(pa.uint16()))
            cols["masked_label_ids"] = pa.array([[] for _ in rows], pa.list_(pa.uint16()))
        path = directory / f"part-{f:05d}.parquet"
        pq.write_table(pa.table(cols), path, row_group_size=rows_per_group)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory, demo_corpus_file) -> Lake:
    """A lake holding corpus, vocab (4096 tokens) and examples (nsp, 128, dynamic masking) named ``demo``.

    The corpus is ingested in 1 MiB batches, so the examples have five shards to deal out."""
    from bertplat.examples.config import ExamplesConfig
    from bertplat.examples.stage import run_examples
    from bertplat.ingest import IngestConfig, run_ingest
    from bertplat.vocab import VocabConfig, run_vocab

    lake = Lake(str(tmp_path_factory.mktemp("pretrain") / "data"))
    corpus = run_ingest([str(demo_corpus_file)], "demo", IngestConfig(
        format="json", text_field="extract", title_field="title", label_field="topic", batch_bytes=1 << 20,
        workers=1), lake).dataset
    vocab = run_vocab(corpus, "demo", VocabConfig(vocab_size=4096), lake).dataset
    run_examples(corpus, vocab, "demo", ExamplesConfig(workers=1, validation_fraction=0.05), lake)
    run_examples(corpus, vocab, "demo_static", ExamplesConfig(workers=1, validation_fraction=0.05,
                                                              masking="static"), lake)
    return lake


@pytest.fixture()
def lake(demo_lake, tmp_path) -> Lake:
    """A fresh data root per test that shares the demo datasets (copied: runs and models stay apart)."""
    root = tmp_path / "data"
    shutil.copytree(demo_lake.root, root / "lake")
    return Lake(str(root))


@pytest.fixture()
def examples(lake):
    return lake.latest("examples", "demo")


TRAIN = dict(model="tiny", micro_batch_size=32, lr=3e-3, warmup_steps=6, max_steps=60, val_every_n_steps=20,
             val_examples=512, log_every_n_steps=5, checkpoint_every_n_steps=30, min_val_mlm_accuracy=0.02)


@pytest.fixture(scope="module")
def trained(demo_lake, tmp_path_factory):
    """60 steps of the tiny preset on the demo examples (about 8 s on two cores), once per test module."""
    from bertplat.pretrain import PretrainConfig, run_pretrain

    data = tmp_path_factory.mktemp("trained") / "data"
    shutil.copytree(demo_lake.root, data / "lake")
    lake = Lake(str(data))
    return lake, run_pretrain(lake.latest("examples", "demo"), "tiny-demo", PretrainConfig(**TRAIN), lake)
