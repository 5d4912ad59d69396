"""Issue 15: the compiled word statistics equal their Arrow definitions, code point by code point."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.ingest.quality import (
    _MOJIBAKE,
    arrow_line_counts,
    arrow_word_stats,
    batch_word_stats,
    line_counts,
    mojibake_counts,
)
from bertplat.ingest.wordstats import CJK, NON_LETTER, SPACE, WordStats, tables, word_stats

TOP, DUP = (2, 3, 4), (5, 6, 7, 8, 9, 10)

# letters of several scripts and cases, marks, digits, punctuation, CJK, every kind of whitespace the
# splitter knows (tab, ideographic space, line separator, NEL, vertical tab), and code points above the BMP
ALPHABET = list("aAbBzZéÉßΣσςİıÅ\u0301\u0308日本語中文。，！1234.,;:-()\"'?") + \
    [" ", " ", " ", "\n", "\t", "\u3000", "\u2028", "\x85", "\x0b", "\u00a0", "\ufffd", "\U0001f600", "\U00020000"]
WORDS = ["the", "The", "THE", "cat", "ÉTÉ", "été", "日本", "本", "a", "Straße", "ΣΟΦΙΑ", "σοφια", "x1", "--"]


def assert_same(got: WordStats, want: WordStats) -> None:
    for field in ("n_words", "plain_words", "plain_chars", "non_space", "non_letter"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
    for n in TOP:
        assert np.allclose(got.top[:, n], want.top[:, n], rtol=1e-12, atol=0), n
    for n in DUP:
        assert np.allclose(got.dup[:, n], want.dup[:, n], rtol=1e-12, atol=0), n


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=120), min_size=1, max_size=12))
def test_compiled_statistics_equal_the_arrow_definitions_on_any_text(texts):
    arr = pa.array(texts)
    assert_same(batch_word_stats(arr, TOP, DUP), arrow_word_stats(arr, TOP, DUP))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WORDS), max_size=80).map(" ".join), min_size=2, max_size=10),
       st.integers(0, 3))
def test_repeated_ngrams_and_sliced_arrays(texts, start):
    """Texts made of few words repeat n-grams of every size; a slice of an array (non-zero offset) reads
    only its own texts."""
    arr = pa.array(texts)[start % len(texts):]
    assert_same(batch_word_stats(arr, TOP, DUP), arrow_word_stats(arr, TOP, DUP))


def test_code_points_above_the_bmp_are_measured_by_the_arrow_path():
    arr = pa.array(["plain words only here", "an emoji \U0001f600 and 𠀀 here", "日本語 の 文"])
    _, astral = word_stats(arr, TOP, DUP)
    assert astral.tolist() == [False, True, False]
    got = batch_word_stats(arr, TOP, DUP)
    assert got.n_words.tolist() == [4, 6, 5]             # 日本語 is three words, の and 文 one each
    assert got.non_letter.tolist() == [0, 1, 0]           # the emoji; 𠀀 (U+20000) is a letter
    assert_same(got, arrow_word_stats(arr, TOP, DUP))


def test_tables_classify_known_code_points():
    classes, lower = tables()
    assert classes[ord(" ")] & SPACE and classes[0x3000] & SPACE and classes[0x2028] & SPACE
    assert not classes[ord("é")] & NON_LETTER and not classes[0x0301] & NON_LETTER      # a letter, a mark
    assert classes[ord("1")] & NON_LETTER and classes[ord("。")] & NON_LETTER
    assert classes[ord("日")] & CJK and not classes[ord("の")] & CJK
    assert lower[ord("Σ")] == ord("σ") and lower[ord("É")] == ord("é") and lower[ord("a")] == ord("a")


def test_hand_computed_shares():
    # "a b a b a b": the 2-gram "a b" occurs 3 times over 6 word characters: top share 1.0
    # 5-grams "a b a b a" and "b a b a b" occur once each: nothing repeated
    stats = batch_word_stats(pa.array(["a b a b a b", "A b a B"]), TOP, DUP)
    assert stats.top[0, 2] == 1.0 and stats.top[0, 3] == 1.0 and stats.dup[0, 5] == 0.0
    assert stats.top[1, 2] == 1.0          # "a b" twice, case folded: 2 x 2 characters of 4
    assert stats.n_words.tolist() == [6, 4] and stats.plain_chars.tolist() == [6, 4]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet=list("ab日 \n\t\u3000"), max_size=30), min_size=1, max_size=6))
def test_words_are_what_str_split_gives(texts):
    """Gopher's words are Python's ``str.split()``: no empty word at a leading or trailing space (Arrow's
    splitter gives one there)."""
    stats = batch_word_stats(pa.array(texts), TOP, DUP)
    for i, text in enumerate(texts):
        words = text.split()
        assert stats.n_words[i] == sum(max(1, w.count("日")) for w in words)
        assert stats.non_space[i] == sum(map(len, words))
        assert stats.plain_words[i] == sum("日" not in w for w in words)


def test_empty_and_large_string_arrays_and_a_trailing_newline_after_an_emoji():
    assert len(batch_word_stats(pa.array([], pa.string()), TOP, DUP).n_words) == 0
    texts = ["a b c", "d e 日本", "x 😀 y\n"]
    large = batch_word_stats(pa.array(texts, pa.large_string()), TOP, DUP)
    assert_same(large, batch_word_stats(pa.array(texts), TOP, DUP))
    assert large.n_words.tolist() == [3, 4, 3] and large.non_space.tolist() == [3, 4, 3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=list("?中日aÂÃâ€\u0080\u00bf\u00c0\ufffd \n") + ["\U0001f600"], max_size=40),
                min_size=1, max_size=8))
def test_mojibake_counts_equal_the_regex(texts):
    """RE2 counts the matches left to right without overlap: "?中?" is one match, "中?中?中" two."""
    arr = pa.array(texts)
    want = np.asarray(pc.count_substring_regex(arr, pattern=_MOJIBAKE))
    assert mojibake_counts(arr).tolist() == want.tolist()
    assert mojibake_counts(pa.array(["?中?", "中?中?中", "Ã©tÃ© â€™", "\ufffd"])).tolist() == [1, 2, 3, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["", "a", "a.", "b!", "中文。", "x”", "é", "(a)", " ", "a b", "\U0001f600"]),
                         max_size=12).map("\n".join), min_size=1, max_size=8), st.integers(0, 2))
def test_line_counts_equal_the_arrow_definition(texts, start):
    """Few distinct lines, so that many repeat; empty lines count for nothing; a slice reads its own texts."""
    arr = pa.array(texts)[start % len(texts):]
    got, want = line_counts(arr), arrow_line_counts(arr)
    for field in ("lines", "no_end", "repeated", "repeated_chars", "chars"):
        assert getattr(got, field).tolist() == getattr(want, field).tolist(), field
    by_hand = line_counts(pa.array(["a.\nb\na.\n\na.", "中文。\n中文"]))
    assert by_hand.lines.tolist() == [4, 2] and by_hand.no_end.tolist() == [1, 1]
    assert by_hand.repeated.tolist() == [2, 0] and by_hand.repeated_chars.tolist() == [4, 0]
