"""Issue 15: the compiled clean-up and segmentation equal their Arrow definitions in ``text``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.ingest import text as T
from bertplat.ingest import textpass
from bertplat.ingest.cleanup import arrow_tidy_punctuation
from bertplat.ingest.textpass import DIGIT, EN_STOP, EXOTIC, REMOVE, TRIM, ZH_STOP, classes

# the pieces the rules look at: every stop and closing or opening quote of both languages, the abbreviations
# of every list (and near misses), initials, digits of both widths, every kind of whitespace and control the
# clean-up knows, and letters of other scripts, CJK and code points above the BMP
PIECES = ([" ", " ", "  ", "\n", "\n\n", "\n\n\n", "\t", "\u00a0", "\u3000", "\u2028", "\u200b", "\ufeff", "\x07",
           "\x0b", "\x1f", "\x85", " \n ", ". ", "! ", "? ", "...", ".", "!?", "\"", "'", "\u201c", "\u201d",
           "\u2018", "\u2019", "(", ")", "[", "]", "\u3002", "\uff01", "\uff1f", "\uff0e", "\uff61", "\ufe12",
           "\ufe52", "\ufe57", "\u2026", "\u2026\u2026", "\u300c", "\u300d", "\u300e", "\u300f", "\uff09", "\u300b",
           "Mr", "Dr", "St", "e.g", "i.e", "a.m", "p.m", "U.S", "et al", "al", "cf", "vs", "c", "ca", "p", "pp",
           "no", "vol", "fig", "Wm", "Th", "Ch", "2a", "m", "A", "B", "J", "x", "The", "Next", "word", "abc_d",
           "1", "42", "3", "\uff13", "\uff11\uff14", "\u00e9t\u00e9", "\u00c9", "\u4e2d\u6587", "\u597d",
           "\U0001f600", "\U00020000", "\u0301"])
texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


def reference_clean(arr: pa.StringArray, unwrap) -> pa.StringArray:
    """The worker's old steps: the Arrow clean-up, then ``text.unwrap`` on the records that ask for it."""
    if unwrap is True or unwrap is False:
        return T.arrow_clean_whitespace(arr, unwrap)
    out = T.arrow_clean_whitespace(arr, False)
    if not unwrap.any():
        return out
    mask = pa.array(unwrap)
    return pc.replace_with_mask(out, mask, T.unwrap(out.filter(mask)))


@settings(max_examples=300, deadline=None)
@given(st.lists(texts, min_size=1, max_size=8), st.data())
def test_clean_up_equals_the_arrow_passes(values, data):
    arr = pa.array(values)
    unwrap = np.array(data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values))), bool)
    for flags in (False, True, unwrap):
        assert textpass.clean_whitespace(arr, flags).to_pylist() == reference_clean(arr, flags).to_pylist()


@settings(max_examples=400, deadline=None)
@given(st.lists(texts, min_size=1, max_size=8))
def test_segmentation_equals_the_arrow_passes(values):
    """On cleaned texts (what the worker segments): the same sentences, batch by batch."""
    arr = T.arrow_clean_whitespace(pa.array(values), False)
    for segment in (True, False):
        assert textpass.split_sentences(arr, segment).to_pylist() == \
            T.arrow_split_sentences(arr, segment).to_pylist()


@settings(max_examples=60, deadline=None)
@given(st.lists(texts, min_size=2, max_size=8), st.integers(0, 3), st.booleans())
def test_slices_and_large_strings(values, start, large):
    """A slice (non-zero offset) reads only its own texts; large_string arrays work the same."""
    arr = pa.array(values, pa.large_string() if large else pa.string()).slice(start % len(values))
    cleaned = textpass.clean_whitespace(arr, False)
    assert cleaned.to_pylist() == T.arrow_clean_whitespace(arr, False).to_pylist()
    assert textpass.split_sentences(cleaned).to_pylist() == T.arrow_split_sentences(cleaned).to_pylist()


def test_quotations_and_stops_by_hand():
    """The cases where RE2's and Python's scans decide: matches never overlap, nested quotations close first."""
    cases = {
        "1\uff0e2\uff0e3 end": ["1\uff0e2\uff0e", "3 end"],       # the second full stop's digit was taken
        "\u300c\u4ed6\u8bf4\u300e\u597d\u3002\u300f\u7136\u540e\u3002\u300d\u8d70\u4e86\u3002":
            ["\u300c\u4ed6\u8bf4\u300e\u597d\u3002\u300f\u7136\u540e\u3002\u300d", "\u8d70\u4e86\u3002"],
        "Th. Ch. Mann wrote. Then": ["Th. Ch. Mann wrote.", "Then"],
        "at 2a.m. Eastern": ["at 2a.m.", "Eastern"],            # no word boundary before "a.m"
        "at 5 p.m. Then": ["at 5 p.m. Then"],
        "see p. 5. Next": ["see p. 5.", "Next"],
        "A. B. Smith said. \"Yes.\" (Then) it": ["A. B. Smith said.", "\"Yes.\"", "(Then) it"],
        "\u2026\u2026\u2026x": ["\u2026\u2026", "\u2026x"],
    }
    arr = pa.array(list(cases))
    assert textpass.split_sentences(arr).to_pylist() == list(cases.values())
    assert T.arrow_split_sentences(arr).to_pylist() == list(cases.values())


def test_a_private_use_character_stays_itself():
    """The Arrow path hides stops as private-use characters and gave one already in the text back as a stop."""
    text = "\u300c\u4ed6\u300e\u597d\u300f\ue000\u300d"
    assert textpass.split_sentences(pa.array([text])).to_pylist() == [[text]]


def test_empty_inputs_and_texts():
    assert textpass.clean_whitespace(pa.array([], pa.string())).to_pylist() == []
    assert textpass.split_sentences(pa.array([], pa.string())).to_pylist() == []
    assert textpass.clean_whitespace(pa.array(["", "  \n\n ", "a"])).to_pylist() == ["", "", "a"]
    assert textpass.split_sentences(pa.array(["", "a", ""])).to_pylist() == [[], ["a"], []]


def test_classes_of_known_code_points():
    cls = classes()
    assert cls[ord(" ")] & TRIM and cls[0x3000] & TRIM and cls[ord("\n")] & TRIM and not cls[ord("a")] & TRIM
    assert cls[0x200B] & REMOVE and cls[0x07] & REMOVE and not cls[ord("\t")] & REMOVE
    assert cls[ord("\t")] & EXOTIC and cls[0x00A0] & EXOTIC and not cls[ord(" ")] & EXOTIC
    assert cls[ord(".")] & EN_STOP and cls[0xFF0E] & ZH_STOP and not cls[0x2026] & ZH_STOP
    assert cls[ord("7")] & DIGIT and cls[0xFF17] & DIGIT and not cls[ord("a")] & DIGIT


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=list("()[],;:.!? \t\n\f\r\x0bxé中"), max_size=40), min_size=1, max_size=8))
def test_punctuation_tidy_equals_the_arrow_passes(values):
    arr = pa.array(values)
    assert textpass.tidy_punctuation(arr).to_pylist() == arrow_tidy_punctuation(arr).to_pylist()


def test_punctuation_tidy_by_hand():
    cases = {"Aegina (; Greek: x)": "Aegina (Greek: x)", "a ( ) b": "a b", "x ( , ; ) y": "x (;) y",
             "a , , ;x": "a,x", "a ) )": "a))", "p  [ ]q": "pq", ",  ,  x": ",  x"}
    assert textpass.tidy_punctuation(pa.array(list(cases))).to_pylist() == list(cases.values())
