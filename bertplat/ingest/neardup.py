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
whose estimated Jaccard reaches ``threshold`` is removed, pointing at the earliest document of its
group (union-find over the verified pairs, in input order).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    n, k = len(arr), cfg.num_perm
    sig = np.full((n, k), np.iinfo(np.uint64).max, dtype=np.uint64)
    if n == 0:
        return sig.astype(np.uint32)
    low = pc.utf8_lower(arr)
    offsets = np.frombuffer(low.buffers()[1], dtype=np.int32)[low.offset: low.offset + n + 1].astype(np.int64)
    data = np.frombuffer(low.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]] if low.buffers()[2] else np.empty(0, np.uint8)
    offsets = offsets - offsets[0]
    starts, ends = _token_bounds(data, offsets[:-1])
    if len(starts) == 0:
        return np.full((n, k), 0xFFFFFFFF, dtype=np.uint32)
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
    return _densify(sig, count > 0)


_POWERS: list[np.ndarray] = []


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i (mod 2**64) for i < size, kept between batches (a batch's cumprod over every
    byte cost a third of the signature time)."""
    if not _POWERS or len(_POWERS[0]) < size:
        grown = max(size, 2 * len(_POWERS[0]) if _POWERS else 0)
        powers = np.empty(grown, dtype=np.uint64)
        inv = np.empty(grown, dtype=np.uint64)
        powers[0] = inv[0] = 1
        with np.errstate(over="ignore"):
            np.cumprod(np.full(grown - 1, _P, dtype=np.uint64), out=powers[1:])
            np.cumprod(np.full(grown - 1, _inverse(_P), dtype=np.uint64), out=inv[1:])
        _POWERS[:] = [powers, inv]
    return _POWERS[0][:size], _POWERS[1][:size]


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
    dist = np.zeros(sig.shape, dtype=np.uint64)
    empty = sig == empty_value
    shift = 1
    while empty.any() and shift < k:
        src = np.roll(sig, -shift, axis=1)
        src_dist = np.roll(dist, -shift, axis=1) + np.uint64(shift)
        take = empty & (src != empty_value)
        sig = np.where(take, src, sig)
        dist = np.where(take, src_dist, dist)
        empty = sig == empty_value
        shift *= 2
    with np.errstate(over="ignore"):
        out = ((sig + dist * np.uint64(0x632BE5AB)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
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


def find_near_duplicates(con, sig_files: list[str], cfg: NearDedup) -> list[tuple[str, str, float]]:
    """(removed doc_id, kept doc_id, estimated Jaccard) for every near-duplicate, keeping the first in
    input order (signature files sort in task order, rows in writing order). Exact duplicates
    (the same doc_id again) are skipped here: exact dedup has removed them already.

    Memory: DuckDB holds the band keys (memory-limited, spilling to disk); Python holds only the
    candidates' signatures."""
    if not sig_files:
        return []
    con.execute("""
        CREATE OR REPLACE TEMP TABLE near_docs AS
        SELECT doc_id, ord, sig, bands FROM (
            SELECT doc_id, sig, bands, row_number() OVER (ORDER BY filename, seq) AS ord
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
    rows = con.sql("SELECT d.ord, d.doc_id, d.sig FROM near_docs d JOIN near_wanted w USING (ord) "
                   "ORDER BY d.ord").to_arrow_table()
    ords = rows.column("ord").to_numpy()
    ids = rows.column("doc_id").to_pylist()
    sig = rows.column("sig").combine_chunks().flatten().to_numpy().reshape(len(ords), cfg.num_perm)
    ia, ib = np.searchsorted(ords, a), np.searchsorted(ords, b)
    est = jaccard_estimate(sig[ia], sig[ib])
    wordless = (sig == 0xFFFFFFFF).all(axis=1)     # texts without a word are nobody's near-copy
    ok = (est >= cfg.threshold) & ~wordless[ia] & ~wordless[ib]
    # union-find in input order: every group keeps its earliest document
    parent = np.arange(len(ords))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[int, float] = {}
    for x, y, e in zip(ia[ok].tolist(), ib[ok].tolist(), est[ok].tolist()):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
        best[x] = max(best.get(x, 0.0), e)
    return [(ids[x], ids[root(x)], best[x]) for x in sorted(best) if root(x) != x]
