"""Normalisation and sentence segmentation: hand examples and hypothesis properties."""

from __future__ import annotations

import re
import unicodedata

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.ingest.cleanup import clean_markup
from bertplat.ingest.config import IngestConfig
from bertplat.ingest.text import clean_whitespace, rows_containing, split_sentences
from bertplat.ingest.worker import _encode_texts


def clean(text: str, unwrap: bool = False) -> str:
    """The worker's per-document step (line endings, NFC) then the vectorised clean-up."""
    (encoded,), (error,) = _encode_texts([text], IngestConfig())
    assert not error
    return clean_whitespace(pa.array([encoded], pa.binary()).cast(pa.string()), unwrap)[0].as_py()


def sentences(text: str) -> list[str]:
    return split_sentences(pa.array([clean(text)]))[0].as_py()


def test_whitespace_rules_by_hand():
    assert clean("  a\t\tb \u00a0 c\r\nd\re  ") == "a b c\nd\ne"
    assert clean("a\n\n\n\n b \n\n c") == "a\n\nb\n\nc"
    assert clean("x\x00y\x07z\u200bw\ufeffv") == "xyzwv"
    assert clean("\u3000\u3000第一回\u3000宴桃园") == "第一回 宴桃园"
    assert clean("one\ntwo\n\nthree\nfour", unwrap=True) == "one two\n\nthree four"


def test_english_sentences_by_hand():
    text = ("Mr. Smith met Dr. Jones at 5 p.m. on Jan. 3. They talked. \"Really?\" she asked. "
            "J. R. R. Tolkien wrote it, e.g. in 1937. The U.S. Army agreed! Numbers: 3.14 is pi.")
    assert sentences(text) == [
        "Mr. Smith met Dr. Jones at 5 p.m. on Jan. 3.",
        "They talked.",
        "\"Really?\" she asked.",
        "J. R. R. Tolkien wrote it, e.g. in 1937.",
        "The U.S. Army agreed!",
        "Numbers: 3.14 is pi.",
    ]


def test_every_newline_ends_a_sentence():
    assert sentences("Title line\n\nFirst paragraph here\nSecond line") == [
        "Title line", "First paragraph here", "Second line"]


def test_chinese_sentences_by_hand():
    text = "数学是一门学科。它研究数量！为什么？“好。”他说……然后走了\n新段落"
    assert sentences(text) == ["数学是一门学科。", "它研究数量！", "为什么？", "“好。”", "他说……", "然后走了", "新段落"]


def test_segmentation_can_be_switched_off():
    arr = pa.array(["One. Two.\nThree."])
    assert split_sentences(arr, segment=False)[0].as_py() == ["One. Two.", "Three."]


def test_empty_and_whitespace_only_texts_have_no_sentences():
    out = split_sentences(clean_whitespace(pa.array(["", "   \n\n  "]), False))
    assert out.to_pylist() == [[], []]


_texts = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs", "Cc", "Cf", "S")),
                 max_size=200)


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_cleaning_is_idempotent_and_tidy(text):
    once = clean(text)
    assert clean(once) == once
    assert once == once.strip()
    assert "  " not in once and "\n\n\n" not in once and " \n" not in once and "\n " not in once
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff\t]", once)


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_sentences_partition_the_text(text):
    cleaned = clean(text)
    parts = split_sentences(pa.array([cleaned]))[0].as_py()
    assert all(p and p == p.strip() and "\n" not in p for p in parts)
    squash = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    assert squash("".join(parts)) == squash(cleaned)
    assert (len(parts) > 0) == (len(cleaned) > 0)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100))
def test_encoded_texts_are_normalised(text):
    cfg = IngestConfig()
    encoded, errors = _encode_texts([text], cfg)
    if errors[0]:          # lone surrogates cannot be UTF-8; that is a reject, not a crash
        assert encoded[0] is None and "surrogate" in errors[0]
    else:
        assert unicodedata.is_normalized("NFC", encoded[0].decode("utf-8"))


def test_decode_failure_names_the_offset():
    encoded, errors = _encode_texts([b"good \xff bad"], IngestConfig())
    assert encoded == [None] and "offset 5" in errors[0] and "--encoding" in errors[0]


_pieces = st.lists(st.sampled_from(["ab", "a", "b", "．", "3．1", "「x『y。』z。」", "“He said ‘no.’ Then.”", "<br>",
                                    "Wm. A. Smith", "c. 1750", "e.g. Paris", " ", "\n", "( ; x)", "formula_2"]),
                   max_size=8).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(_pieces, max_size=12), st.sampled_from(["ab", "．", "『", "<", "formula_"]), st.integers(0, 3),
       st.booleans())
def test_rows_containing_finds_every_text_holding_the_literal(texts, literal, start, large):
    arr = pa.array(texts, pa.large_string() if large else pa.string()).slice(min(start, len(texts)))
    mask = rows_containing(arr, literal)
    values = arr.to_pylist()
    for i, text in enumerate(values):
        if literal in text:
            assert mask[i]
        elif mask[i]:   # a false positive only where the literal spans this text and the next ones
            assert literal in "".join(values[i:]) and not text.endswith(literal)


def _one_by_one(fn, texts):
    return [fn(pa.array([t], pa.string())).to_pylist()[0] for t in texts]


@settings(max_examples=150, deadline=None)
@given(st.lists(_pieces, min_size=1, max_size=12))
def test_batches_give_what_each_text_gives_alone(texts):
    """The clean-up and the segmentation run some steps on the texts that need them only: the result of
    a batch must not depend on which other texts are in it."""
    arr = pa.array(texts, pa.string())
    assert clean_markup(arr).to_pylist() == _one_by_one(clean_markup, texts)
    assert split_sentences(arr).to_pylist() == _one_by_one(split_sentences, texts)


def test_prefiltered_steps_by_hand():
    out = split_sentences(pa.array(["圆周率约为3．14。然后．结束", "plain text. Next one", "「他说『好。』然后。」走了。"]))
    assert out.to_pylist() == [["圆周率约为3．14。", "然后．", "结束"], ["plain text.", "Next one"],
                               ["「他说『好。』然后。」", "走了。"]]
    marked = clean_markup(pa.array(["a <br> b", "no tags", "width:20px; x formula_3 y"]))
    assert clean_whitespace(marked, False).to_pylist() == ["a b", "no tags", "x y"]
