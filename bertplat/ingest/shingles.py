"""MinHash shingles in one compiled pass (numba): the words, shingles and bin minima of ``neardup.sketch``.

The numpy version takes several 8-byte temporaries per byte of text (byte classes, a prefix hash, the
powers of the hash's prime) and ``np.minimum.at``. This loop reads each lower-cased byte once and gives
the same words, the same 64-bit shingle hashes and the same signatures, bit for bit: the numpy version
lives on in ``tests/ingest/test_shingles.py`` as the definition the tests compare it with.
"""

from __future__ import annotations

import numba
import numpy as np

from bertplat.ingest.neardup import _MIX, _P


@numba.njit(cache=True, nogil=True)
def shingle_pass(data, offsets, m, k, bits):     # pragma: no cover - compiled
    """Words of each lower-cased UTF-8 text (runs of ASCII letters and digits or non-CJK non-ASCII bytes; a
    CJK character, lead byte 0xE3-0xE9, is a word of its own), the polynomial hash of each word's bytes
    (sum of b[j] * P**(j - start)), the shingles of ``m`` consecutive words (a text of fewer words is one
    shingle), their final mix and bin (the top ``bits`` bits, or modulo ``k`` when ``bits`` is 0).

    Returns (sig: (n, k) bin minima, 2**64-1 where empty; shingle hashes; their documents; words per text)."""
    n = len(offsets) - 1
    sig = np.full((n, k), np.iinfo(np.uint64).max, np.uint64)
    count = np.zeros(n, np.int64)
    total = offsets[n] - offsets[0]
    words = np.empty(total + 1, np.uint64)
    sh_out = np.empty(total + 1, np.uint64)
    sh_doc = np.empty(total + 1, np.int64)
    s_n = 0
    inv_k = 1.0 / k
    for d in range(n):
        j, end = offsets[d], offsets[d + 1]
        w = 0
        while j < end:
            b = data[j]
            if 0xE3 <= b <= 0xE9:                    # a CJK character: a word of its 3 bytes
                stop = min(j + 3, end)
                h = np.uint64(0)
                pw = np.uint64(1)
                while j < stop:
                    h += np.uint64(data[j]) * pw
                    pw *= _P
                    j += 1
                words[w] = h
                w += 1
            elif (48 <= b <= 57) or (97 <= b <= 122) or b >= 128:
                h = np.uint64(0)
                pw = np.uint64(1)
                while j < end:
                    b = data[j]
                    if not ((48 <= b <= 57) or (97 <= b <= 122) or b >= 128) or 0xE3 <= b <= 0xE9:
                        break
                    h += np.uint64(b) * pw
                    pw *= _P
                    j += 1
                words[w] = h
                w += 1
            else:
                j += 1
        count[d] = w
        if w == 0:
            continue
        for i in range(w - m + 1 if w >= m else 1):
            sh = np.uint64(0)
            for t in range(min(m, w)):
                sh = (sh ^ words[i + t]) * _MIX
            sh = (sh ^ (sh >> np.uint64(29))) * _MIX
            if bits > 0:
                bin_ = np.int64(sh >> np.uint64(64 - bits))
            else:                                    # (sh >> 32) % k, by a float reciprocal, corrected
                x = np.int64(sh >> np.uint64(32))
                bin_ = x - np.int64(x * inv_k) * k
                if bin_ < 0:
                    bin_ += k
                elif bin_ >= k:
                    bin_ -= k
            value = sh & np.uint64(0xFFFFFFFF)
            if value < sig[d, bin_]:
                sig[d, bin_] = value
            sh_out[s_n] = sh
            sh_doc[s_n] = d
            s_n += 1
    return sig, sh_out[:s_n], sh_doc[:s_n], count


@numba.njit(cache=True, nogil=True)
def densify(sig, has_words):     # pragma: no cover - compiled
    """uint32 signatures from the bin minima: an empty bin takes the nearest non-empty bin to its right
    (circularly) plus its distance times 0x632BE5AB (mod 2**32); a text without words gets all 0xFFFFFFFF.
    The same values as ``neardup``'s pointer-jumping numpy version."""
    n, k = sig.shape
    empty = np.iinfo(np.uint64).max
    out = np.empty((n, k), np.uint32)
    for d in range(n):
        if not has_words[d]:
            out[d, :] = 0xFFFFFFFF
            continue
        nearest = -1                  # the first non-empty bin at or after bin 0, for the wrap-around
        for b in range(k):
            if sig[d, b] != empty:
                nearest = b
                break
        if nearest < 0:
            out[d, :] = 0xFFFFFFFF
            continue
        src = nearest + k             # the nearest non-empty bin right of the current one, unwrapped
        for b in range(k - 1, -1, -1):
            if sig[d, b] != empty:
                src = b
                out[d, b] = np.uint32(sig[d, b] & np.uint64(0xFFFFFFFF))
            else:
                dist = np.uint64(src - b)
                out[d, b] = np.uint32((sig[d, src % k] + dist * np.uint64(0x632BE5AB)) & np.uint64(0xFFFFFFFF))
    return out


@numba.njit(cache=True, nogil=True)
def distinct_sorted(values, doc, n, limit):     # pragma: no cover - compiled
    """Each document's sorted distinct values, for the documents with at most ``limit`` of them (counted with
    repeats); ``doc`` ascends. Returns (offsets, values, small)."""
    counts = np.zeros(n, np.int64)
    for i in range(len(doc)):
        counts[doc[i]] += 1
    small = counts <= limit
    offsets = np.zeros(n + 1, np.int32)
    out = np.empty(len(values), np.uint32)
    o = 0
    i = 0
    for d in range(n):
        start = i
        i += counts[d]
        if small[d] and i > start:
            part = np.sort(values[start:i])
            out[o] = part[0]
            o += 1
            for t in range(1, len(part)):
                if part[t] != part[t - 1]:
                    out[o] = part[t]
                    o += 1
        offsets[d + 1] = o
    return offsets, out[:o], small
