"""Near-duplicate removal: MinHash signatures over word shingles, LSH banding, verification.

Signatures are one-permutation MinHash (Li, Owen & Zhang 2012) with rotation densification
(Shrivastava & Li 2014): each shingle is hashed once to 64 bits, its top bits pick one of
``num_perm`` bins and each bin keeps its minimum, so a batch costs O(shingles) work instead of
O(shingles x permutations), in one compiled pass (``bertplat.ingest.shingles``). Two documents agree in a bin with probability equal to the Jaccard
similarity of their shingle sets. Shingles are ``shingle_words`` consecutive lower-cased words
(each CJK character is a word), hashed from the UTF-8 bytes with a polynomial hash.

Workers compute the signatures of their batches (in parallel) and write, per task, the LSH band
keys and the signatures. The stage then lets DuckDB (memory-limited, spilling to disk) find the
buckets: every document that shares a band key with an earlier one becomes a candidate of the
bucket's first document; only candidates' signatures are loaded and compared, and a candidate
whose Jaccard similarity reaches ``threshold`` is removed, pointing at the earliest document of its
group (union-find over the verified pairs, in input order).

The estimate is coarse for short documents: with fewer shingles than bins most bins are filled by
densification, and stubs of a few dozen words at exact Jaccard 0.56-0.78 were estimated at 0.8 or
more (precision 0.455 on a 5,000-article sample). So workers also keep the distinct shingle hashes
of every document with at most ``exact_shingles`` shingles (bounded: no more values than a few
signatures), and a pair of two such documents is decided on its exact Jaccard similarity.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bertplat.ingest.text import string_buffers

# Part of the ingest fingerprint when near-dedup is on. 2: short documents decided on exact Jaccard.
NEAR_DEDUP_ALGORITHM = 2

_P = np.uint64(0x100000001B3)          # FNV prime: the words' polynomial hash (bertplat.ingest.shingles)
_MIX = np.uint64(0x9E3779B97F4A7C15)


class NearDedup(BaseModel):
    """Near-duplicate removal settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | None = Field(default=None, ge=0.5, le=1.0, description="Remove a document whose "
                                    "estimated Jaccard similarity to an earlier one reaches this (None: off).")
    shingle_words: int = Field(default=5, ge=1, le=32, description="Words per shingle.")
    num_perm: int = Field(default=120, ge=16, le=512, description="MinHash signature length.")
    bands: int = Field(default=20, ge=1, description="LSH bands (num_perm / bands rows each); more bands "
                       "find pairs of lower similarity as candidates.")
    exact_shingles: int = Field(default=256, ge=0, le=4096, description="Candidate pairs of documents with at "
                                "most this many shingles each are verified on their exact Jaccard similarity "
                                "(the estimate of short documents is coarse); 0: always the estimate.")

    @model_validator(mode="after")
    def _bands_divide(self):
        if self.num_perm % self.bands:
            raise ValueError(f"near_dedup.bands ({self.bands}) must divide near_dedup.num_perm ({self.num_perm})")
        return self


def signatures(arr: pa.StringArray, cfg: NearDedup) -> np.ndarray:
    """(len(arr), num_perm) uint32 MinHash signatures; a text with no word gets all 0xFFFFFFFF."""
    return sketch(arr, cfg)[0]


def sketch(arr: pa.StringArray, cfg: NearDedup) -> tuple[np.ndarray, pa.ListArray]:
    """The MinHash signatures of ``arr`` and, for each text with at most ``exact_shingles`` distinct
    shingles, its sorted distinct 32-bit shingle hashes (null for longer texts), so that pairs of short
    texts are verified on their exact Jaccard similarity instead of the estimate (see the module
    docstring). The words, shingles and bin minima come from one compiled pass (``shingles``)."""
    # numba: imported by the workers that sketch only
    from bertplat.ingest.shingles import densify, distinct_sorted, shingle_pass

    n, k = len(arr), cfg.num_perm
    if n == 0:
        return (np.full((0, k), 0xFFFFFFFF, dtype=np.uint32),
                pa.ListArray.from_arrays(pa.array([0], pa.int32()), pa.array([], pa.uint32())))
    data, offsets = string_buffers(pc.utf8_lower(arr))
    bits = int(np.log2(k)) if (k & (k - 1)) == 0 else 0
    sig, sh, sh_doc, count = shingle_pass(data, offsets, cfg.shingle_words, k, bits)
    folded = ((sh >> np.uint64(32)) ^ (sh & np.uint64(0xFFFFFFFF))).astype(np.uint32)
    offsets, values, small = distinct_sorted(folded, sh_doc, n, cfg.exact_shingles)
    sets = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint32()), mask=pa.array(~small))
    return densify(sig, count > 0), sets


def band_keys(sig: np.ndarray, bands: int) -> np.ndarray:
    """(n, bands) int64 keys: a hash of each band's rows, with the band number mixed in."""
    n, k = sig.shape
    rows = k // bands
    s = sig.astype(np.uint64).reshape(n, bands, rows)
    key = np.arange(bands, dtype=np.uint64)[None, :] * _MIX
    with np.errstate(over="ignore"):
        for r in range(rows):
            key = (key ^ s[:, :, r]) * _P
            key ^= key >> np.uint64(31)
    return key.view(np.int64)


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of agreeing signature positions, row by row."""
    return (a == b).mean(axis=1)


def find_near_duplicates(con, sig_files: list[str], cfg: NearDedup) -> list[tuple[str, str, float, bool]]:
    """(removed doc_id, kept doc_id, Jaccard, whether it is exact) for every near-duplicate, keeping the first in
    input order (signature files sort in task order, rows in writing order). Exact duplicates
    (the same doc_id again) are skipped here: exact dedup has removed them already.

    Memory: DuckDB holds the band keys (memory-limited, spilling to disk); Python holds only the
    candidates' signatures."""
    if not sig_files:
        return []
    con.execute("""
        CREATE OR REPLACE TEMP TABLE near_docs AS
        SELECT doc_id, ord, sig, bands, shingles FROM (
            SELECT doc_id, sig, bands, shingles, row_number() OVER (ORDER BY filename, seq) AS ord
            FROM read_parquet(?, filename = true))
        QUALIFY row_number() OVER (PARTITION BY doc_id ORDER BY ord) = 1
    """, [sig_files])
    pairs = con.execute("""
        WITH keys AS (SELECT ord, unnest(bands) AS key FROM near_docs),
             firsts AS (SELECT ord, min(ord) OVER (PARTITION BY key) AS first FROM keys)
        SELECT DISTINCT ord, first FROM firsts WHERE ord > first ORDER BY ord, first
    """).fetchnumpy()
    if not len(pairs["ord"]):
        return []
    a, b = pairs["ord"].astype(np.int64), pairs["first"].astype(np.int64)
    wanted = np.unique(np.concatenate((a, b)))
    con.execute("CREATE OR REPLACE TEMP TABLE near_wanted AS SELECT unnest(?::BIGINT[]) AS ord", [wanted.tolist()])
    rows = con.sql("SELECT d.ord, d.doc_id, d.sig, d.shingles FROM near_docs d JOIN near_wanted w USING (ord) "
                   "ORDER BY d.ord").to_arrow_table()
    ords = rows.column("ord").to_numpy()
    ids = rows.column("doc_id").to_pylist()
    sig = rows.column("sig").combine_chunks().flatten().to_numpy().reshape(len(ords), cfg.num_perm)
    ia, ib = np.searchsorted(ords, a), np.searchsorted(ords, b)
    est = jaccard_estimate(sig[ia], sig[ib])
    sets = rows.column("shingles").to_pylist()
    # short documents: the exact Jaccard similarity of their shingle sets replaces the estimate
    exact = np.zeros(len(est), dtype=bool)
    for j, (x, y) in enumerate(zip(ia.tolist(), ib.tolist())):
        if sets[x] is not None and sets[y] is not None:
            common = len(np.intersect1d(sets[x], sets[y], assume_unique=True))
            est[j] = common / max(len(sets[x]) + len(sets[y]) - common, 1)
            exact[j] = True
    wordless = (sig == 0xFFFFFFFF).all(axis=1)     # texts without a word are nobody's near-copy
    ok = (est >= cfg.threshold) & ~wordless[ia] & ~wordless[ib]
    # union-find in input order: every group keeps its earliest document
    parent = np.arange(len(ords))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[int, tuple[float, bool]] = {}
    for x, y, e, ex in zip(ia[ok].tolist(), ib[ok].tolist(), est[ok].tolist(), exact[ok].tolist()):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
        best[x] = max(best.get(x, (0.0, False)), (e, ex))
    return [(ids[x], ids[root(x)], *best[x]) for x in sorted(best) if root(x) != x]
