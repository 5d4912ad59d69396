"""Sentence boundaries against a hand-checked golden set (tests/ingest/data/segmentation_golden_*.txt),
and hypothesis properties of the rules added for issue 15 (lower-case abbreviations before numbers,
initials, full-width stops, nested CJK quotations)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.ingest.text import split_sentences

DATA = Path(__file__).parent / "data"


def load_golden(lang: str) -> tuple[str, set[int]]:
    """The whole golden set as one text (lines joined, so that line ends are boundaries to find
    too) and its boundaries as offsets into the text with all whitespace removed."""
    joiner = " " if lang == "en" else ""
    sentences: list[str] = []
    for line in (DATA / f"segmentation_golden_{lang}.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            sentences += [s.strip() for s in line.split("|")]
    return joiner.join(sentences), _boundaries(sentences)


def _boundaries(sentences: list[str]) -> set[int]:
    out, pos = set(), 0
    for s in sentences[:-1]:
        pos += len(re.sub(r"\s+", "", s))
        out.add(pos)
    return out


def boundary_scores(split, lang: str) -> tuple[float, float, int]:
    """(precision, recall, gold boundaries) of ``split`` (Arrow strings -> list of sentences)."""
    text, gold = load_golden(lang)
    predicted = _boundaries(split(pa.array([text]))[0].as_py())
    hits = len(gold & predicted)
    return hits / max(1, len(predicted)), hits / len(gold), len(gold)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_golden_boundaries(lang):
    precision, recall, n = boundary_scores(split_sentences, lang)
    assert n >= 120
    # measured 1.0 / 1.0 on both sets; the bar leaves no room for a regression of more than one boundary
    assert precision >= 1 - 1.5 / n and recall >= 1 - 1.5 / n, (precision, recall)


def sentences(text: str) -> list[str]:
    return split_sentences(pa.array([text]))[0].as_py()


_LOWER = ["c", "ca", "p", "pp", "no", "vol", "fig", "approx", "cf", "op", "ch"]
_words = st.text(alphabet="gjkqwxyz ", min_size=1, max_size=30)  # letters no abbreviation is made of.map(lambda s: " ".join(s.split()) or "x")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_LOWER), st.integers(0, 99999), _words, _words)
def test_lower_case_abbreviation_before_a_number_never_ends_a_sentence(abbr, number, before, after):
    text = f"It was {before} {abbr}. {number} {after}. Then it ended."
    assert sentences(text) == [f"It was {before} {abbr}. {number} {after}.", "Then it ended."]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from("ABCDEFGHJKLMNPRSTW"), min_size=1, max_size=4), _words)
def test_initials_never_end_a_sentence(initials, rest):
    name = " ".join(f"{i}." for i in initials)
    assert sentences(f"Written by {name} Surname in {rest}. Next one.") == [
        f"Written by {name} Surname in {rest}.", "Next one."]


_zh = st.text(alphabet="天地人山水日月风雨书", min_size=1, max_size=12)
_stops = st.sampled_from(["。", "！", "？", "．", "｡", "︒", "﹒", "﹗", "﹖", "……"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_zh, _stops), min_size=1, max_size=6))
def test_every_chinese_stop_ends_a_sentence(parts):
    text = "".join(a + b for a, b in parts)
    assert sentences(text) == [a + b for a, b in parts]


@settings(max_examples=100, deadline=None)
@given(_zh, _zh, _zh, _stops, _stops, st.sampled_from([("『", "』", "「", "」"), ("「", "」", "『", "』"),
                                                         ("“", "”", "‘", "’")]))
def test_nested_quotation_closes_before_the_sentence_ends(a, b, c, s1, s2, quotes):
    o, cl, io, ic = quotes
    quote = f"{o}{a}：{io}{b}{s1}{ic}{c}{s2}{cl}"
    assert sentences(quote + "后来" + "。") == [quote, "后来。"]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 999), st.integers(0, 999), _zh)
def test_full_width_decimal_point_is_not_a_stop(whole, frac, rest):
    fw = str.maketrans("0123456789", "０１２３４５６７８９")
    number = f"{whole}．{frac}".translate(fw)
    assert sentences(f"约{number}{rest}．完。") == [f"约{number}{rest}．", "完。"]
