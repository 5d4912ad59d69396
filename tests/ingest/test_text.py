"""Normalisation and sentence segmentation: hand examples and hypothesis properties."""

from __future__ import annotations

import re
import unicodedata

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.ingest.config import IngestConfig
from bertplat.ingest.text import clean_whitespace, split_sentences
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
