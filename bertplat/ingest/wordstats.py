"""The word statistics of the quality filters in one compiled pass over a batch's UTF-8 bytes (numba).

Gopher's word rules (word count, mean word length, non-letter share, top and duplicate n-gram shares)
read every word of every document. Built from Arrow kernels they take about ten passes over the
text (split, lengths, lower-casing, hash encodings, a regex), and the filters took 40% of an ingest
with all of them on (4.6 of 11.2 s). Here one loop decodes each document's code points once, splits
the words, measures them and hashes their lower-cased forms, and a second loop counts the word
n-grams of each document in a small hash table of its own.

The results equal the Arrow definitions they replace, code point by code point, because the
tables below are built by running those Arrow kernels over every code point of the Basic
Multilingual Plane: whitespace as ``utf8_split_whitespace`` splits, non-letters and CJK characters by
quality's RE2 patterns, lower case as ``utf8_lower``. A document holding a code point above
U+FFFF (emoji, rare CJK) is marked, and the caller measures it with the Arrow path instead.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bertplat.ingest.quality import _CJK, _NON_LETTER, MAX_N, WordStats
from bertplat.ingest.text import string_buffers

BMP = 0x10000


def _utf8_array(cps: np.ndarray, prefix: bytes = b"", suffix: bytes = b"") -> pa.StringArray:
    """A string array of ``prefix + chr(cp) + suffix`` for each code point, built from one encoded string
    (no Python object per code point: the tables cost a worker 20 MB less)."""
    text = "".join(map(chr, cps.tolist())).encode("utf-8")
    width = np.where(cps < 0x80, 1, np.where(cps < 0x800, 2, 3))
    ends = np.cumsum(width)
    char = np.frombuffer(text, np.uint8)
    size = width + len(prefix) + len(suffix)
    offsets = np.concatenate(([0], np.cumsum(size))).astype(np.int32)
    data = np.empty(offsets[-1], np.uint8)
    starts = offsets[:-1]
    for i, b in enumerate(prefix):
        data[starts + i] = b
    for k in range(3):                         # the code point's bytes
        has = width > k
        data[starts[has] + len(prefix) + k] = char[ends[has] - width[has] + k]
    for i, b in enumerate(suffix):
        data[starts + len(prefix) + width + i] = b
    return pa.StringArray.from_buffers(len(cps), pa.py_buffer(offsets), pa.py_buffer(data))


@functools.cache
def tables() -> tuple[np.ndarray, np.ndarray]:
    """(class bits: SPACE, NON_LETTER, CJK; lower case) of each BMP code point, from the Arrow kernels themselves.
    Surrogates are never decoded from valid UTF-8; they get the values of a plain letter."""
    cps = np.arange(BMP, dtype=np.int64)
    valid = (cps < 0xD800) | (cps > 0xDFFF)
    cps = np.where(valid, cps, ord("a"))
    space = np.zeros(BMP, bool)
    non_letter = np.zeros(BMP, bool)
    cjk = np.zeros(BMP, bool)
    lower = np.zeros(BMP, np.int32)
    for lo in range(0, BMP, 8192):     # in chunks: the temporaries stay small (a worker keeps what it freed)
        part = cps[lo:lo + 8192]
        split = pc.utf8_split_whitespace(_utf8_array(part, b"a", b"b"))
        space[lo:lo + 8192] = np.asarray(pc.list_value_length(split)) != 1
        single = _utf8_array(part)
        non_letter[lo:lo + 8192] = np.asarray(pc.count_substring_regex(single, pattern=_NON_LETTER)) > 0
        cjk[lo:lo + 8192] = np.asarray(pc.count_substring_regex(single, pattern=_CJK)) > 0
        lowered = pc.utf8_lower(single)
        if not (np.asarray(pc.utf8_length(lowered)) == 1).all():   # pragma: no cover - utf8proc maps 1:1
            raise RuntimeError("utf8_lower changed the length of a code point; the word hashes need a 1:1 map")
        data = lowered.buffers()[2].to_pybytes()[:np.frombuffer(lowered.buffers()[1], np.int32)[len(lowered)]]
        lower[lo:lo + 8192] = np.frombuffer(data.decode("utf-8").encode("utf-32-le"), np.uint32)
    space &= valid
    non_letter &= valid
    classes = (space * SPACE | non_letter * NON_LETTER | cjk * CJK).astype(np.uint8)
    return classes, lower


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(x):     # pragma: no cover - compiled; splitmix64's finaliser
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


SPACE, NON_LETTER, CJK = 1, 2, 4       # bits of the code point classes


@numba.njit(cache=True, nogil=True)
def _words(data, offsets, classes, lower):     # pragma: no cover - compiled
    """Per document: words (a CJK character counts as one), words without CJK characters and their
    characters, characters outside whitespace, non-letters, whether it holds a code point above the BMP,
    and its first word; per word: characters and the hash of the lower-cased word."""
    n = len(offsets) - 1
    bound = offsets[n] - offsets[0] + 1      # a word takes a byte at least
    wchars = np.empty(bound, np.int32)
    whash = np.empty(bound, np.uint64)
    first = np.zeros(n + 1, np.int64)
    per_doc = np.zeros((n, 5), np.float64)
    astral = np.zeros(n, np.bool_)
    w = 0
    fnv = np.uint64(0x100000001B3)
    basis = np.uint64(0xCBF29CE484222325)
    for d in range(n):
        first[d] = w
        j = offsets[d]
        end = offsets[d + 1]
        h = basis
        chars = 0       # of the current word
        cjk = 0
        words = 0.0
        plain = 0.0
        plain_chars = 0.0
        non_space = 0.0
        other = 0.0
        while j <= end:
            if j < end:
                b = data[j]
                if b < 0x80:
                    cp = np.int64(b)
                    j += 1
                elif b < 0xE0:
                    cp = ((np.int64(b) & 0x1F) << 6) | (np.int64(data[j + 1]) & 0x3F)
                    j += 2
                elif b < 0xF0:
                    cp = ((np.int64(b) & 0x0F) << 12) | ((np.int64(data[j + 1]) & 0x3F) << 6) \
                        | (np.int64(data[j + 2]) & 0x3F)
                    j += 3
                else:
                    astral[d] = True
                    cp = 0x61        # taken as a letter; the caller measures this document again
                    j += 4
                c = classes[cp]
            else:
                j += 1
                c = SPACE            # the end of the text ends its last word
            if c & NON_LETTER:       # a vertical tab is both: RE2's \s leaves it out
                other += 1
            if c & SPACE:
                if chars:
                    wchars[w] = chars
                    whash[w] = _mix(h)
                    w += 1
                    non_space += chars
                    if cjk:
                        words += cjk
                    else:
                        words += 1
                        plain += 1
                        plain_chars += chars
                    chars = 0
                    cjk = 0
                    h = basis
                continue
            if c & CJK:
                cjk += 1
            chars += 1
            h = (h ^ np.uint64(lower[cp])) * fnv
        per_doc[d, 0] = words
        per_doc[d, 1] = plain
        per_doc[d, 2] = plain_chars
        per_doc[d, 3] = non_space
        per_doc[d, 4] = other
    first[n] = w
    return per_doc, astral, first, wchars[:w], whash[:w]


@numba.njit(cache=True, nogil=True)
def _ngrams(first, wchars, whash, sizes, top_n, dup_n):     # pragma: no cover - compiled
    """Gopher's shares per document: top[d, n] (word characters of the most frequent repeated n-gram, counted
    at every occurrence) and dup[d, n] (word characters inside repeated n-grams), both over all word characters.

    Only the smallest n is counted at every position: an n-gram occurring twice or more has both its
    (n-1)-grams (at its start and one word on) occurring twice or more, so a larger n is counted at
    those positions only."""
    n_docs = len(first) - 1
    top = np.zeros((n_docs, len(top_n)))      # the width is an argument: a cached kernel freezes globals
    dup = np.zeros((n_docs, len(top_n)))
    if len(sizes) == 0:
        return top, dup
    smallest, largest = sizes[0], sizes[-1]
    longest = 1
    for d in range(n_docs):
        longest = max(longest, first[d + 1] - first[d])
    size = 1
    while size < 2 * longest + 2:
        size *= 2
    table = np.zeros((size, 2), np.uint64)      # key, count: one cache line holds both
    key = np.zeros(longest, np.uint64)
    cand = np.zeros(longest, np.int32)          # 32-bit: a book's million words take 8 MB less each
    slot = np.zeros(longest, np.int32)
    rep = np.zeros(longest + 1, np.bool_)
    cs = np.zeros(longest + 1, np.float64)
    golden = np.uint64(0x9E3779B97F4A7C15)
    for d in range(n_docs):
        a = first[d]
        m = first[d + 1] - a
        if m == 0:
            continue
        total = 0.0
        for i in range(m):
            cs[i] = total
            total += wchars[a + i]
            key[i] = whash[a + i]
            cand[i] = np.int32(i)
        cs[m] = total
        total = max(total, 1.0)
        nc = m
        for n in range(1, largest + 1):
            if n > 1:
                k = 0
                for c in range(nc):
                    i = cand[c]
                    if i + n - 1 >= m:
                        continue
                    if n - 1 >= smallest and not (rep[i] and rep[i + 1]):
                        continue
                    cand[k] = np.int32(i)
                    key[i] = _mix((key[i] * golden) ^ whash[a + i + n - 1])   # not symmetric: "a b" != "b a"
                    k += 1
                nc = k
            if n < smallest:
                continue
            for i in range(m + 1):
                rep[i] = False
            if nc == 0:
                continue
            tsize = 1
            while tsize < 2 * nc:
                tsize *= 2
            mask = tsize - 1
            for s in range(tsize):
                table[s, 1] = 0
            for c in range(nc):                         # count every key, and remember its slot
                x = key[cand[c]]
                s = np.int64(x & np.uint64(mask))
                while table[s, 1] != 0 and table[s, 0] != x:
                    s = (s + 1) & mask
                table[s, 0] = x
                table[s, 1] += np.uint64(1)
                slot[c] = np.int32(s)
            best = 0.0
            covered = 0.0
            prev_end = 0
            for c in range(nc):
                count = table[slot[c], 1]
                if count > 1:
                    i = cand[c]
                    rep[i] = True
                    best = max(best, count * (cs[i + n] - cs[i]))
                    covered += cs[i + n] - cs[max(i, prev_end)]
                    prev_end = i + n
            if top_n[n]:
                top[d, n] = best / total
            if dup_n[n]:
                dup[d, n] = covered / total
    return top, dup


def word_stats(arr: pa.StringArray, top_sizes=(), dup_sizes=()) -> tuple[WordStats, np.ndarray]:
    """Word statistics of every text, and the mask of the texts holding a code point above U+FFFF, whose
    statistics the caller must take from the Arrow path."""
    classes, lower = tables()
    data, offsets = string_buffers(arr)
    per_doc, astral, first, wchars, whash = _words(data, offsets, classes, lower)
    sizes = np.array(sorted({*top_sizes, *dup_sizes}), np.int64)
    top_n = np.zeros(MAX_N + 1, np.bool_)
    dup_n = np.zeros(MAX_N + 1, np.bool_)
    top_n[list(top_sizes)] = True
    dup_n[list(dup_sizes)] = True
    top, dup = _ngrams(first, wchars, whash, sizes, top_n, dup_n)
    return WordStats(*per_doc.T.copy(), top, dup), astral


@numba.njit(cache=True, nogil=True, inline="always")
def _at(data, j, end):     # pragma: no cover - compiled
    """(code point, bytes) at data[j], (-1, 0) at end."""
    if j >= end:
        return -1, 0
    b = data[j]
    if b < 0x80:
        return np.int64(b), 1
    if b < 0xE0:
        return ((np.int64(b) & 0x1F) << 6) | (np.int64(data[j + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((np.int64(b) & 0x0F) << 12) | ((np.int64(data[j + 1]) & 0x3F) << 6) | (np.int64(data[j + 2]) & 0x3F), 3
    return np.int64(BMP), 4      # above the BMP: none of the pattern's characters


@numba.njit(cache=True, nogil=True)
def _mojibake(data, offsets, classes):     # pragma: no cover - compiled
    """Per text, the matches of quality's ``_MOJIBAKE``, counted as RE2 counts them (left to right, no overlap):
    U+FFFD; "?" before or after a CJK character; Â or Ã before U+0080-U+00BF; "â€". Only "?" and the lead bytes
    from 0xC3 up begin a match, so every other byte is stepped over one at a time (continuation bytes too)."""
    n = len(offsets) - 1
    counts = np.zeros(n, np.int64)
    for d in range(n):
        j = offsets[d]
        end = offsets[d + 1]
        while j < end:
            b = data[j]
            if b != 0x3F and b < 0xC3:
                j += 1
                continue
            c, w = _at(data, j, end)
            nxt, nw = _at(data, j + w, end)
            if c == 0xFFFD:
                counts[d] += 1
            elif nxt >= 0 and ((c == 0x3F and nxt < BMP and classes[nxt] & CJK)
                               or (c < BMP and classes[c] & CJK and nxt == 0x3F)
                               or ((c == 0xC2 or c == 0xC3) and 0x80 <= nxt <= 0xBF)
                               or (c == 0xE2 and nxt == 0x20AC)):
                counts[d] += 1
                j += nw                         # the pair is one match: the next one starts after it
            j += w
    return counts


def mojibake_counts(arr: pa.StringArray) -> np.ndarray:
    """``pc.count_substring_regex(arr, pattern=quality._MOJIBAKE)`` in one scan."""
    return _mojibake(*string_buffers(arr), tables()[0])


@numba.njit(cache=True, nogil=True)
def _lines(data, offsets, end_chars):     # pragma: no cover - compiled
    """Per text, over its non-empty lines: lines, lines whose last code point is not in ``end_chars`` (sorted),
    lines equal to an earlier line of the text, and the characters of those and of all lines. Equal lines
    are found by a hash table of the text's lines (hashing a few of their bytes) and confirmed byte by byte."""
    n = len(offsets) - 1
    out = np.zeros((5, n), np.float64)
    most = 1
    for d in range(n):
        lines = 1
        for j in range(offsets[d], offsets[d + 1]):
            if data[j] == 0x0A:
                lines += 1
        most = max(most, lines)
    size = 1
    while size < 2 * most:
        size *= 2
    starts = np.empty(size, np.int64)
    ends = np.empty(size, np.int64)
    hashes = np.empty(size, np.uint64)
    fnv = np.uint64(0x100000001B3)
    for d in range(n):
        lines = 1
        for j in range(offsets[d], offsets[d + 1]):
            if data[j] == 0x0A:
                lines += 1
        tsize = 1
        while tsize < 2 * lines:
            tsize *= 2
        mask = np.uint64(tsize - 1)
        starts[:tsize] = -1
        s = offsets[d]
        end = offsets[d + 1]
        while s <= end:
            e = s
            chars = 0
            while e < end and data[e] != 0x0A:
                chars += (data[e] & 0xC0) != 0x80
                e += 1
            if chars:
                # the hash only sorts lines into slots: the length and up to 8 bytes at each end and the middle
                h = np.uint64(e - s)
                for q in (s, (s + e) // 2, e - 8):
                    for r in range(max(q, s), min(q + 8, e)):
                        h = (h ^ np.uint64(data[r])) * fnv
                out[0, d] += 1
                out[4, d] += chars
                k = e - 1                       # the last code point
                while (data[k] & 0xC0) == 0x80:
                    k -= 1
                last, _ = _at(data, k, e)
                i = np.searchsorted(end_chars, last)
                if i >= len(end_chars) or end_chars[i] != last:
                    out[1, d] += 1
                h = _mix(h)
                slot = h & mask
                while True:
                    t = np.int64(slot)
                    if starts[t] < 0:
                        starts[t] = s
                        ends[t] = e
                        hashes[t] = h
                        break
                    if hashes[t] == h and ends[t] - starts[t] == e - s:
                        same = True
                        for q in range(e - s):
                            if data[starts[t] + q] != data[s + q]:
                                same = False
                                break
                        if same:
                            out[2, d] += 1
                            out[3, d] += chars
                            break
                    slot = (slot + np.uint64(1)) & mask
            s = e + 1
    return out


def line_counts(arr: pa.StringArray, end_chars: str) -> tuple[np.ndarray, ...]:
    """(lines, lines without an ending in ``end_chars``, repeated lines, their characters, all characters) per text."""
    data, offsets = string_buffers(arr)
    out = _lines(data, offsets, np.array(sorted(map(ord, end_chars)), np.int64))
    return out[0].astype(np.int64), out[1].astype(np.int64), out[2].astype(np.int64), out[3], out[4]
