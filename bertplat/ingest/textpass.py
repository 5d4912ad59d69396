"""Whitespace clean-up and sentence segmentation in compiled passes over a batch's UTF-8 bytes (numba).

``text`` defines both as chains of Arrow kernels: the clean-up is six RE2 and literal passes, the
segmentation about ten (two for the abbreviations, one for the ends, the split, the trim and the
restoring of the protected marks), each copying every text. With every quality filter on they were
a third of an ingest. Here one loop per step decodes each document once and applies the rules of
``text``'s module docstring as a scan, and the sentences come out as byte slices of the text, so no
text is copied more than once.

The results equal the Arrow definitions (``text.arrow_clean_whitespace``, ``text.arrow_split_sentences``),
which the tests hold them to. The character classes are built by running the Arrow kernels and
``text``'s own patterns over every code point of the Basic Multilingual Plane (no code point above it
is whitespace, a stop or a quote). The regex semantics that matter are reproduced: RE2's ``\\b`` is
an ASCII word boundary, its replacements scan left to right without overlap (so ``1．2．3`` protects the
first full stop only, as the RE2 pass does), and Python's leftmost-first scan finds the nested quotations.
One difference is deliberate: a private-use character already in a text stays itself (the Arrow path
uses private-use characters as marks, and gave such a character back as a full stop).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bertplat.ingest import text as T
from bertplat.ingest.text import string_buffers
from bertplat.ingest.wordstats import BMP, _at, _utf8_array

# bits of the code point classes
TRIM, REMOVE, EXOTIC, EN_STOP, EN_CLOSE, EN_OPEN, ZH_STOP, ZH_CLOSE, NESTED_STOP, DIGIT = (1 << k for k in range(10))
MAY_END = 1 << 10     # a stop of either language, or an ellipsis
ELLIPSIS, FW_DOT, SPACE, NL, DOT = 0x2026, 0xFF0E, 0x20, 0x0A, 0x2E


def _has(cps: np.ndarray, pattern: str) -> np.ndarray:
    return np.asarray(pc.count_substring_regex(_utf8_array(cps), pattern=pattern)) > 0


@functools.cache
def classes() -> np.ndarray:
    """The class bits of each BMP code point, from Arrow's trim and ``text``'s patterns and character sets."""
    cps = np.arange(BMP, dtype=np.int64)
    valid = (cps < 0xD800) | (cps > 0xDFFF)
    cps = np.where(valid, cps, ord("a"))
    out = np.zeros(BMP, np.uint16)
    for lo in range(0, BMP, 8192):
        part = cps[lo:lo + 8192]
        trimmed = pc.utf8_trim_whitespace(_utf8_array(part, b"", b"a"))
        bits = (np.asarray(pc.utf8_length(trimmed)) == 1) * TRIM
        bits |= _has(part, T._REMOVE) * REMOVE
        bits |= _has(part, f"[{T._EXOTIC}]") * EXOTIC
        out[lo:lo + 8192] = bits
    sets = ((".!?", EN_STOP), ("\"'\u201d\u2019)]", EN_CLOSE), ("\"'\u201c\u2018([", EN_OPEN),
            (T.ZH_STOPS, ZH_STOP), (T._ZH_CLOSERS, ZH_CLOSE), (T._STOP_CHARS, NESTED_STOP),
            ("0123456789" + "".join(chr(0xFF10 + i) for i in range(10)), DIGIT), (".!?\u2026" + T.ZH_STOPS, MAY_END))
    for chars, bit in sets:
        out[[ord(c) for c in chars]] |= bit
    out[~valid] = 0
    return out


def _words(alternation: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The alternatives of one of ``text``'s abbreviation patterns (``[A-Z]`` as the 26 letters) as (code points,
    lengths, groups): sorted by the length of their last run of letters, the words whose run is r letters long
    are ``groups[r]:groups[r + 1]``."""
    words = []
    for alt in alternation.split("|"):
        if alt == "[A-Z]":
            words += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
        else:
            words.append(alt.replace("\\.", "."))
    tail = [len(w) - max(w.rfind("."), w.rfind(" ")) - 1 for w in words]
    words = [w for _, w in sorted(zip(tail, words))]
    if max(tail) >= MAX_RUN:   # pragma: no cover - the patterns are ours
        raise ValueError(f"an abbreviation's last run of letters is {max(tail)} long; raise MAX_RUN")
    table = np.zeros((len(words), max(map(len, words))), np.int32)
    for i, w in enumerate(words):
        table[i, :len(w)] = [ord(c) for c in w]
    groups = np.searchsorted(np.sort(tail), np.arange(MAX_RUN + 2)).astype(np.int64)
    return table, np.array([len(w) for w in words], np.int32), groups


MAX_RUN = 10   # longer runs of letters before a dot are no abbreviation


@functools.cache
def abbreviations() -> tuple[np.ndarray, ...]:
    """(words, lengths) for: the dots protected before a space; before a space and a digit; before a space
    and a capital."""
    return (*_words(f"{T._ABBREVIATIONS}|{T._ALWAYS}"), *_words(T._LOWER_BEFORE_NUMBER),
            *_words(T._NAMES_RE[T._NAMES_RE.index("(") + 1:T._NAMES_RE.index(")")]))


# the outer opening and closing marks and the inner opening mark of each kind of nested quotation
_QUOTES = tuple(np.array([ord(p[k]) for p in T._NESTED_PAIRS], np.int32) for k in range(3))


@numba.njit(cache=True, nogil=True, inline="always")
def _decode(data, j, end, cp, pos):     # pragma: no cover - compiled
    """The code points of data[j:end] into cp (U+10000 for any above the BMP: no rule looks at those), their byte
    positions into pos (pos[m] = end); returns m, and whether a code point from U+2000 up in the BMP is among
    them (the quotes and full-width stops are)."""
    m = 0
    wide = False
    while j < end:
        c, w = _at(data, j, end)
        pos[m] = j
        cp[m] = c
        wide = wide or (w == 3 and data[j] >= 0xE2)
        j += w
        m += 1
    pos[m] = end
    return m, wide


@numba.njit(cache=True, nogil=True, inline="always")
def _cls(cls, c):     # pragma: no cover - compiled
    return cls[c] if c < 0x10000 else np.uint16(0)


@numba.njit(cache=True, nogil=True)
def _clean(data, offsets, unwrap, cls):     # pragma: no cover - compiled
    """``text.arrow_clean_whitespace`` of every text, then ``text.unwrap`` where ``unwrap`` says: controls out,
    runs of spaces to one, spaces beside a newline out, at most two newlines in a row (with unwrap one
    becomes a space), the ends trimmed."""
    n = len(offsets) - 1
    out = np.empty(max(offsets[n] - offsets[0], 1), np.uint8)
    out_offsets = np.zeros(n + 1, np.int64)
    o = 0
    for d in range(n):
        j = offsets[d]
        end = offsets[d + 1]
        start = o
        space = False
        newlines = 0
        while j < end:
            b = data[j]
            if 0x20 < b < 0x7F and not (newlines or space):   # the common case first: a printable ASCII byte
                out[o] = b
                o += 1
                j += 1
                continue
            if b == SPACE:
                space = True
                j += 1
                continue
            if b == NL:
                newlines += 1
                space = False          # a space before a newline goes
                j += 1
                continue
            if 0x20 < b < 0x7F:        # a printable ASCII byte
                o = _pending(out, o, newlines, space, unwrap[d])
                newlines = 0
                space = False
                out[o] = b
                o += 1
                j += 1
                continue
            k = j
            c, w = _at(data, j, end)
            j += w
            bits = _cls(cls, c)
            if bits & REMOVE:
                continue
            if bits & EXOTIC:
                space = True
                continue
            o = _pending(out, o, newlines, space, unwrap[d])
            newlines = 0
            space = False
            while k < j:
                out[o] = data[k]
                o += 1
                k += 1
        # trailing spaces and newlines were never written; trim the other whitespace at both ends
        o = _trim_end(out, start, o, cls)
        first = _trim_start(out, start, o, cls)
        if first > start:
            size = o - first
            out[start:start + size] = out[first:o].copy()
            o = start + size
        out_offsets[d + 1] = o
    return out[:o], out_offsets


@numba.njit(cache=True, nogil=True, inline="always")
def _pending(out, o, newlines, space, unwrap):     # pragma: no cover - compiled
    """Write what the whitespace before a character becomes: the newlines (at most two; with unwrap one is a
    space), else one space; a space beside a newline goes."""
    if newlines:
        if unwrap and newlines == 1:
            out[o] = SPACE
            o += 1
        else:
            for _ in range(min(newlines, 2)):
                out[o] = NL
                o += 1
    elif space:
        out[o] = SPACE
        o += 1
    return o


@numba.njit(cache=True, nogil=True, inline="always")
def _trim_start(buf, j, end, cls):     # pragma: no cover - compiled
    """The first byte of buf[j:end] after its leading whitespace (TRIM)."""
    while j < end:
        c, w = _at(buf, j, end)
        if not _cls(cls, c) & TRIM:
            return j
        j += w
    return j


@numba.njit(cache=True, nogil=True, inline="always")
def _trim_end(buf, start, j, cls):     # pragma: no cover - compiled
    """The end of buf[start:j] without its trailing whitespace (TRIM)."""
    while j > start:
        k = j - 1
        while k > start and (buf[k] & 0xC0) == 0x80:
            k -= 1
        b = buf[k]
        if b < 0x80:
            c = np.int32(b)
        elif b < 0xE0:
            c = ((np.int32(b) & 0x1F) << 6) | (np.int32(buf[k + 1]) & 0x3F)
        elif b < 0xF0:
            c = ((np.int32(b) & 0x0F) << 12) | ((np.int32(buf[k + 1]) & 0x3F) << 6) | (np.int32(buf[k + 2]) & 0x3F)
        else:
            return j
        if not cls[c] & TRIM:
            return j
        j = k
    return j


@numba.njit(cache=True, nogil=True, inline="always")
def _word_char(c):     # pragma: no cover - compiled; RE2's \w (ASCII)
    return (0x30 <= c <= 0x39) or (0x41 <= c <= 0x5A) or (0x61 <= c <= 0x7A) or c == 0x5F


@numba.njit(cache=True, nogil=True, inline="always")
def _word_before(cp, i, lo, words, lengths, groups):     # pragma: no cover - compiled
    """Whether one of ``words`` ends just before cp[i], starts at lo or later and has a word boundary before it
    (only the words whose last run of letters is as long as the run before cp[i] can)."""
    run = 0
    while run < MAX_RUN and i - run > 0 and _word_char(cp[i - run - 1]):
        run += 1
    for w in range(groups[run], groups[run + 1]):
        size = lengths[w]
        q = i - size
        if q < lo or (q > 0 and _word_char(cp[q - 1])):
            continue
        same = True
        for k in range(size):
            if cp[q + k] != words[w, k]:
                same = False
                break
        if same:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _sentences(data, offsets, segment, cls, words1, len1, groups1, words_num, len_num, groups_num,
               words_cap, len_cap, groups_cap,
               nested_open, nested_close, nested_inner, nested_max):     # pragma: no cover - compiled
    """The sentences (``text``'s rules) as one buffer and its offsets, and the number of sentences of each text."""
    n = len(offsets) - 1
    longest = 1
    for d in range(n):
        longest = max(longest, offsets[d + 1] - offsets[d] + 1)
    cp = np.empty(longest, np.int32)
    pos = np.empty(longest + 1, np.int64)
    quiet = np.zeros(longest, np.bool_)        # a stop that ends no sentence: protected or hidden
    cut = np.zeros(longest + 1, np.bool_)      # a sentence ends before this code point
    out = np.empty(max(offsets[n] - offsets[0], 1), np.uint8)   # the sentences never hold more than the texts
    bounds = np.zeros(n + 1024, np.int64)      # the sentences' offsets into out, grown as needed
    counts = np.zeros(n, np.int64)
    s = 0
    o = 0
    for d in range(n):
        m, wide = _decode(data, offsets[d], offsets[d + 1], cp, pos)
        quiet[:m] = False
        cut[:m + 1] = False
        if segment:
            _protect_abbreviations(cp, m, quiet, words1, len1, groups1, words_num, len_num, groups_num, words_cap,
                                   len_cap, groups_cap)
            if wide:
                _protect_decimals(cp, m, cls, quiet)
                _hide_nested(cp, m, cls, quiet, nested_open, nested_close, nested_inner, nested_max)
            _ends(cp, m, cls, quiet, cut)
        a = 0
        for i in range(m + 1):
            if i < m and cp[i] != NL and not cut[i]:
                continue
            first = _trim_start(data, pos[a], pos[i], cls)
            last = _trim_end(data, first, pos[i], cls)
            if last > first:
                for k in range(first, last):
                    out[o] = data[k]
                    o += 1
                s += 1
                if s == len(bounds):
                    grown = np.zeros(2 * len(bounds), np.int64)
                    grown[:s] = bounds[:s]
                    bounds = grown
                bounds[s] = o
                counts[d] += 1
            a = i + 1 if i < m and cp[i] == NL else i
    return out[:o], bounds[:s + 1], counts


@numba.njit(cache=True, nogil=True)
def _protect_abbreviations(cp, m, quiet, words1, len1, groups1, words_num, len_num, groups_num, words_cap, len_cap,
                           groups_cap):     # pragma: no cover - compiled
    """Abbreviations and initials: a dot before a space after one of words1 (RE2's first pass); else, with
    matches not overlapping (its second pass), before a space and a digit after one of words_num, or before
    a space and a capital after one of words_cap. One scan does both: the first pass decides each dot by
    the word before it alone."""
    taken = 0
    for i in range(1, m - 1):
        if cp[i] != DOT or cp[i + 1] != SPACE:
            continue
        if _word_before(cp, i, 0, words1, len1, groups1):
            quiet[i] = True
        elif i + 2 < m:
            nxt = cp[i + 2]
            if (0x30 <= nxt <= 0x39 and _word_before(cp, i, taken, words_num, len_num, groups_num)) \
                    or (0x41 <= nxt <= 0x5A and _word_before(cp, i, taken, words_cap, len_cap, groups_cap)):
                quiet[i] = True
                taken = i + 3


@numba.njit(cache=True, nogil=True)
def _protect_decimals(cp, m, cls, quiet):     # pragma: no cover - compiled
    """A full-width full stop between digits (no overlap: "1．2．3" protects the first only)."""
    taken = 0
    for i in range(1, m - 1):
        if cp[i] == FW_DOT and i - 1 >= taken and _cls(cls, cp[i - 1]) & DIGIT and _cls(cls, cp[i + 1]) & DIGIT:
            quiet[i] = True
            taken = i + 2


@numba.njit(cache=True, nogil=True)
def _hide_nested(cp, m, cls, quiet, nested_open, nested_close, nested_inner, nested_max):     # pragma: no cover - compiled
    """The stops inside a quotation that holds a nested one, but for those that end it (Python's leftmost scan
    of ``text._NESTED_RE``)."""
    i = 0
    while i < m:
        if cp[i] < 0x201C:     # below every opening quote
            i += 1
            continue
        kind = -1
        for k in range(len(nested_open)):
            if cp[i] == nested_open[k]:
                kind = k
        if kind < 0:
            i += 1
            continue
        o, c, inner = nested_open[kind], nested_close[kind], nested_inner[kind]
        t = i + 1
        seen = False
        while t < m and cp[t] != o and cp[t] != c and cp[t] != NL:
            seen = seen or cp[t] == inner
            t += 1
        if not (seen and t < m and cp[t] == c):
            i += 1
            continue
        if t + 1 - i <= nested_max:
            u = t
            while u > i and _cls(cls, cp[u - 1]) & NESTED_STOP and not quiet[u - 1]:
                u -= 1
            for k in range(i, u):
                if _cls(cls, cp[k]) & NESTED_STOP:
                    quiet[k] = True
        i = t + 1


@numba.njit(cache=True, nogil=True)
def _ends(cp, m, cls, quiet, cut):     # pragma: no cover - compiled
    """Sentence ends, scanning left to right as the RE2 pass does."""
    j = 0
    while j < m:
        bits = _cls(cls, cp[j])
        if not bits & MAY_END:
            j += 1
            continue
        if bits & EN_STOP and not quiet[j]:
            k = j
            while k < m and _cls(cls, cp[k]) & EN_STOP and not quiet[k]:
                k += 1
            close = k
            while close < m and _cls(cls, cp[close]) & EN_CLOSE:
                close += 1
            after = close
            while after < m and cp[after] == SPACE:
                after += 1
            end = -1
            if after > close and after < m:
                x = cp[after]
                if (0x30 <= x <= 0x39) or (0x41 <= x <= 0x5A):
                    end = after + 1
                elif _cls(cls, x) & EN_OPEN and after + 1 < m and ((0x30 <= cp[after + 1] <= 0x39)
                                                                    or (0x41 <= cp[after + 1] <= 0x5A)):
                    end = after + 2
            if end < 0:
                j = k
                continue
            cut[close] = True
            j = end
            continue
        if (bits & ZH_STOP and not quiet[j]) or _ellipsis(cp, j, m, quiet):
            k = j
            while k < m:
                if _cls(cls, cp[k]) & ZH_STOP and not quiet[k]:
                    k += 1
                elif _ellipsis(cp, k, m, quiet):
                    k += 2
                else:
                    break
            while k < m and _cls(cls, cp[k]) & ZH_CLOSE:
                k += 1
            cut[k] = True
            j = k
            continue
        j += 1



@numba.njit(cache=True, nogil=True, inline="always")
def _ellipsis(cp, j, m, quiet):     # pragma: no cover - compiled
    return j + 1 < m and cp[j] == ELLIPSIS and cp[j + 1] == ELLIPSIS and not quiet[j] and not quiet[j + 1]


def clean_whitespace(arr: pa.StringArray, unwrap: bool | np.ndarray = False) -> pa.StringArray:
    """``text.arrow_clean_whitespace(arr, unwrap)`` in one pass; ``unwrap`` may be a mask of the texts to unwrap."""
    data, offsets = string_buffers(arr)
    flags = np.broadcast_to(np.asarray(unwrap, np.bool_), (len(arr),)).copy()
    out, out_offsets = _clean(data, offsets, flags, classes())
    return _strings(out, out_offsets)


def split_sentences(arr: pa.StringArray, segment: bool = True) -> pa.ListArray:
    """``text.arrow_split_sentences(arr, segment)``: each text's sentences as byte slices of it."""
    data, offsets = string_buffers(arr)
    out, out_offsets, counts = _sentences(data, offsets, segment, classes(), *abbreviations(), *_QUOTES,
                                          T.NESTED_QUOTE_MAX)
    list_offsets = np.zeros(len(arr) + 1, np.int32)
    np.cumsum(counts, out=list_offsets[1:])
    return pa.ListArray.from_arrays(pa.array(list_offsets), _strings(out, out_offsets))


def _strings(data: np.ndarray, offsets: np.ndarray) -> pa.StringArray:
    n = len(offsets) - 1
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data))
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


# bytes the punctuation tidy looks at: RE2's \s ([\t\n\f\r ]), opening and closing brackets, [,;:], and what a
# space before is removed from ([,;:.!?)\]])
T_WS, T_OPEN, T_CLOSE, T_PUNCT, T_AFTER_SPACE, T_SPACE = 1, 2, 4, 8, 16, 32


def _tidy_bytes() -> np.ndarray:
    table = np.zeros(256, np.uint8)
    for chars, bit in (("\t\n\f\r ", T_WS), ("([", T_OPEN), (")]", T_CLOSE), (",;:", T_PUNCT),
                       (",;:.!?)]", T_AFTER_SPACE), (" ", T_SPACE)):
        table[[ord(c) for c in chars]] |= bit
    return table


@numba.njit(cache=True, nogil=True, inline="always")
def _skip(src, j, end, table, bit):     # pragma: no cover - compiled
    """The first byte of src[j:end] past a run of bytes of the class ``bit``."""
    while j < end and table[src[j]] & bit:
        j += 1
    return j


@numba.njit(cache=True, nogil=True, inline="always")
def _unspace(buf, o, floor, table, bit):     # pragma: no cover - compiled
    """The end of buf[floor:o] without its trailing bytes of the class ``bit``."""
    while o > floor and table[buf[o - 1]] & bit:
        o -= 1
    return o


@numba.njit(cache=True, nogil=True)
def _tidy(data, offsets, table):     # pragma: no cover - compiled
    """``cleanup.arrow_tidy_punctuation`` of every text: its four RE2 passes in order, each a left-to-right scan
    without overlapping matches. Every byte they look at is ASCII, so the scans go byte by byte; a match that
    begins with a run of whitespace is found at the byte after the run, and the run taken back from the output
    (it starts after the previous match, whose last byte is no whitespace)."""
    n = len(offsets) - 1
    longest = 1
    for d in range(n):
        longest = max(longest, offsets[d + 1] - offsets[d])
    a = np.empty(longest, np.uint8)      # the passes go data -> a -> b -> a -> out
    b = np.empty(longest, np.uint8)
    out = np.empty(max(offsets[n] - offsets[0], 1), np.uint8)
    out_offsets = np.zeros(n + 1, np.int64)
    o_final = 0
    for d in range(n):
        # 1. \s*[(\[]\s*[,;:]*\s*[)\]] -> "": empty brackets and the whitespace before them
        end = offsets[d + 1]
        o = 0
        j = offsets[d]
        while j < end:
            x = data[j]
            if table[x] & T_OPEN:
                e = _skip(data, _skip(data, _skip(data, j + 1, end, table, T_WS), end, table, T_PUNCT), end,
                          table, T_WS)
                if e < end and table[data[e]] & T_CLOSE:
                    o = _unspace(a, o, 0, table, T_WS)
                    j = e + 1
                    continue
            a[o] = x
            o += 1
            j += 1
        # 2. ([(\[])\s*[,;:]+\s* -> \1: a bracket opening on punctuation
        m = o
        o = 0
        j = 0
        while j < m:
            x = a[j]
            b[o] = x
            o += 1
            j += 1
            if table[x] & T_OPEN:
                p = _skip(a, j, m, table, T_WS)
                q = _skip(a, p, m, table, T_PUNCT)
                if q > p:
                    j = _skip(a, q, m, table, T_WS)
        # 3. ([,;:])(?:\s*[,;:])+ -> \1: runs of punctuation, whitespace between, to the first
        m = o
        o = 0
        j = 0
        while j < m:
            x = b[j]
            a[o] = x
            o += 1
            j += 1
            if table[x] & T_PUNCT:
                while True:
                    k = _skip(b, j, m, table, T_WS)
                    if k < m and table[b[k]] & T_PUNCT:
                        j = k + 1
                    else:
                        break
        # 4. " +([,;:.!?)\]])" -> \1: spaces before punctuation
        first = o_final
        for j in range(o):
            x = a[j]
            if table[x] & T_AFTER_SPACE:
                o_final = _unspace(out, o_final, first, table, T_SPACE)
            out[o_final] = x
            o_final += 1
        out_offsets[d + 1] = o_final
    return out[:o_final], out_offsets


_TIDY_BYTES = _tidy_bytes()


def tidy_punctuation(arr: pa.StringArray) -> pa.StringArray:
    """``cleanup.arrow_tidy_punctuation(arr)`` in one scan per pass."""
    return _strings(*_tidy(*string_buffers(arr), _TIDY_BYTES))
