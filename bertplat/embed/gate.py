"""The embeddings gate: read back what was written and check dimension, finiteness, norms and row count.

Runs on the Parquet shards themselves (not on what the encoder meant to write), one shard at a
time, so it costs one streaming read and proves the files hold what the manifest will vouch for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertplat.embed.config import EmbedConfig
from bertplat.validation import GateReport


def vectors_of(table: pa.Table, column: str = "vector") -> np.ndarray:
    """(N, dim) float32 view of a fixed-size-list (or list) vector column."""
    col = table.column(column).combine_chunks()
    if len(col) == 0:
        return np.zeros((0, getattr(col.type, "list_size", 0)), np.float32)
    dim = col.type.list_size if pa.types.is_fixed_size_list(col.type) else len(col[0])
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(col), dim)


def shard_stats(path: Path, dim: int) -> dict:
    """Rows, dimension, non-finite rows and norm range of one shard."""
    table = pq.read_table(path, columns=["vector"])
    vtype = table.schema.field("vector").type
    found_dim = vtype.list_size if pa.types.is_fixed_size_list(vtype) else -1
    if found_dim != dim:
        return {"rows": len(table), "dim": found_dim, "nonfinite": 0, "min_norm": None, "max_norm": None}
    v = vectors_of(table)
    finite = np.isfinite(v).all(1)
    norms = np.linalg.norm(v[finite], axis=1) if finite.any() else np.zeros(0)
    return {"rows": len(table), "dim": found_dim, "nonfinite": int((~finite).sum()),
            "first_nonfinite": int(np.flatnonzero(~finite)[0]) if (~finite).any() else None,
            "min_norm": float(norms.min()) if len(norms) else None,
            "max_norm": float(norms.max()) if len(norms) else None}


def check_embeddings(shards: Sequence[Path], expected_rows: int, dim: int, normalized: bool,
                     config: EmbedConfig, dataset: str) -> GateReport:
    """The gate over every shard: dimension, no NaN/Inf, norms in range, as many rows as the input."""
    report = GateReport(stage="embed", dataset=dataset)
    stats = [(p, shard_stats(p, dim)) for p in shards]
    rows = sum(s["rows"] for _, s in stats)
    bad_dim = [(p, s) for p, s in stats if s["dim"] != dim]
    report.add("vector dimension", not bad_dim, observed=bad_dim[0][1]["dim"] if bad_dim else dim, expected=dim,
               where=bad_dim[0][0].name if bad_dim else None,
               detail="the vector column is not a fixed-size float list of the model's width" if bad_dim else "")
    nonfinite = [(p, s) for p, s in stats if s["nonfinite"]]
    report.add("no NaN or Inf", not nonfinite, observed=sum(s["nonfinite"] for _, s in nonfinite), expected=0,
               where=f"{nonfinite[0][0].name} row {nonfinite[0][1]['first_nonfinite']}" if nonfinite else None,
               detail="the model produced non-finite values: broken weights, or an overflow in a low-precision "
               "dtype (try dtype=float32)" if nonfinite else "")
    lows = [s["min_norm"] for _, s in stats if s["min_norm"] is not None]
    highs = [s["max_norm"] for _, s in stats if s["max_norm"] is not None]
    lo, hi = (min(lows), max(highs)) if lows else (None, None)
    if normalized:
        tol = config.norm_tolerance
        ok = lo is None or (abs(lo - 1) <= tol and abs(hi - 1) <= tol)
        expected = f"1 +- {tol}"
    else:
        ok = lo is None or (lo > config.min_norm and hi < config.max_norm)
        expected = f"({config.min_norm}, {config.max_norm})"
    report.add("vector norms in range", ok, observed=None if lo is None else f"[{lo:.6g}, {hi:.6g}]",
               expected=expected, detail="" if ok else "zero or exploding vectors: empty texts, or a model whose "
               "output is not what its pooling expects")
    report.add("rows equal to the input's", rows == expected_rows, observed=rows, expected=expected_rows,
               detail="" if rows == expected_rows else "shards are missing or hold extra rows; delete the work "
               "directory and run again")
    report.stats.update(rows=rows, dim=dim, min_norm=lo, max_norm=hi, shards=len(shards))
    return report
