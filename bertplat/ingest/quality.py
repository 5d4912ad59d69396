"""Heuristic document quality filters, measured on whole batches (pyarrow compute, numpy, and the compiled
word statistics of ``wordstats``).

Each filter has a threshold in ``QualityFilters`` (None: off) and a reject reason; a document that
fails is written to ``rejects_<name>`` with the measured value and the threshold, so a user can
query what a filter removed before trusting it. The rules follow Gopher (Rae et al. 2021,
appendix A: word count, mean word length, symbol share, lines without end punctuation, repeated
lines and n-grams), with one change for Chinese: every CJK character counts as a word.

Language identification (``languages``) uses py3langid, langid.py's naive Bayes model over byte n-grams
(Lui and Baldwin 2012), which ships inside its PyPI package: nothing is downloaded at run time. It reads
``language_sample_chars`` characters from the middle of each document that passed the other filters, and keeps
the document when its most probable language is one of ``languages`` with a probability of at least
``min_language_score``.

Mojibake (text decoded with the wrong code page, ``庇谑欠纸鸹啡?崛≈新罚??``) is measured as the
share of characters that are U+FFFD, a ``?`` touching a CJK character, or a UTF-8-read-as-Latin-1
pair (``Ã©``, ``â€``). Lines over ``max_mojibake_line_share`` are dropped from the text (books hold
a few garbled lines among good ones); a document over ``max_mojibake_share`` is rejected.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

QUALITY_REASONS = {
    "quality_too_few_words": "fewer words than quality.min_words (a CJK character counts as a word)",
    "quality_mean_word_length": "mean word length outside quality.mean_word_length",
    "quality_non_alpha": "share of non-space characters that are not letters over quality.max_non_alpha_share",
    "quality_no_end_punct": "share of lines not ending in punctuation over quality.max_lines_without_end_punct",
    "quality_duplicate_lines": "share of lines repeating an earlier line over quality.max_duplicate_line_share",
    "quality_duplicate_line_chars": "share of characters in repeated lines over quality.max_duplicate_line_char_share",
    "quality_top_ngram": "the most frequent n-gram covers more characters than quality.max_top_ngram_share[n]",
    "quality_duplicate_ngrams": "characters inside repeated n-grams over quality.max_duplicate_ngram_share[n]",
    "quality_mojibake": "share of garbled characters (U+FFFD, '?' in CJK text, Ã©-style pairs) over "
                        "quality.max_mojibake_share",
    "quality_mojibake_line": "a garbled line dropped from a document (the document is kept)",
    "quality_language": "identified language not in quality.languages, or its probability under "
                        "quality.min_language_score",
    "near_duplicate": "a near-copy (MinHash Jaccard estimate >= near_dedup.threshold) of an earlier document",
}

_CJK = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_MOJIBAKE = "\ufffd|\\?" + _CJK + "|" + _CJK + "\\?|[\u00c2\u00c3][\u0080-\u00bf]|\u00e2\u20ac"
_END_CHARS = ".!?;:\u3002\uff01\uff1f\uff0e\uff61\u2026\"'\u201d\u2019\u300d\u300f)]\uff09"
_END_PUNCT = "[" + _END_CHARS.replace("]", "\\]") + "]$"


# Neither a letter, a mark nor whitespace (the text is normalised: its only spaces are " " and "\n").
_NON_LETTER = "[^\\pL\\pM\\pZ\\s]"


class QualityFilters(BaseModel):
    """Thresholds of the quality filters; every one is off (None) unless set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_words: int | None = Field(default=None, ge=1, description="Reject documents with fewer words "
                                  "(whitespace tokens; each CJK character counts as one). Gopher: 50.")
    mean_word_length: tuple[float, float] | None = Field(
        default=None, description="[min, max] mean length of the words without CJK characters; documents "
        "outside are rejected (Gopher: [3, 10]). Documents with no such word pass.")
    max_non_alpha_share: float | None = Field(default=None, ge=0, le=1, description="Reject documents where more "
                                              "than this share of non-space characters are not letters.")
    max_lines_without_end_punct: float | None = Field(
        default=None, ge=0, le=1, description="Reject documents where more than this share of lines end "
        "without punctuation (menus, lists, tables).")
    max_duplicate_line_share: float | None = Field(default=None, ge=0, le=1, description="Reject documents where "
                                                   "more than this share of lines repeat an earlier line (Gopher: 0.3).")
    max_duplicate_line_char_share: float | None = Field(
        default=None, ge=0, le=1, description="Reject documents where repeated lines hold more than this share "
        "of characters (Gopher: 0.2).")
    max_top_ngram_share: dict[int, float] | None = Field(
        default=None, description="n -> share: reject documents whose most frequent word n-gram covers more "
        "than this share of word characters (Gopher: {2: 0.2, 3: 0.18, 4: 0.16}).")
    max_duplicate_ngram_share: dict[int, float] | None = Field(
        default=None, description="n -> share: reject documents where repeated word n-grams cover more than "
        "this share of word characters (Gopher: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}).")
    max_mojibake_share: float | None = Field(default=None, ge=0, le=1, description="Reject documents where more "
                                             "than this share of characters are garbled (see the module docstring).")
    max_mojibake_line_share: float | None = Field(
        default=0.02, ge=0, le=1, description="Drop lines (of 20 characters or more) where more than this share "
        "of characters are garbled; each dropped line is listed in the rejects table. None: keep them.")

    languages: tuple[str, ...] | None = Field(
        default=None, description="Keep only documents whose identified language is one of these codes (ISO 639: "
        "en, zh, de, ...; `bertplat.ingest.quality.language_codes()` lists the 140 the model knows). The model "
        "(py3langid) ships inside its PyPI package. None: no language identification.")
    min_language_score: float = Field(default=0.5, ge=0, le=1, description="With languages: the probability the "
                                      "identifier gives a kept language must reach this; shorter or mixed texts "
                                      "below it are rejected.")
    language_sample_chars: int = Field(default=500, ge=20, description="With languages: characters from the middle "
                                       "of each document that the identifier reads (its cost grows with them).")

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value):
        if value is None:
            return value
        if not value:
            raise ValueError("languages must name at least one language code, or be left out (null) to turn "
                             "language identification off")
        known = language_codes()
        unknown = [code for code in value if code not in known]
        if unknown:
            raise ValueError(f"unknown language codes {unknown}; the identifier knows {sorted(known)}")
        return tuple(value)

    @field_validator("mean_word_length")
    @classmethod
    def _ordered(cls, value):
        if value is not None and not 0 <= value[0] <= value[1]:
            raise ValueError(f"mean_word_length must be [min, max] with 0 <= min <= max, got {list(value)}")
        return value

    @field_validator("max_top_ngram_share", "max_duplicate_ngram_share")
    @classmethod
    def _ngrams(cls, value):
        if value is not None:
            for n, share in value.items():
                if not 1 <= n <= MAX_N or not 0 <= share <= 1:
                    raise ValueError(f"n-gram thresholds need 1 <= n <= {MAX_N} and 0 <= share <= 1, got {n}: {share}")
        return value


# the thresholds that reject whole documents: every field but the line rule (applied in the worker) and the
# language rule's settings; and those of them that read the words
DOCUMENT_RULES = tuple(f for f in QualityFilters.model_fields
                       if f not in ("max_mojibake_line_share", "min_language_score", "language_sample_chars"))
WORD_RULES = ("min_words", "mean_word_length", "max_non_alpha_share", "max_top_ngram_share",
              "max_duplicate_ngram_share")


# in the fingerprint of a config that identifies languages: another model is another decision
LANGUAGE_MODEL = "py3langid-0.4"


@functools.cache
def _identifier():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:  # pragma: no cover - a dependency of bertplat
        raise ValueError("quality.languages needs the py3langid package (pip install py3langid)") from None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_codes() -> frozenset[str]:
    """The language codes the identifier can return (``zxx``: no linguistic content)."""
    return frozenset(_identifier().nb_classes)


def identify_languages(texts: pa.StringArray, sample_chars: int) -> list[tuple[str, float]]:
    """(most probable language, its probability) of each text, read from ``sample_chars`` characters in its middle:
    a book's start is a title page and a table of contents (English Gutenberg books were called French or given
    under 0.5 for English from their first 500 characters)."""
    ident = _identifier()
    out = []
    for text in texts.to_pylist():
        start = max(0, (len(text) - sample_chars) // 2)
        out.append(ident.classify(text[start:start + sample_chars]))
    return out


MAX_N = 20        # the largest n-gram a config may name (checked by QualityFilters)


@dataclass
class WordStats:
    """Per-document word statistics of a batch, each an array aligned with its texts."""

    n_words: np.ndarray        # whitespace words, each CJK character counted as one
    plain_words: np.ndarray    # words without a CJK character
    plain_chars: np.ndarray    # their characters
    non_space: np.ndarray      # characters of all words
    non_letter: np.ndarray     # characters neither letters, marks nor whitespace
    top: np.ndarray            # [doc, n]: share of word characters in the most frequent repeated n-gram
    dup: np.ndarray            # [doc, n]: share of word characters inside repeated n-grams

    def put(self, rows: np.ndarray, other: WordStats) -> None:
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)


@dataclass
class Failure:
    row: int
    reason: str
    detail: str


def _sum_by(parent: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(parent, weights=values, minlength=n)


def drop_mojibake_lines(arr: pa.StringArray, share: float
                        ) -> tuple[pa.StringArray, list[tuple[int, int, str, float]], np.ndarray]:
    """``arr`` without its garbled lines, (row, line number in the text, line start, share) for each, and the
    mojibake counts of the texts returned (for the document rule, which then need not count again)."""
    counts = mojibake_counts(arr)
    has = counts > 1
    if not has.any():
        return arr, [], counts
    import re

    bad_re = re.compile(_MOJIBAKE)
    rows = np.flatnonzero(has)
    dropped, values = [], []
    for row, text in zip(rows.tolist(), arr.take(pa.array(rows)).to_pylist()):
        kept = []
        for i, line in enumerate(text.split("\n")):
            s = len(bad_re.findall(line)) / len(line) if len(line) >= 20 else 0.0
            if s > share:
                dropped.append((row, i + 1, line[:60], s))
            else:
                kept.append(line)
        values.append("\n".join(kept))
    arr = pc.replace_with_mask(arr, pa.array(has), pa.array(values, pa.string()))
    counts[rows] = mojibake_counts(arr.take(pa.array(rows)))
    return arr, dropped, counts


def measure_and_filter(arr: pa.StringArray, cfg: QualityFilters, row_offset: int = 0,
                       mojibake: np.ndarray | None = None) -> list[Failure]:
    """The first failed filter of every document that fails one (filters in the order of the config);
    rows are numbered from ``row_offset``. ``mojibake``: the texts' mojibake counts, where the caller has them."""
    n = len(arr)
    rule = np.full(n, -1, np.int64)          # per document, the first rule it failed (an index into rules)
    value = np.zeros(n)                      # ... and its measured value
    rules: list[tuple[str, str]] = []        # (reason, what the value is)
    language: dict[int, str] = {}            # the details of the language rule's failures

    def fail(mask: np.ndarray, reason: str, values: np.ndarray, what: str) -> None:
        new = mask & (rule < 0)
        rule[new] = len(rules)
        value[new] = np.asarray(values, dtype=np.float64)[new]
        rules.append((reason, what))

    if all(getattr(cfg, f) is None for f in DOCUMENT_RULES):
        return []
    stats = None
    top_limits, dup_limits = cfg.max_top_ngram_share or {}, cfg.max_duplicate_ngram_share or {}
    if any(getattr(cfg, f) is not None for f in WORD_RULES):
        stats = batch_word_stats(arr, tuple(top_limits), tuple(dup_limits))
    if cfg.min_words is not None:
        fail(stats.n_words < cfg.min_words, "quality_too_few_words", stats.n_words,
             f"words (min_words={cfg.min_words})")
    if cfg.mean_word_length is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = stats.plain_chars / stats.plain_words
        lo, hi = cfg.mean_word_length
        fail((stats.plain_words > 0) & ((mean < lo) | (mean > hi)), "quality_mean_word_length", mean,
             f"characters per word (mean_word_length=[{lo:g}, {hi:g}])")
    if cfg.max_non_alpha_share is not None:
        share = np.where(stats.non_space > 0, stats.non_letter / np.maximum(stats.non_space, 1), 1.0)
        fail(share > cfg.max_non_alpha_share, "quality_non_alpha", share,
             f"of characters are not letters (max_non_alpha_share={cfg.max_non_alpha_share:g})")
    if cfg.max_lines_without_end_punct is not None or cfg.max_duplicate_line_share is not None \
            or cfg.max_duplicate_line_char_share is not None:
        _line_rules(arr, cfg, fail)
    for n_ in sorted({*top_limits, *dup_limits}):
        if n_ in top_limits:
            fail(stats.top[:, n_] > top_limits[n_], "quality_top_ngram", stats.top[:, n_],
                 f"of word characters in the most frequent {n_}-gram (max_top_ngram_share[{n_}]={top_limits[n_]:g})")
        if n_ in dup_limits:
            fail(stats.dup[:, n_] > dup_limits[n_], "quality_duplicate_ngrams", stats.dup[:, n_],
                 f"of word characters inside repeated {n_}-grams "
                 f"(max_duplicate_ngram_share[{n_}]={dup_limits[n_]:g})")
    if cfg.max_mojibake_share is not None:
        bad = (mojibake_counts(arr) if mojibake is None else mojibake).astype(np.float64)
        share = bad / np.maximum(np.asarray(pc.utf8_length(arr), dtype=np.float64), 1)
        fail(share > cfg.max_mojibake_share, "quality_mojibake", share,
             f"of characters garbled (max_mojibake_share={cfg.max_mojibake_share:g})")
    if cfg.languages is not None:
        # the costliest rule (about 0.2 ms a document, in Python) runs last, on the documents that passed the others
        rows = np.flatnonzero(rule < 0)
        found = identify_languages(arr.take(pa.array(rows)), cfg.language_sample_chars) if len(rows) else []
        limits = f"(languages={list(cfg.languages)}, min_language_score={cfg.min_language_score:g})"
        for j, (lang, prob) in zip(rows.tolist(), found):
            if lang not in cfg.languages or prob < cfg.min_language_score:
                rule[j] = len(rules)
                language[j] = f"{prob:.4g} probability of {lang!r} {limits}"
        rules.append(("quality_language", ""))
    rows = np.flatnonzero(rule >= 0)
    return [Failure(j + row_offset, rules[r][0], language[j] if j in language else f"{v:.4g} {rules[r][1]}")
            for j, r, v in zip(rows.tolist(), rule[rows].tolist(), value[rows].tolist())]


@dataclass
class LineCounts:
    """Per document, over its non-empty lines: how many, how many end without punctuation, how many repeat an
    earlier line of the document, and the characters of the repeated lines and of all lines."""
    lines: np.ndarray
    no_end: np.ndarray
    repeated: np.ndarray
    repeated_chars: np.ndarray
    chars: np.ndarray


def line_counts(arr: pa.StringArray) -> LineCounts:
    """The counts of the line rules in one compiled scan (``wordstats``), equal to :func:`arrow_line_counts`."""
    from bertplat.ingest.wordstats import line_counts as count  # numba: the workers that filter only

    return LineCounts(*count(arr, _END_CHARS))


def arrow_line_counts(arr: pa.StringArray) -> LineCounts:
    """The definition of :func:`line_counts` in Arrow kernels: lines split at newlines, lengths in code points,
    the ending by ``_END_PUNCT``, repeats by Arrow's hash encoding of the lines."""
    n = len(arr)
    lines = pc.split_pattern(arr, pattern="\n")
    parent = np.asarray(pc.list_parent_indices(lines))
    flat = pc.list_flatten(lines)
    length = np.asarray(pc.utf8_length(flat), dtype=np.float64)
    real = length > 0
    ends = np.asarray(pc.match_substring_regex(flat, pattern=_END_PUNCT))
    ids = np.asarray(pc.dictionary_encode(flat).indices, dtype=np.int64)
    repeat = _repeats(parent[real] * (int(ids.max()) + 1 if len(ids) else 1) + ids[real])
    par, ln = parent[real], length[real]
    return LineCounts(np.bincount(par, minlength=n), np.bincount(parent[real & ~ends], minlength=n),
                      np.bincount(par[repeat], minlength=n), _sum_by(par[repeat], ln[repeat], n), _sum_by(par, ln, n))


def _line_rules(arr: pa.StringArray, cfg: QualityFilters, fail) -> None:
    counts = line_counts(arr)
    n_lines = np.maximum(counts.lines, 1)
    if cfg.max_lines_without_end_punct is not None:
        share = counts.no_end / n_lines
        fail(share > cfg.max_lines_without_end_punct, "quality_no_end_punct", share,
             f"of lines end without punctuation (max_lines_without_end_punct={cfg.max_lines_without_end_punct:g})")
    if cfg.max_duplicate_line_share is not None:
        share = counts.repeated / n_lines
        fail(share > cfg.max_duplicate_line_share, "quality_duplicate_lines", share,
             f"of lines repeat an earlier one (max_duplicate_line_share={cfg.max_duplicate_line_share:g})")
    if cfg.max_duplicate_line_char_share is not None:
        share = counts.repeated_chars / np.maximum(counts.chars, 1)
        fail(share > cfg.max_duplicate_line_char_share, "quality_duplicate_line_chars", share,
             f"of characters in repeated lines (max_duplicate_line_char_share={cfg.max_duplicate_line_char_share:g})")


def _hash_codes(keys: np.ndarray) -> np.ndarray:
    """A code per element, equal for equal keys, numbered in order of first appearance (Arrow's hash
    encoding: no sort)."""
    return np.asarray(pc.dictionary_encode(pa.array(keys)).indices, dtype=np.int64)


def _repeats(keys: np.ndarray) -> np.ndarray:
    """True for every occurrence of a key after its first (in array order). Arrow's hash encoding numbers
    the distinct keys in order of first appearance, so an element is a first occurrence exactly when its
    number exceeds every number before it (no sort: about 3x faster than a stable argsort)."""
    if not len(keys):
        return np.zeros(0, dtype=bool)
    codes = _hash_codes(keys)
    seen = np.maximum.accumulate(codes)
    later = np.ones(len(keys), dtype=bool)
    later[0] = False
    later[1:] = codes[1:] <= seen[:-1]
    return later


def mojibake_counts(arr: pa.StringArray) -> np.ndarray:
    """The matches of ``_MOJIBAKE`` in each text, by a compiled scan (``wordstats``)."""
    from bertplat.ingest.wordstats import mojibake_counts as count  # numba: the workers that filter only

    return count(arr)


def batch_word_stats(arr: pa.StringArray, top_sizes: tuple[int, ...] = (),
                     dup_sizes: tuple[int, ...] = ()) -> WordStats:
    """The word statistics of every text: one compiled pass (``wordstats``), and the Arrow definitions for
    the few texts holding a code point above U+FFFF."""
    from bertplat.ingest.wordstats import word_stats  # numba: imported by the workers that filter only

    stats, astral = word_stats(arr, top_sizes, dup_sizes)
    if astral.any():
        rows = np.flatnonzero(astral)
        stats.put(rows, arrow_word_stats(arr.take(pa.array(rows)), top_sizes, dup_sizes))
    return stats


def arrow_word_stats(arr: pa.StringArray, top_sizes: tuple[int, ...] = (),
                     dup_sizes: tuple[int, ...] = ()) -> WordStats:
    """The word statistics by their definitions in Arrow kernels (about ten passes over the text, 5x slower
    than ``wordstats``): words as ``str.split()`` splits them, lengths in code points, a CJK
    character a word, non-letters by RE2, Gopher's n-gram shares over ``utf8_lower``-ed words."""
    n = len(arr)
    # trimmed first: pyarrow 26's splitter sometimes leaves a text's trailing whitespace in its last word
    words = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(arr))
    parent = np.asarray(pc.list_parent_indices(words))
    flat = pc.list_flatten(words)
    wlen = np.asarray(pc.utf8_length(flat), dtype=np.float64)
    if not (real := wlen > 0).all():   # Arrow gives an empty word at a leading or trailing space; str.split() none
        flat, parent, wlen = flat.filter(pa.array(real)), parent[real], wlen[real]
    cjk_in_word = np.zeros(len(flat))
    non_ascii = np.flatnonzero(~np.asarray(pc.string_is_ascii(flat), dtype=bool))
    if len(non_ascii):
        cjk_in_word[non_ascii] = np.asarray(pc.count_substring_regex(flat.take(pa.array(non_ascii)), pattern=_CJK))
    plain = cjk_in_word == 0
    top = np.zeros((n, MAX_N + 1))
    dup = np.zeros((n, MAX_N + 1))
    _ngram_shares(flat, parent, wlen, n, top_sizes, dup_sizes, top, dup)
    return WordStats(
        n_words=np.bincount(parent, minlength=n) + _sum_by(parent, np.maximum(cjk_in_word - 1, 0), n),
        plain_words=np.bincount(parent[plain], minlength=n).astype(np.float64),
        plain_chars=_sum_by(parent[plain], wlen[plain], n),
        non_space=_sum_by(parent, wlen, n),
        non_letter=np.asarray(pc.count_substring_regex(arr, pattern=_NON_LETTER), dtype=np.float64),
        top=top, dup=dup)


def _ngram_shares(words: pa.Array, parent: np.ndarray, wlen: np.ndarray, n_docs: int, top_sizes, dup_sizes,
                  top: np.ndarray, dup: np.ndarray) -> None:
    """Gopher's n-gram repetition shares over lower-cased words, on 64-bit n-gram keys, into ``top[:, n]``
    and ``dup[:, n]``.

    Only the smallest n is counted over every position. An n-gram occurring twice or more has its two
    (n-1)-grams (at its start and one word later) occurring twice or more too, so each larger n is
    counted over those positions only: a few percent of them in real text. The counts are exact
    (up to 64-bit key collisions), the work is about one sort of the batch instead of one per n."""
    sizes = sorted({*top_sizes, *dup_sizes})
    if not sizes:
        return
    ids = np.asarray(pc.dictionary_encode(pc.utf8_lower(words)).indices, dtype=np.uint64)
    total = np.maximum(_sum_by(parent, wlen, n_docs), 1)
    m_all = len(ids)
    csum = np.concatenate(([0.0], np.cumsum(wlen)))   # word characters before each position
    mult = np.uint64(0x9E3779B97F4A7C15)
    # candidate start positions of the current n and their n-gram keys, built up from n = 1
    pos = np.arange(m_all, dtype=np.int64)
    with np.errstate(over="ignore"):
        key = (parent.astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93) ^ ids) * mult
    repeated = np.zeros(m_all + 1, dtype=bool)        # the (n-1)-grams occurring twice or more
    for n in range(1, sizes[-1] + 1):
        if n > 1:
            keep = pos + n - 1 < m_all
            if n - 1 >= sizes[0]:
                keep &= repeated[pos] & repeated[pos + 1]
            keep[keep] = parent[pos[keep]] == parent[pos[keep] + n - 1]
            pos = pos[keep]
            with np.errstate(over="ignore"):
                key = (key[keep] ^ ids[pos + n - 1]) * mult
        if n < sizes[0]:
            continue
        counts = _occurrences(key)
        rep = counts > 1
        starts = pos[rep]
        repeated[:] = False
        repeated[starts] = True
        if n in top_sizes and len(starts):
            # starts ascend, so each document's n-grams are one run: a max per run (np.maximum.at is slow)
            doc = parent[starts]
            first = np.flatnonzero(np.concatenate(([True], doc[1:] != doc[:-1])))
            top[doc[first], n] = np.maximum.reduceat(counts[rep] * (csum[starts + n] - csum[starts]), first)
            top[:, n] /= total
        if n in dup_sizes:
            # word characters inside the union of the repeated n-grams: each adds what the previous one
            # (same length, so the furthest-reaching so far) has not covered
            prev_end = np.concatenate(([0], starts[:-1] + n))
            added = csum[starts + n] - csum[np.maximum(starts, prev_end)]
            dup[:, n] = _sum_by(parent[starts], added, n_docs) / total


def _occurrences(keys: np.ndarray) -> np.ndarray:
    """How often each element's key occurs in ``keys`` (Arrow's hash encoding, then a count per code:
    2.5-3.5x faster than sorting the 64-bit keys)."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    codes = _hash_codes(keys)
    return np.bincount(codes)[codes]
