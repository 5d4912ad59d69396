"""Near-duplicate removal: MinHash signatures over word shingles, LSH banding, verification.

Signatures are one-permutation MinHash (Li, Owen & Zhang 2012) with rotation densification
(Shrivastava & Li 2014): each shingle is hashed once to 64 bits, its top bits pick one of
``num_perm`` bins and each bin keeps its minimum, so a batch costs O(shingles) numpy work instead of
O(shingles x permutations). Two documents agree in a bin with probability equal to the Jaccard
similarity of their shingle sets. Shingles are ``shingle_words`` consecutive lower-cased words
(each CJK character is a word), hashed from the UTF-8 bytes with a vectorised polynomial hash.

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

# Part of the ingest fingerprint when near-dedup is on. 2: short documents decided on exact Jaccard.
NEAR_DEDUP_ALGORITHM = 2

_P = np.uint64(0x100000001B3)          # FNV prime: odd, so invertible modulo 2**64
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


def _token_bounds(data: np.ndarray, doc_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte offsets of the words of lower-cased UTF-8 ``data``: runs of ASCII letters and
    digits or non-CJK non-ASCII bytes; every CJK character (lead byte 0xE3-0xE9) is a word of its own."""
    alnum = ((data >= 48) & (data <= 57)) | ((data >= 97) & (data <= 122)) | (data >= 128)
    lead_cjk = (data >= 0xE3) & (data <= 0xE9)
    cont = (data >= 0x80) & (data < 0xC0)
    # a CJK character's continuation bytes belong to it: mark its 3 bytes as a separate token
    in_cjk = lead_cjk.copy()
    in_cjk[1:] |= lead_cjk[:-1] & cont[1:]
    in_cjk[2:] |= lead_cjk[:-2] & cont[2:]
    word = alnum & ~in_cjk
    first = np.zeros(len(data) + 1, dtype=bool)     # a document's first byte starts a word (texts abut)
    first[doc_starts] = True
    starts = np.flatnonzero(word & (~np.concatenate(([False], word[:-1])) | first[:-1]))
    ends = np.flatnonzero(word & (~np.concatenate((word[1:], [False])) | first[1:])) + 1
    cjk = np.flatnonzero(lead_cjk)
    return np.concatenate((starts, cjk)), np.concatenate((ends, np.minimum(cjk + 3, len(data))))


def signatures(arr: pa.StringArray, cfg: NearDedup) -> np.ndarray:
    """(len(arr), num_perm) uint32 MinHash signatures; a text with no word gets all 0xFFFFFFFF."""
    return sketch(arr, cfg)[0]


def sketch(arr: pa.StringArray, cfg: NearDedup) -> tuple[np.ndarray, pa.ListArray]:
    """The MinHash signatures of ``arr`` and, for each text with at most ``exact_shingles`` distinct
    shingles, its sorted distinct 32-bit shingle hashes (null for longer texts), so that pairs of short
    texts are verified on their exact Jaccard similarity instead of the estimate (see the module
    docstring)."""
    n, k = len(arr), cfg.num_perm
    sig = np.full((n, k), np.iinfo(np.uint64).max, dtype=np.uint64)
    if n == 0:
        return sig.astype(np.uint32), _shingle_sets(np.empty(0, np.uint32), np.empty(0, np.int64), 0, 0)
    low = pc.utf8_lower(arr)
    offsets = np.frombuffer(low.buffers()[1], dtype=np.int32)[low.offset: low.offset + n + 1].astype(np.int64)
    data = np.frombuffer(low.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]] if low.buffers()[2] else np.empty(0, np.uint8)
    offsets = offsets - offsets[0]
    starts, ends = _token_bounds(data, offsets[:-1])
    if len(starts) == 0:
        return (np.full((n, k), 0xFFFFFFFF, dtype=np.uint32),
                _shingle_sets(np.empty(0, np.uint32), np.empty(0, np.int64), n, cfg.exact_shingles))
    if not (starts[1:] > starts[:-1]).all():       # CJK characters come after the other words
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], ends[order]
    powers, inv = _powers(len(data) + 1)
    with np.errstate(over="ignore"):
        # prefix hash S[i] = sum_{j<i} b[j] * P^j; a word's hash is (S[e] - S[s]) * P^-s (all mod 2**64)
        prefix = np.zeros(len(data) + 1, dtype=np.uint64)
        np.cumsum(data.astype(np.uint64) * powers[:-1], out=prefix[1:])
        words = (prefix[ends] - prefix[starts]) * inv[starts]
        doc = np.searchsorted(offsets, starts, side="right") - 1
        m = cfg.shingle_words
        count = np.bincount(doc, minlength=n)
        # shingles: m consecutive words of one document; a document shorter than m is one shingle
        sh_n = max(len(words) - m + 1, 0)
        sh = np.zeros(sh_n, dtype=np.uint64)
        for j in range(m):
            sh = (sh ^ words[j:j + sh_n]) * _MIX
        sh_doc = doc[:sh_n]
        valid = sh_doc == doc[m - 1:m - 1 + sh_n] if sh_n else np.zeros(0, bool)
        sh, sh_doc = sh[valid], sh_doc[valid]
        short = np.flatnonzero((count > 0) & (count < m))
        if len(short):
            first = np.searchsorted(doc, short)
            extra = np.zeros(len(short), dtype=np.uint64)
            for j in range(m):
                idx = np.minimum(first + j, len(words) - 1)
                extra = np.where(j < count[short], (extra ^ words[idx]) * _MIX, extra)
            sh, sh_doc = np.concatenate((sh, extra)), np.concatenate((sh_doc, short))
        sh = (sh ^ (sh >> np.uint64(29))) * _MIX            # final mix: top bits well spread
        bits = int(np.log2(k)) if (k & (k - 1)) == 0 else None
        bins = (sh >> np.uint64(64 - bits)).astype(np.int64) if bits else ((sh >> np.uint64(32)) % np.uint64(k)).astype(np.int64)
        value = sh & np.uint64(0xFFFFFFFF)
        flat = sig.reshape(-1)
        np.minimum.at(flat, sh_doc * k + bins, value)
        folded = ((sh >> np.uint64(32)) ^ value).astype(np.uint32)
    return _densify(sig, count > 0), _shingle_sets(folded, sh_doc, n, cfg.exact_shingles)


def _shingle_sets(values: np.ndarray, doc: np.ndarray, n: int, limit: int) -> pa.ListArray:
    """list<uint32> of each document's sorted distinct shingle hashes; null where it has more than
    ``limit`` shingles (counted with repeats, so only short documents are sorted)."""
    per_doc = np.bincount(doc, minlength=n)
    small = per_doc <= limit
    pick = small[doc]
    values, doc = values[pick], doc[pick]
    order = np.lexsort((values, doc))
    values, doc = values[order], doc[order]
    distinct = np.ones(len(values), dtype=bool)
    distinct[1:] = (values[1:] != values[:-1]) | (doc[1:] != doc[:-1])
    values, doc = values[distinct], doc[distinct]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(doc, minlength=n), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint32()), mask=pa.array(~small))


_POWERS: list[np.ndarray] = []


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i (mod 2**64) for i < size, kept between batches (a batch's cumprod over every
    byte cost a third of the signature time)."""
    if not _POWERS or len(_POWERS[0]) < size:
        grown = max(size, 2 * len(_POWERS[0]) if _POWERS else 0)
        _POWERS[:] = [_geometric(_P, grown), _geometric(_inverse(_P), grown)]
    return _POWERS[0][:size], _POWERS[1][:size]


def _geometric(p: np.uint64, size: int) -> np.ndarray:
    """p**i mod 2**64 for i < size, by doubling: each step multiplies the known block by p**len (a
    vectorised multiply, where a cumprod is one sequential multiply per element)."""
    out = np.empty(max(size, 1), dtype=np.uint64)
    out[0] = 1
    known = 1
    with np.errstate(over="ignore"):
        step = np.uint64(p)
        while known < size:
            take = min(known, size - known)
            np.multiply(out[:take], step, out=out[known:known + take])
            known += take
            step = step * step
    return out[:size]


def _inverse(p: np.uint64) -> np.uint64:
    """Multiplicative inverse of an odd number modulo 2**64 (Newton's iteration)."""
    x = int(p)
    inv = x
    for _ in range(6):
        inv = (inv * (2 - x * inv)) % (1 << 64)
    return np.uint64(inv)


def _densify(sig: np.ndarray, has_words: np.ndarray) -> np.ndarray:
    """Fill empty bins from the nearest non-empty bin to the right (circularly), offset by the
    distance, so that empty bins of two documents agree exactly when their sources do."""
    empty_value = np.iinfo(np.uint64).max
    k = sig.shape[1]
    out = (sig & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    rows = np.flatnonzero((sig == empty_value).any(axis=1))     # only these need filling
    part = sig[rows]
    dist = np.zeros(part.shape, dtype=np.uint64)
    empty = part == empty_value
    shift = 1
    while empty.any() and shift < k:
        src = np.roll(part, -shift, axis=1)
        src_dist = np.roll(dist, -shift, axis=1) + np.uint64(shift)
        take = empty & (src != empty_value)
        part = np.where(take, src, part)
        dist = np.where(take, src_dist, dist)
        empty = part == empty_value
        shift *= 2
    with np.errstate(over="ignore"):
        out[rows] = ((part + dist * np.uint64(0x632BE5AB)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    out[~has_words] = 0xFFFFFFFF
    return out


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
