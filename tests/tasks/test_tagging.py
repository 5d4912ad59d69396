"""Tagging schemes: round trips, conversions, strict validation and the shared corpora's schemes."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.tasks.tagging import (
    SCHEMES,
    Span,
    convert_tags,
    detect_scheme,
    entity_types,
    normalize_scheme,
    spans_to_tags,
    tag_vocabulary,
    tags_to_spans,
    validate_tags,
)


@st.composite
def span_layouts(draw):
    """A length and non-overlapping spans in it, adjacent same-type spans included."""
    length = draw(st.integers(0, 30))
    spans, i = [], 0
    while i < length:
        gap = draw(st.integers(0, 2))
        i += gap
        if i >= length:
            break
        size = draw(st.integers(1, min(5, length - i)))
        spans.append(Span(draw(st.sampled_from(["PER", "LOC", "B-X"])), i, i + size))
        i += size
    return length, spans


@settings(max_examples=300, deadline=None)
@given(span_layouts(), st.sampled_from(SCHEMES))
def test_every_scheme_round_trips_spans_through_tags(layout, scheme):
    length, spans = layout
    tags = spans_to_tags(spans, length, scheme)
    assert len(tags) == length
    assert tags_to_spans(tags, scheme) == spans
    assert validate_tags(tags, scheme) == []
    # a short sample can fit a simpler scheme (S-PER alone is bios too); it must fit what is detected
    detected = detect_scheme(tags)
    assert detected is None or (validate_tags(tags, detected) == [] and tags_to_spans(tags, detected) == spans)


@settings(max_examples=200, deadline=None)
@given(span_layouts(), st.sampled_from(SCHEMES), st.sampled_from(SCHEMES))
def test_conversion_between_schemes_keeps_the_spans(layout, source, target):
    length, spans = layout
    converted = convert_tags(spans_to_tags(spans, length, source), source, target)
    assert converted == spans_to_tags(spans, length, target)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]),
                max_size=20))
def test_lenient_decoding_always_yields_well_formed_spans(tags):
    spans = tags_to_spans(tags, "bioes")
    assert all(0 <= s.start < s.end <= len(tags) for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    fixed = convert_tags(tags, "bioes", "bioes")
    assert validate_tags(fixed, "bioes") == []
    assert tags_to_spans(fixed, "bioes") == spans


def test_hand_checked_examples_in_every_scheme():
    spans = [Span("PER", 0, 2), Span("PER", 2, 3), Span("LOC", 4, 7)]
    assert spans_to_tags(spans, 8, "iob2") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert spans_to_tags(spans, 8, "iob1") == ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-LOC", "O"]
    assert spans_to_tags(spans, 8, "bioes") == ["B-PER", "E-PER", "S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "O"]
    assert spans_to_tags(spans, 8, "bios") == ["B-PER", "I-PER", "S-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert spans_to_tags(spans, 8, "bmes") == ["B-PER", "E-PER", "S-PER", "O", "B-LOC", "M-LOC", "E-LOC", "O"]


def test_msra_like_bmes_chinese_tags():
    chars = list("李鹏在北京人民大会堂会见中国银行代表")
    tags = ["B-NR", "E-NR", "O", "B-NS", "E-NS", "B-NS", "M-NS", "M-NS", "M-NS", "E-NS", "O", "O",
            "B-NT", "M-NT", "M-NT", "E-NT", "O", "O"]
    spans = tags_to_spans(tags, "bmes")
    assert ["".join(chars[s.start:s.end]) + "/" + s.label for s in spans] == \
        ["李鹏/NR", "北京/NS", "人民大会堂/NS", "中国银行/NT"]
    assert convert_tags(tags, "bmes", "iob2")[:6] == ["B-NR", "I-NR", "O", "B-NS", "I-NS", "B-NS"]
    assert convert_tags(["S-NS", "O", "B-NR", "M-NR", "E-NR"], "bmes", "bios") == \
        ["S-NS", "O", "B-NR", "I-NR", "I-NR"]
    assert detect_scheme(tags) == "bmes"


def test_iob1_decodes_i_as_a_chunk_start_and_b_as_a_separator():
    # CoNLL-2003's original IOB1: "I-ORG I-ORG B-ORG" is two ORGs
    assert tags_to_spans(["I-ORG", "I-ORG", "B-ORG", "O", "I-PER"], "iob1") == \
        [Span("ORG", 0, 2), Span("ORG", 2, 3), Span("PER", 4, 5)]
    assert convert_tags(["I-ORG", "I-ORG", "B-ORG", "O", "I-PER"], "iob1", "iob2") == \
        ["B-ORG", "I-ORG", "B-ORG", "O", "B-PER"]
    assert detect_scheme(["O", "I-PER", "I-PER"]) == "iob1"
    assert detect_scheme(["O", "B-PER", "I-PER"]) == "iob2"


def test_conlleval_lenient_decoding_of_ill_formed_iob2():
    assert tags_to_spans(["O", "I-PER", "I-PER"], "iob2") == [Span("PER", 1, 3)]
    assert tags_to_spans(["B-PER", "I-LOC", "I-LOC"], "iob2") == [Span("PER", 0, 1), Span("LOC", 1, 3)]
    assert tags_to_spans(["B-PER", "B-PER"], "iob2") == [Span("PER", 0, 1), Span("PER", 1, 2)]
    assert tags_to_spans([], "iob2") == []
    # BIOES: a chunk that never closes still ends at O; E after E opens a new chunk
    assert tags_to_spans(["B-PER", "I-PER", "O", "E-LOC", "E-LOC"], "bioes") == \
        [Span("PER", 0, 2), Span("LOC", 3, 4), Span("LOC", 4, 5)]


def test_validate_tags_names_each_problem():
    assert validate_tags(["O", "I-PER"], "iob2") == [
        "token 1: 'I-PER' does not continue a chunk of its type (a iob2 chunk starts with B-)"]
    assert validate_tags(["O", "B-PER"], "iob1")[0].startswith("token 1: 'B-PER' does not follow a chunk")
    assert validate_tags(["I-PER", "B-PER"], "iob1") == []
    assert any("not followed by" in p for p in validate_tags(["B-PER", "O"], "bioes"))
    assert any("one-token chunk" in p for p in validate_tags(["B-PER", "O"], "bios"))
    assert any("M-PER" in p and "not one of" in p for p in validate_tags(["M-PER"], "bioes"))
    assert any("neither O nor" in p for p in validate_tags(["PER"], "iob2"))
    assert validate_tags(["B-PER", "M-PER", "E-PER", "S-LOC"], "bmes") == []


def test_scheme_names_and_aliases():
    assert [normalize_scheme(n) for n in ("IOB1", "bio", "IOB", "iob-2", "IOBES", "BIOES", "bios", "BMES")] == \
        ["iob1", "iob2", "iob2", "iob2", "bioes", "bioes", "bios", "bmes"]
    with pytest.raises(ValueError, match="unknown tagging scheme 'bilou'"):
        normalize_scheme("bilou")


def test_bad_tags_and_bad_spans_are_refused_with_the_position():
    with pytest.raises(ValueError, match="token 1: tag 'M-PER' has prefix 'M', which iob2 does not use"):
        tags_to_spans(["O", "M-PER"], "iob2")
    with pytest.raises(ValueError, match="token 0: tag 'PER'"):
        tags_to_spans(["PER"], "iob2")
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([Span("A", 0, 2), Span("B", 1, 3)], 4, "iob2")
    with pytest.raises(ValueError, match="inside a sequence of 2"):
        spans_to_tags([Span("A", 1, 3)], 2, "iob2")
    with pytest.raises(ValueError, match="non-empty"):
        spans_to_tags([Span("A", 1, 1)], 2, "iob2")


def test_entity_types_and_tag_vocabulary():
    assert entity_types(["O", "B-PER", "I-LOC", "S-ORG-X"]) == ["LOC", "ORG-X", "PER"]
    assert tag_vocabulary(["PER"], "bmes") == ["O", "B-PER", "M-PER", "E-PER", "S-PER"]
    assert tag_vocabulary(["NR", "NS"], "bios") == ["O", "B-NR", "I-NR", "S-NR", "B-NS", "I-NS", "S-NS"]


def _conll_tags(path, column=-1):
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if current:
                sentences.append(current)
            current = []
        else:
            current.append(parts[column])
    if current:
        sentences.append(current)
    return sentences


def test_shared_conll2003_ner_column_is_iob2_with_the_official_entity_counts(shared_data):
    sentences = _conll_tags(shared_data / "tasks" / "en" / "conll2003" / "train.txt")
    assert len(sentences) == 14041
    assert {detect_scheme(s) for s in sentences} == {None, "iob2"}
    assert all(validate_tags(s, "iob2") == [] for s in sentences)
    counts = Counter(span.label for s in sentences for span in tags_to_spans(s, "iob2"))
    assert counts == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}
    # the chunk column (index 2) is IOB1: chunks open with I-; reading it as IOB1 validates
    chunks = _conll_tags(shared_data / "tasks" / "en" / "conll2003" / "train.txt", column=2)
    assert detect_scheme(t for s in chunks for t in s) == "iob1"
    assert all(validate_tags(s, "iob1") == [] for s in chunks[:2000])


def test_shared_msra_tags_are_bmes_although_labels_txt_lists_bios(shared_data):
    folder = shared_data / "tasks" / "zh" / "msra_ner"
    tags = [line.split()[1] for line in (folder / "dev.ner").read_text(encoding="utf-8").splitlines()
            if len(line.split()) == 2]
    assert detect_scheme(tags) == "bmes"
    assert {t[0] for t in tags} == {"O", "B", "M", "E", "S"}
    listed = (folder / "labels.txt").read_text(encoding="utf-8").split()
    assert detect_scheme(listed) == "bios"  # B-/I-/S- only: not the tags the data uses
    assert set(tags) - set(listed) == {f"{p}-{t}" for p in "ME" for t in ("NR", "NS", "NT")}
