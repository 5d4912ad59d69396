"""Similarity queries over an embeddings dataset: top-k in DuckDB, near-duplicate pairs as a dataset.

Top-k is one DuckDB scan over the version's Parquet files (``array_inner_product`` on normalised
vectors, ``array_cosine_similarity`` otherwise), on a connection of its own that reads only those
files, so it works on more vectors than fit in memory and never writes to the catalog. There is no
HNSW index: DuckDB's ``vss`` extension has no package for the DuckDB we pin (2.0.1; PyPI's
``duckdb-extension-vss`` stops at 1.5.5) and ``INSTALL vss`` needs the network.

Near-duplicates are all pairs with cosine >= threshold, found block by block (two shards in memory at
a time, a matrix product per pair of blocks) and written as the embeddings dataset ``<name>_dups``
with table ``pairs`` (view ``pairs_<name>_dups``).
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bertplat.catalog import Catalog
from bertplat.embed.config import EmbedConfig
from bertplat.embed.encoder import Encoder
from bertplat.embed.gate import vectors_of
from bertplat.embed.stage import KIND, embeddings_manifest, model_spec_of
from bertplat.lake import DatasetHandle, Lake, check_name, fingerprint, read_manifest
from bertplat.validation import GateReport


def _parquet_glob(handle: DatasetHandle) -> str:
    return str(handle.path / "part-*.parquet")


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def query_encoder(handle: DatasetHandle, threads: int | None = None) -> Encoder:
    """An encoder that embeds queries as the version's rows were embedded: the same model, pooling, length and
    quantisation, on CPU in float32 (the precision that bfloat16 rows, from a GPU or the CPU's mixed path,
    approximate)."""
    m = embeddings_manifest(handle)
    # onednn off: packing the weights (about 70 ms for MiniLM) costs more than it saves on a query or two
    cfg = EmbedConfig.model_validate({**m["config"], "threads": threads, "device": "cpu", "onednn": False,
                                      "dtype": "float32"})
    return Encoder.from_config(model_spec_of(handle), cfg)


def top_k(handle: DatasetHandle, query_vector: np.ndarray, k: int = 10,
          connection: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyRelation:
    """The ``k`` rows most similar to ``query_vector``, best first, with a ``score`` column (cosine)."""
    m = read_manifest(handle)
    dim, normalized = int(m["counts"]["dim"]), bool(m["model"]["normalize"])
    q = np.asarray(query_vector, np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise ValueError(f"the query vector has {q.shape[0]} dimensions, {handle.ref()} has {dim}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    con = connection or duckdb.connect()
    score = "array_inner_product" if normalized else "array_cosine_similarity"
    if normalized:
        q = q / max(float(np.linalg.norm(q)), 1e-12)
    keep = [c for c in pq.read_schema(next(handle.path.glob("part-*.parquet"))).names if c != "vector"]
    cols = ", ".join(f'"{c}"' for c in keep)
    sql = (f"SELECT {cols}, {score}(vector::FLOAT[{dim}], $q::FLOAT[{dim}]) AS score "
           f"FROM read_parquet({_quote(_parquet_glob(handle))}) ORDER BY score DESC LIMIT {int(k)}")
    return con.sql(sql, params={"q": q.tolist()})


def search(lake: Lake, ref: str, query: str, k: int = 10, encoder: Encoder | None = None,
           connection: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyRelation:
    """Embed ``query`` with the version's own model and return its top-k as a DuckDB relation."""
    handle = lake.resolve(KIND, ref)
    encoder = encoder or query_encoder(handle)
    return top_k(handle, encoder.encode([query])[0], k, connection)


# ---- near-duplicates ----------------------------------------------------------------------------
PAIRS_SCHEMA_VERSION = 1


def _load_block(path: Path) -> tuple[np.ndarray, torch.Tensor]:
    table = pq.read_table(path, columns=["id", "vector"])
    v = torch.from_numpy(np.array(vectors_of(table)))  # a writable copy
    return table.column("id").to_numpy(), torch.nn.functional.normalize(v, dim=1)


def near_duplicate_pairs(shards: list[Path], threshold: float, block_rows: int = 4096) -> pa.Table:
    """Every pair (id_a < id_b) whose cosine is at least ``threshold``: id_a, id_b, score."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a cosine; use a value in [-1, 1] (0.95: near-duplicates)")
    out_a, out_b, out_s = [], [], []
    for i, path_i in enumerate(shards):
        ids_i, v_i = _load_block(path_i)
        for path_j in shards[i:]:
            ids_j, v_j = (ids_i, v_i) if path_j == path_i else _load_block(path_j)
            for s in range(0, len(ids_i), block_rows):
                sim = v_i[s:s + block_rows] @ v_j.T  # (b, n_j)
                a, b = torch.nonzero(sim >= threshold, as_tuple=True)
                ga, gb = ids_i[s + a.numpy()], ids_j[b.numpy()]
                keep = ga < gb
                out_a.append(ga[keep])
                out_b.append(gb[keep])
                out_s.append(sim[a, b].numpy()[keep])

    def cat(xs: list[np.ndarray], dt) -> np.ndarray:
        return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

    table = pa.table({"id_a": cat(out_a, np.int64), "id_b": cat(out_b, np.int64),
                      "score": cat(out_s, np.float32)})
    return table.sort_by([("id_a", "ascending"), ("id_b", "ascending")])


def run_dedup(lake: Lake, ref: str, threshold: float = 0.95, name: str | None = None,
              catalog: Catalog | None = None) -> tuple[DatasetHandle, int]:
    """Write the near-duplicate pairs of embeddings ``ref`` as the dataset ``name`` (default ``<name>_dups``).

    Each pair carries both rows' keys and texts (when stored), so ``SELECT * FROM pairs_<name>_dups``
    reads without a join."""
    handle = lake.resolve(KIND, ref)
    name = check_name(name or f"{handle.name}_dups")
    config_json = f'{{"threshold":{float(threshold)!r}}}'
    fp = fingerprint(KIND, config_json, [f"embeddings:{handle.fingerprint}", "pairs"], PAIRS_SCHEMA_VERSION)
    if (found := lake.find(KIND, name, fp)) is not None:
        if catalog is not None:
            catalog.register(found)
        return found, int(read_manifest(found)["counts"]["pairs"])
    start = time.monotonic()
    shards = sorted(handle.path.glob("part-*.parquet"))
    pairs = near_duplicate_pairs(shards, threshold)
    con = duckdb.connect()
    con.register("pairs", pairs)
    keep = [c for c in pq.read_schema(shards[0]).names if c not in ("id", "vector", "label")]
    side = lambda s: ", ".join(f'{s}."{c}" AS "{c}_{"a" if s == "ea" else "b"}"' for c in keep)  # noqa: E731
    rows = con.sql(
        f"SELECT p.id_a, p.id_b, p.score, {side('ea')}, {side('eb')} FROM pairs p "
        f"JOIN read_parquet({_quote(_parquet_glob(handle))}) ea ON ea.id = p.id_a "
        f"JOIN read_parquet({_quote(_parquet_glob(handle))}) eb ON eb.id = p.id_b "
        "ORDER BY p.score DESC, p.id_a, p.id_b").arrow().read_all()
    report = GateReport(stage="dedup", dataset=f"{KIND}/{name}@{fp}")
    report.add("every pair joined to its rows", len(rows) == len(pairs), observed=len(rows), expected=len(pairs))
    with lake.writer(KIND, name, fp) as writer:
        pq.write_table(rows, writer.path("pairs.parquet"), compression="zstd")
        out = writer.commit({
            "schema_version": PAIRS_SCHEMA_VERSION,
            "config": {"threshold": threshold},
            "parents": [handle.model_dump(include={"kind", "name", "fingerprint"})],
            "inputs": [{"embeddings": handle.ref()}],
            "counts": {"pairs": len(rows), "rows_scanned": int(read_manifest(handle)["counts"]["rows"])},
            "tables": {"pairs": "pairs.parquet"},
            "validation": report.model_dump(mode="json"),
            "stats": {"seconds": round(time.monotonic() - start, 3)},
        }, catalog)
    return out, len(rows)
