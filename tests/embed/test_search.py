"""Top-k in DuckDB and near-duplicate pairs, each against a numpy brute force; the CLI commands."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bertplat.embed import EmbedConfig, run_embed
from bertplat.embed.cli import embed_app
from bertplat.embed.gate import vectors_of
from bertplat.embed.search import near_duplicate_pairs, run_dedup, search, top_k
from tests.embed.conftest import make_corpus


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("search")
    lake, catalog, corpus = make_corpus(root, n=300)
    raw = run_embed(tiny_model, corpus, "raw", EmbedConfig(threads=1, shard_rows=64), lake, catalog).dataset
    unit = run_embed(tiny_model, corpus, "unit", EmbedConfig(threads=1, shard_rows=64, normalize=True),
                     lake, catalog).dataset
    return root, lake, catalog, raw, unit


def _table(handle) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(handle.path.glob("part-*.parquet")))


@pytest.mark.parametrize("dataset", ["raw", "unit"])
def test_top_k_in_duckdb_equals_a_numpy_brute_force(embedded, dataset):
    _, lake, _, raw, unit = embedded
    handle = raw if dataset == "raw" else unit
    table = _table(handle)
    v = vectors_of(table)
    q = np.random.default_rng(1).normal(size=v.shape[1]).astype(np.float32)
    cos = (v @ q) / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    order = np.argsort(-cos, kind="stable")[:10]
    got = top_k(handle, q, k=10).fetchall()
    rel = top_k(handle, q, k=10)
    ids = [r[rel.columns.index("id")] for r in got]
    scores = np.array([r[rel.columns.index("score")] for r in got])
    assert ids == table.column("id").to_numpy()[order].tolist()
    np.testing.assert_allclose(scores, cos[order], rtol=1e-4)


def test_search_embeds_the_query_with_the_datasets_own_model(embedded):
    _, lake, _, raw, _ = embedded
    table = _table(raw)
    target = table.column("text")[17].as_py()
    rel = search(lake, "raw", target, k=3)
    best = dict(zip(rel.columns, rel.fetchall()[0]))
    assert best["id"] == 17 and best["text"] == target and best["score"] == pytest.approx(1.0, abs=1e-5)


def test_near_duplicate_pairs_equal_a_brute_force_at_the_threshold(embedded):
    _, lake, catalog, _, unit = embedded
    table = _table(unit)
    v = vectors_of(table).astype(np.float64)
    sim = v @ v.T
    threshold = float(np.quantile(sim[np.triu_indices(len(v), 1)], 0.99))
    a, b = np.nonzero(np.triu(sim >= threshold, 1))
    expected = set(zip(a.tolist(), b.tolist()))
    shards = sorted(unit.path.glob("part-*.parquet"))
    assert len(shards) == 5  # the blocks cross shard boundaries
    pairs = near_duplicate_pairs(shards, threshold, block_rows=16)
    got = set(zip(pairs.column("id_a").to_pylist(), pairs.column("id_b").to_pylist()))
    # float32 products may land either side of the threshold for pairs within rounding of it
    borderline = {(i, j) for i, j in expected ^ got if abs(sim[i, j] - threshold) < 1e-5}
    assert expected ^ got == borderline and len(expected) > 100
    handle, n = run_dedup(lake, "unit", threshold, catalog=catalog)
    assert n == len(got) and handle.name == "unit_dups"
    _, rows = catalog.fetch("SELECT count(*), bool_and(id_a < id_b), bool_and(score >= ?) FROM pairs_unit_dups",
                            [threshold - 1e-6])
    assert rows == [(n, True, True)]


def test_the_cli_embeds_searches_and_dedups(embedded, tiny_model, monkeypatch):
    root, *_ = embedded
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(root / "data"))
    runner = CliRunner()
    out = runner.invoke(embed_app, ["embed", "--model", str(tiny_model), "--corpus", "small", "--name", "cli",
                                    "--unit", "sentences", "--normalize", "--threads", "1"])
    assert out.exit_code == 0, out.output
    assert "embeddings cli@" in out.output and "L2-normalised" in out.output
    out = runner.invoke(embed_app, ["search", "--embeddings", "cli", "Document 3.", "-k", "2"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1" and "Document 3." in lines[0]
    out = runner.invoke(embed_app, ["dedup", "--embeddings", "cli", "--threshold", "0.999"])
    assert out.exit_code == 0, out.output
    assert "near-duplicate pairs (cosine >= 0.999)" in out.output
    out = runner.invoke(embed_app, ["embed", "--model", str(tiny_model), "--name", "none"])
    assert out.exit_code == 2 and "exactly one of --corpus" in out.output


def test_the_cli_embeds_in_bfloat16_on_cpu_and_searches_it(embedded, tiny_model, monkeypatch):
    """--dtype bfloat16 is another version (its precision is in the fingerprint and the stats); its query is
    embedded in float32 and still finds the text itself first."""
    from bertplat.embed.encoder import bf16_mixed
    from bertplat.lake import Lake, read_manifest

    root, *_ = embedded
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(root / "data"))
    runner = CliRunner()
    args = ["embed", "--model", str(tiny_model), "--corpus", "small", "--name", "cli16", "--unit", "sentences",
            "--normalize", "--threads", "1"]
    out = runner.invoke(embed_app, [*args, "--dtype", "bfloat16"])
    assert out.exit_code == 0, out.output
    lake = Lake(root / "data")
    bf16 = lake.resolve("embeddings", "cli16")
    import torch

    mixed = bf16_mixed(torch.device("cpu"), torch.bfloat16, True)
    assert read_manifest(bf16)["stats"]["dtype"] == ("bfloat16-mixed" if mixed else "bfloat16")
    out = runner.invoke(embed_app, ["search", "--embeddings", "cli16", "Document 3.", "-k", "1"])
    assert out.exit_code == 0 and "Document 3." in out.output, out.output
    out = runner.invoke(embed_app, [*args, "--dtype", "float32"])
    assert out.exit_code == 0, out.output
    assert lake.resolve("embeddings", "cli16").fingerprint != bf16.fingerprint
    out = runner.invoke(embed_app, [*args, "--dtype", "float16"])
    assert out.exit_code != 0 and "dtype" in out.output
