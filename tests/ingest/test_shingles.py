"""Issue 15: the compiled MinHash pass gives the numpy version's signatures and shingle sets, bit for bit.

The numpy version below is bertplat's sketch before the compiled pass: word bounds from byte classes, a
prefix polynomial hash over every byte, shingles by shifted XOR-multiply chains, ``np.minimum.at``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.ingest.neardup import _MIX, _P, NearDedup, sketch


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




def reference_sketch(arr: pa.StringArray, cfg: NearDedup) -> tuple[np.ndarray, pa.ListArray]:
    """The numpy sketch that the compiled pass replaced (bertplat before issue 15's compiled kernels): the
    definition the kernel must equal, bit for bit."""
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

ALPHABET = list("abcxyzABCÉéß0123456789 .,;-'\n日本語中文。「」") + ["\U0001f600", "\u00a0", "\u0301"]
WORDS = ["the", "The", "cat", "sat", "on", "mat", "日本", "中文字", "Straße", "x1", "émile", "--"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=200), min_size=1, max_size=10), st.integers(0, 3),
       st.sampled_from([(5, 120), (3, 64), (1, 16), (4, 100)]))
def test_compiled_sketch_equals_the_numpy_definition(texts, start, setting):
    shingle_words, num_perm = setting
    cfg = NearDedup(threshold=0.8, shingle_words=shingle_words, num_perm=num_perm, bands=4)
    arr = pa.array(texts)[start % len(texts):]      # a slice: offsets into a shared buffer
    sig, sets = sketch(arr, cfg)
    want_sig, want_sets = reference_sketch(arr, cfg)
    assert np.array_equal(sig, want_sig)
    assert sets.to_pylist() == want_sets.to_pylist()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WORDS), max_size=300).map(" ".join), min_size=1, max_size=6))
def test_long_texts_of_repeated_words(texts):
    cfg = NearDedup(threshold=0.8)
    sig, sets = sketch(pa.array(texts), cfg)
    want_sig, want_sets = reference_sketch(pa.array(texts), cfg)
    assert np.array_equal(sig, want_sig) and sets.to_pylist() == want_sets.to_pylist()
