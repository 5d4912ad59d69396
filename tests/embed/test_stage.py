"""run_embed end to end on real lakes: corpus and task inputs, reuse, the gate's failures, int8's refusal,
and resuming a run killed in a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file

from bertplat.embed import EmbedConfig, Int8Refused, run_embed
from bertplat.embed.gate import check_embeddings, vectors_of
from bertplat.validation import GateError
from tests.conftest import REPO
from tests.embed.conftest import make_corpus


@pytest.fixture(scope="module")
def corpus_lake(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("embed"), n=300)


def test_a_corpus_becomes_a_validated_embeddings_dataset_with_a_duckdb_view(corpus_lake, tiny_model):
    lake, catalog, corpus = corpus_lake
    result = run_embed(tiny_model, corpus, "docs", EmbedConfig(threads=1, shard_rows=128), lake, catalog)
    assert not result.reused and result.report.passed
    assert result.stats["rows"] == 300 and result.stats["dim"] == 64
    files = sorted(result.dataset.path.glob("part-*.parquet"))
    assert len(files) == 3  # 128 + 128 + 44
    table = pa.concat_tables(pq.read_table(f) for f in files)
    assert table.column("id").to_pylist() == list(range(300))
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 64)
    assert set(table.column("label").to_pylist()) == {"even", "odd"}
    assert (result.dataset.path / "_report" / "pca.png").is_file()
    cols, rows = catalog.fetch("SELECT count(*), count(DISTINCT doc_id), "
                               "min(len(vector)) FROM embeddings_docs")
    assert rows == [(300, 300, 64)]
    m = json.loads((result.dataset.path / "_manifest.json").read_text())
    assert {p["kind"] for p in m["parents"]} == {"corpus", "model"}
    again = run_embed(tiny_model, corpus, "docs", EmbedConfig(threads=2, shard_rows=128), lake, catalog)
    assert again.reused and again.dataset == result.dataset  # threads do not change the vectors


def test_sentences_give_one_vector_per_sentence_keyed_by_document_and_index(corpus_lake, tiny_model):
    lake, catalog, corpus = corpus_lake
    result = run_embed(tiny_model, corpus, "sents", EmbedConfig(threads=1, unit="sentences"), lake, catalog)
    _, rows = catalog.fetch("SELECT sum(n_sentences) FROM corpus_small")
    assert result.stats["rows"] == rows[0][0] > 300
    _, rows = catalog.fetch("SELECT e.text = c.sentences[e.sentence + 1] FROM embeddings_sents e "
                            "JOIN corpus_small c USING (doc_id)")
    assert all(r[0] for r in rows)


def test_a_model_that_makes_nan_fails_the_gate_and_commits_nothing(tmp_path, corpus_lake, tiny_model):
    lake, catalog, corpus = corpus_lake
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    sd = load_file(str(broken / "model.safetensors"))
    key = next(k for k in sd if k.endswith("encoder.layer.1.output.dense.weight"))
    sd[key] = torch.full_like(sd[key], float("nan"))
    save_file(sd, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(GateError, match="no NaN or Inf"):
        run_embed(broken, corpus, "nan_docs", EmbedConfig(threads=1), lake, catalog)
    assert lake.versions("embeddings", "nan_docs") == []
    assert not list((lake.data_dir / "work" / "embed").glob("nan_docs-*"))


def _shard(path: Path, n: int, dim: int, fill: float = 1.0) -> Path:
    v = np.full((n, dim), fill, np.float32) / np.sqrt(dim)
    pq.write_table(pa.table({"id": np.arange(n), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(v.reshape(-1)), dim)}), path)
    return path


def test_the_gate_fails_on_a_wrong_dimension_a_wrong_row_count_and_bad_norms(tmp_path):
    cfg = EmbedConfig()
    good = _shard(tmp_path / "good.parquet", 10, 8)
    assert check_embeddings([good], 10, 8, True, cfg, "x").passed
    failed = lambda report: {c.name for c in report.failures}  # noqa: E731
    assert failed(check_embeddings([_shard(tmp_path / "wide.parquet", 10, 9)], 10, 8, True, cfg, "x")) == {
        "vector dimension"}
    assert failed(check_embeddings([good], 11, 8, True, cfg, "x")) == {"rows equal to the input's"}
    assert failed(check_embeddings([_shard(tmp_path / "long.parquet", 10, 8, 2.0)], 10, 8, True, cfg, "x")) == {
        "vector norms in range"}
    assert failed(check_embeddings([_shard(tmp_path / "zero.parquet", 10, 8, 0.0)], 10, 8, False, cfg, "x")) == {
        "vector norms in range"}
    inf = tmp_path / "inf.parquet"
    v = np.ones((4, 8), np.float32)
    v[2, 3] = np.inf
    pq.write_table(pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), 8)}), inf)
    report = check_embeddings([inf], 4, 8, False, cfg, "x")
    assert failed(report) == {"no NaN or Inf"}
    assert report.failures[0].where == "inf.parquet row 2"


def test_int8_is_refused_below_the_agreement_threshold_and_reported_above_it(corpus_lake, tiny_model):
    lake, catalog, corpus = corpus_lake
    strict = EmbedConfig(threads=1, quantize="int8", int8_sample=64, int8_min_mean_cosine=1.0, int8_min_cosine=1.0)
    with pytest.raises(Int8Refused, match=r"mean cosine [01]\.\d{6} \(threshold 1\.0\)"):
        run_embed(tiny_model, corpus, "int8_docs", strict, lake, catalog)
    assert lake.versions("embeddings", "int8_docs") == []
    lenient = strict.model_copy(update={"int8_min_mean_cosine": 0.5, "int8_min_cosine": 0.0})
    result = run_embed(tiny_model, corpus, "int8_docs", lenient, lake, catalog)
    agreement = result.stats["int8"]
    assert agreement["sample"] == 64 and 0.5 <= agreement["min_cosine"] <= agreement["mean_cosine"] <= 1.0
    assert agreement["min_cosine"] < 1.0  # int8 is not float32
    fp32 = run_embed(tiny_model, corpus, "int8_docs", EmbedConfig(threads=1), lake, catalog)
    assert fp32.dataset.fingerprint != result.dataset.fingerprint



def test_int8_reuses_the_agreement_sample_for_the_first_shard_and_matches_a_fresh_int8_encode(corpus_lake, tiny_model,
                                                                                            monkeypatch):
    from bertplat.embed.encoder import Encoder, read_model_spec

    lake, catalog, corpus = corpus_lake
    cfg = EmbedConfig(threads=1, quantize="int8", int8_sample=64, shard_rows=128, store_text=True,
                      int8_min_mean_cosine=0.5, int8_min_cosine=0.0)
    calls: list[int] = []
    encode = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, texts: calls.append(len(texts)) or encode(self, texts))
    result = run_embed(tiny_model, corpus, "int8_reuse", cfg, lake, catalog)
    monkeypatch.undo()
    # fp32 and int8 on the 64-text sample, then the first shard's other 64 rows, then the shards of 128 and 44
    assert calls == [64, 64, 64, 128, 44]
    table = pa.concat_tables(pq.read_table(f) for f in sorted(result.dataset.path.glob("part-*.parquet")))
    want = Encoder.from_config(read_model_spec(Path(tiny_model)), cfg).encode(table.column("text").to_pylist())
    got = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    assert np.allclose(got, want, atol=1e-5), "a reused or fresh int8 row differs from the int8 encoder's"

RESUMABLE = """
import sys
from bertplat.embed import EmbedConfig, run_embed
from bertplat.lake import Lake
lake = Lake(sys.argv[1])
corpus = lake.resolve("corpus", "big")
run_embed(sys.argv[2], corpus, "resumed", EmbedConfig(threads=1, shard_rows=32), lake)
"""


@pytest.mark.slow
def test_a_killed_run_resumes_at_its_first_unfinished_shard(tmp_path, minilm_dir):
    lake, catalog, corpus = make_corpus(tmp_path, "big", n=320)
    work = lake.data_dir / "work" / "embed"
    script = tmp_path / "embed.py"
    script.write_text(RESUMABLE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(lake.data_dir), str(minilm_dir)], env=env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(list(work.glob("*/shard-*.parquet"))) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = sorted(work.glob("*/shard-*.parquet"))
    assert len(done) >= 2 and lake.versions("embeddings", "resumed") == []  # nothing half-written is visible
    before = {p.name: p.stat().st_mtime_ns for p in done}

    cfg = EmbedConfig(threads=1, shard_rows=32)
    result = run_embed(minilm_dir, corpus, "resumed", cfg, lake, catalog)
    assert result.stats["shards_resumed"] == len(before)
    assert result.stats["rows_embedded"] == 320 - 32 * len(before)
    assert not work.joinpath(f"resumed-{result.dataset.fingerprint}").exists()  # cleaned after the commit

    fresh = run_embed(minilm_dir, corpus, "resumed", cfg, make_corpus(tmp_path / "other", "big", n=320)[0])
    read = lambda h: vectors_of(pa.concat_tables(pq.read_table(p) for p in sorted(h.path.glob("part-*"))))  # noqa: E731
    assert fresh.dataset.fingerprint == result.dataset.fingerprint
    np.testing.assert_allclose(read(result.dataset), read(fresh.dataset), atol=1e-6)


@pytest.mark.slow
def test_a_task_dataset_text_column_is_embedded_per_split(tmp_path, shared_data, tiny_model):
    from bertplat.catalog import Catalog
    from bertplat.lake import Lake
    from bertplat.tasks.spec import TasksOptions, TaskSpec
    from bertplat.tasks.stage import run_tasks

    lake = Lake(str(tmp_path / "data"))
    catalog = Catalog(tmp_path / "data" / "catalog.duckdb", lake)
    spec = TaskSpec.from_yaml(REPO / "configs/tasks/mrpc.yaml")
    task = run_tasks(spec, lake, catalog, root=shared_data / "tasks", options=TasksOptions(limit=50)).dataset
    cfg = EmbedConfig(threads=1, splits=("train", "validation"), text_column="text_pair")
    result = run_embed(tiny_model, task, "mrpc_b", cfg, lake, catalog)
    _, rows = catalog.fetch("SELECT count(*), count(DISTINCT task_id), bool_and(e.text = t.text_pair) "
                            "FROM embeddings_mrpc_b e JOIN task_mrpc t ON t.id = e.task_id")
    assert rows == [(100, 100, True)] and result.stats["rows"] == 100
    with pytest.raises(ValueError, match="no column 'sentence'"):
        run_embed(tiny_model, task, "mrpc_x", cfg.model_copy(update={"text_column": "sentence"}), lake, catalog)
    with pytest.raises(ValueError, match=r"100 row\(s\) have no 'question' \(first: id 'train-0000001'\)"):
        run_embed(tiny_model, task, "mrpc_x", cfg.model_copy(update={"text_column": "question"}), lake, catalog)


def test_a_model_reference_resolves_as_fine_tuning_resolves_it(corpus_lake, tiny_model):
    """NAME[@FINGERPRINT] under <data_dir>/models goes through bertplat.finetune.evaluate.resolve_model."""
    import shutil

    lake, catalog, corpus = corpus_lake
    exported = lake.data_dir / "models" / "tinyref" / "0123456789abcdef"
    shutil.copytree(tiny_model, exported)
    (exported / "_manifest.json").write_text(json.dumps({"kind": "model", "name": "tinyref"}))
    by_ref = run_embed("tinyref", corpus, "by_ref", EmbedConfig(threads=1), lake, catalog)
    by_dir = run_embed(tiny_model, corpus, "by_ref", EmbedConfig(threads=1), lake, catalog)
    assert by_dir.reused and by_dir.dataset == by_ref.dataset  # the same weights: the same version
    m = json.loads((by_ref.dataset.path / "_manifest.json").read_text())["model"]
    assert m["ref"] == "tinyref" and Path(m["path"]) == exported.resolve()
    with pytest.raises(ValueError, match="neither a model directory, a registered model"):
        run_embed("no_such_model", corpus, "by_ref", EmbedConfig(threads=1), lake, catalog)
