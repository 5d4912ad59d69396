"""Text normalisation and sentence segmentation, vectorised over Arrow string arrays.

The rules below are defined here as chains of pyarrow compute passes (RE2 regexes compiled once in
C++): ``arrow_clean_whitespace`` and ``arrow_split_sentences``. The worker runs their compiled
equivalents (``textpass``, one scan each instead of six and ten), which the tests hold to them.
Unicode normalisation happens before, per document, in the worker, where CPython's quick check
makes the common already-normalised case almost free (1 GB/s, against 0.1 GB/s in Arrow).

Whitespace clean-up, in order (line endings are already ``\\n``): control and
zero-width characters removed; tabs and exotic spaces to a plain space; runs of spaces collapsed;
spaces around newlines removed; three or more newlines to one blank line; optionally hard-wrapped
lines joined; leading and trailing whitespace stripped.

Sentence segmentation is rule based (good enough for NSP/SOP, no model, no downloads):
every newline ends a sentence; English ``. ! ?`` (plus closing quotes and brackets) followed by
a space and an upper-case letter, digit or opening quote ends one, except after common
abbreviations (title-case ones anywhere; lower-case reference forms such as ``c.``, ``p.``,
``no.``, ``vol.`` before a number; ``e.g.``, ``i.e.``, ``cf.``, ``approx.`` always) and initials;
Chinese ``。！？`` and the other full-width and ideographic stops (``．`` U+FF0E, ``｡`` U+FF61,
``︒﹒﹖﹗``) and ``……`` (plus closing quotes) always end one, except ``．`` between digits, and
except inside a quotation that holds a nested quotation (``『…「…」…』``, ``“…‘…’…”``): such a
quotation closes before the sentence may end (up to ``NESTED_QUOTE_MAX`` characters).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Characters removed outright: C0/C1 controls other than \t and \n, zero-width and direction marks, BOM.
_REMOVE = "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\u2060\ufeff]"
# Tabs, exotic spaces (NBSP, en/em spaces, ideographic space...) and runs of spaces become one space.
_EXOTIC = "\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_SPACES = f"[ {_EXOTIC}]{{2,}}|[{_EXOTIC}]"
_PARAGRAPH_MARK = "\x1d"
_PROTECTED_DOT = "\x1f"

_ABBREVIATIONS = (
    "Mr|Mrs|Ms|Mx|Dr|Prof|Sr|Jr|St|Mt|Ft|Rev|Hon|Gen|Col|Lt|Sgt|Capt|Cmdr|Adm|Gov|Sen|Rep|Pres|"
    "Inc|Ltd|Co|Corp|Bros|No|Nos|Vol|Vols|Fig|Figs|Eq|Ch|Sec|pp|vs|approx|cf|al|ca|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|e\\.g|i\\.e|a\\.m|p\\.m|U\\.S|U\\.K|[A-Z]"
)
_ABBREV_RE = f"\\b({_ABBREVIATIONS})\\. "
# Lower-case reference abbreviations end a sentence unless a number follows ("c. 1750", "world no. 1").
_LOWER_BEFORE_NUMBER = (
    "c|ca|cca|fl|b|d|r|n|p|pp|no|nos|vol|vols|fig|figs|ch|chap|sec|secs|para|art|op|ed|eds|col|cols|"
    "l|ll|v|vv|nr|tab|pl|est|approx|cf|vs|v|ibid|id|ms|mss|fol|ff|lit|repr|trans|rev|ser|suppl|tr"
)
_LOWER_NUMBER_RE = f"\\b({_LOWER_BEFORE_NUMBER})\\. ([0-9])"
# Lower-case forms that never end a sentence before a capital either ("e.g. Paris", "cf. Smith").
_ALWAYS = "e\\.g|i\\.e|cf|approx|viz|vs|ca|cca|esp|incl|resp|lit|et al|sc|viz"
_ALWAYS_RE = f"\\b({_ALWAYS})\\. "
# Multi-letter initials and abbreviated first names ("Wm. Shakespeare", "Th. Mann", "Geo. Eliot").
_NAMES_RE = "\\b(Wm|Th|Chas|Jas|Thos|Geo|Benj|Jos|Robt|Saml|Edw|Ch|Ph|Yu|Zh)\\. ([A-Z])"
# The four rules in two fused passes (see _protect_english): the ones that need only ". " after the word,
# then the ones that also look at the next character.
_WORD_DOT_RE = f"{_ABBREV_RE}|{_ALWAYS_RE}"
_WORD_DOT_NEXT_RE = f"{_LOWER_NUMBER_RE}|{_NAMES_RE}"
_EN_END_RE = "([.!?]+[\"'\u201d\u2019)\\]]*) +([\"'\u201c\u2018(\\[]?[A-Z0-9])"
# Chinese stops: 。！？, full-width ．, half-width ｡, vertical ︒, small ﹒﹖﹗, and an ellipsis …… .
ZH_STOPS = "\u3002\uff01\uff1f\uff0e\uff61\ufe12\ufe52\ufe56\ufe57"
_ZH_CLOSERS = "\u201d\u2019\u300d\u300f\uff09\u3011\u300b\u3009\ufe42\ufe44\""
_ZH_END_RE = f"((?:[{ZH_STOPS}]|\u2026\u2026)+[{_ZH_CLOSERS}]*)"
# A full-width full stop between digits is a decimal point ("３．１４"), not a sentence end.
_DECIMAL_FW_RE = "([0-9\uff10-\uff19])\uff0e([0-9\uff10-\uff19])"
_PROTECTED_FW_DOT = "\x1e"
# A quotation holding a nested quotation, one level deep (the outer pair, then the inner pair):
# its stops are protected so that it closes before a sentence ends.
NESTED_QUOTE_MAX = 600
_NESTED_PAIRS = (("\u300e", "\u300f", "\u300c", "\u300d"), ("\u300c", "\u300d", "\u300e", "\u300f"),
                 ("\u201c", "\u201d", "\u2018", "\u2019"))
_NESTED_RE = "|".join(f"{o}[^{o}{c}\n]*{io}[^{o}{c}\n]*{c}" for o, c, io, _ in _NESTED_PAIRS)
# Stops inside a nested quotation become private-use characters until the split is done.
_STOP_CHARS = ZH_STOPS + ".!?\u2026"
_HIDDEN = "".join(chr(0xE000 + i) for i in range(len(_STOP_CHARS)))
_HIDE = str.maketrans(_STOP_CHARS, _HIDDEN)
_UNHIDE = str.maketrans(_HIDDEN, _STOP_CHARS)
# Both rules in one pass: an English match fills groups 1 and 2, a Chinese one group 3, and the
# template "\\1\\3<newline>\\2" is right for either, since a group that did not take part is empty.
_END_RE = f"{_EN_END_RE}|{_ZH_END_RE}"


def clean_whitespace(arr: pa.StringArray, unwrap_lines: bool | np.ndarray = False) -> pa.StringArray:
    """Controls out, spaces collapsed, line structure tidied (see the module docstring), in one compiled pass
    (``textpass``); ``unwrap_lines`` may be a mask of the texts whose hard-wrapped lines are joined."""
    from bertplat.ingest import textpass  # numba: imported where texts are cleaned only

    return textpass.clean_whitespace(arr, unwrap_lines)


def split_sentences(arr: pa.StringArray, segment: bool = True) -> pa.ListArray:
    """Each text's sentences, trimmed, empty ones dropped: ``list<string>`` aligned with ``arr``, in one
    compiled pass (``textpass``). The texts must be cleaned (:func:`clean_whitespace`) first."""
    from bertplat.ingest import textpass

    return textpass.split_sentences(arr, segment)


def arrow_clean_whitespace(arr: pa.StringArray, unwrap_lines: bool) -> pa.StringArray:
    """The definition of :func:`clean_whitespace` in Arrow kernels (six passes), which the tests hold it to.

    Line endings must already be ``\\n`` (the worker converts ``\\r\\n`` and ``\\r`` per document,
    where a memchr finds the rare documents that have them far faster than a regex pass)."""
    arr = pc.replace_substring_regex(arr, pattern=_REMOVE, replacement="")
    arr = pc.replace_substring_regex(arr, pattern=_SPACES, replacement=" ")
    # Runs of spaces are single now, so two literal passes trim spaces around newlines.
    arr = pc.replace_substring(arr, pattern="\n ", replacement="\n")
    arr = pc.replace_substring(arr, pattern=" \n", replacement="\n")
    arr = pc.replace_substring_regex(arr, pattern="\n{3,}", replacement="\n\n")
    if unwrap_lines:
        arr = unwrap(arr)
    return pc.utf8_trim_whitespace(arr)


def unwrap(arr: pa.StringArray) -> pa.StringArray:
    """Join hard-wrapped lines: a single newline becomes a space, blank lines stay (after clean-up,
    so that lines holding only spaces already count as blank)."""
    arr = pc.replace_substring(arr, pattern="\n\n", replacement=_PARAGRAPH_MARK)
    arr = pc.replace_substring(arr, pattern="\n", replacement=" ")
    return pc.replace_substring(arr, pattern=_PARAGRAPH_MARK, replacement="\n\n")


def _all_ascii(arr: pa.StringArray) -> bool:
    return bool(pc.all(pc.string_is_ascii(arr)).as_py() is not False)


def arrow_split_sentences(arr: pa.StringArray, segment: bool = True) -> pa.ListArray:
    """The definition of :func:`split_sentences` in Arrow kernels (about ten passes), which the tests hold it to.

    The sentences of a text, joined, give back the text up to whitespace (a property test checks).
    """
    marked = arr
    if segment:
        marked = _protect_english(marked)
        if _all_ascii(arr):
            marked = pc.replace_substring_regex(marked, pattern=_EN_END_RE, replacement="\\1\n\\2")
        else:
            # the marks are put in and taken out on the texts that need them only (restored before the split:
            # no mark is whitespace or a newline, so the split and the trim are the same either way)
            full_stops = rows_containing(marked, "\uff0e")
            marked = replace_in_rows(marked, full_stops, _DECIMAL_FW_RE, "\\1" + _PROTECTED_FW_DOT + "\\2")
            marked, hidden = _protect_nested_quotes(marked)
            # a sentence end becomes a newline, so one literal split (faster than a regex split) cuts both
            marked = pc.replace_substring_regex(marked, pattern=_END_RE, replacement="\\1\\3\n\\2")
            marked = replace_in_rows(marked, full_stops, _PROTECTED_FW_DOT, "\uff0e", literal=True)
            marked = _unhide(marked, hidden)
    pieces = pc.split_pattern(marked, pattern="\n")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(pieces))
    if segment:
        flat = pc.replace_substring(flat, pattern=_PROTECTED_DOT, replacement=".")
    return _drop_empty(pieces, flat)


def rows_containing(arr: pa.StringArray, *literals: str) -> np.ndarray:
    """Mask of the texts of ``arr`` that may hold one of ``literals``, by a numpy scan of the data buffer (no
    copy): about 3 GB/s, where Arrow's per-string ``match_substring`` runs at about 500 MB/s. A literal
    spanning two texts marks the first: a false positive, which costs a prefiltered pass a little and
    changes no result."""
    mask = np.zeros(len(arr), dtype=bool)
    if len(arr) == 0 or arr.buffers()[2] is None:
        return mask
    offsets = value_offsets(arr)
    first = int(offsets[0])
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[first: int(offsets[-1])]
    ends = offsets[1:] - first
    for literal in literals:
        needle = np.frombuffer(literal.encode("utf-8"), dtype=np.uint8)
        # the starts where the last byte matches (the rarest in the literals used here: ";", "_", ...), then
        # the bytes before it
        hits = np.flatnonzero(data[len(needle) - 1:] == needle[-1])
        for k in range(len(needle) - 1):
            hits = hits[data[hits + k] == needle[k]]
        mask[np.searchsorted(ends, hits, side="right")] = True
    return mask


def rows_matching(arr: pa.StringArray, pattern: str, *literals: str) -> np.ndarray:
    """The rows of the texts matching ``pattern``, every match of which holds one of ``literals``: the regex runs
    on the texts that :func:`rows_containing` selects only."""
    candidates = np.flatnonzero(rows_containing(arr, *literals))
    if not len(candidates):
        return candidates
    has = np.asarray(pc.match_substring_regex(arr.take(pa.array(candidates)), pattern=pattern).fill_null(False))
    return candidates[has]


def value_offsets(arr: pa.StringArray) -> np.ndarray:
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    return np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset: arr.offset + len(arr) + 1]


def string_buffers(arr: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(data bytes, offsets into them) of a string array without copying, for the compiled kernels (which
    index the whole buffer, so a slice needs no copy either). An empty array or buffer gives one zero byte."""
    if arr.null_count:
        raise ValueError("the compiled kernels need texts without nulls")
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise TypeError(f"the compiled kernels need a string array, got {arr.type}")
    if len(arr) == 0:
        return np.zeros(1, np.uint8), np.zeros(1, np.int32)
    data = arr.buffers()[2]
    return (np.frombuffer(data, np.uint8) if data is not None and data.size else np.zeros(1, np.uint8),
            value_offsets(arr))


def replace_in_rows(arr: pa.StringArray, mask: np.ndarray, pattern: str, replacement: str,
                    literal: bool = False) -> pa.StringArray:
    """``replace_substring_regex`` (or the literal ``replace_substring``) on the texts ``mask`` selects only:
    the same result as on every text when the others cannot match (``mask`` from :func:`rows_containing`
    with a literal every match holds)."""
    replace = pc.replace_substring if literal else pc.replace_substring_regex
    if not mask.any():
        return arr
    sizes = np.diff(value_offsets(arr))
    if sizes[mask].sum() > sizes.sum() / 2:   # RE2's cost goes by bytes: mostly selected, one full pass is cheaper
        return replace(arr, pattern=pattern, replacement=replacement)
    selected = pa.array(mask)
    return pc.replace_with_mask(arr, selected, replace(arr.filter(selected), pattern=pattern, replacement=replacement))


def _protect_english(arr: pa.StringArray) -> pa.StringArray:
    """Dots of abbreviations and initials become a protected mark that no end rule sees.

    Two passes of two rules each. Fusing them into alternations gives the same result as one pass per rule:
    each match ends at its own ``". "`` and no word alternative holds ``". "``, so matches never overlap
    and every protected dot is decided by the word before it alone. The two passes stay apart because
    the second one's rules consume the character after the space ("Wm. A. Smith": the first pass
    protects "A." before the second consumes the "A" of "Wm. A")."""
    arr = pc.replace_substring_regex(arr, pattern=_WORD_DOT_RE, replacement="\\1\\2" + _PROTECTED_DOT + " ")
    return pc.replace_substring_regex(arr, pattern=_WORD_DOT_NEXT_RE,
                                      replacement="\\1\\3" + _PROTECTED_DOT + " \\2\\4")


def _protect_nested_quotes(arr: pa.StringArray) -> tuple[pa.StringArray, np.ndarray]:
    """Hide the stops inside quotations that hold a nested quotation (only the few texts that have
    one go through Python), so that such a quotation closes before its sentence ends. Returns the
    texts and the rows where stops may be hidden (for :func:`_unhide`)."""
    rows = rows_matching(arr, _NESTED_RE, *(o for o, *_ in _NESTED_PAIRS))
    if not len(rows):
        return arr, rows
    nested = re.compile(_NESTED_RE)

    def hide(m: re.Match) -> str:
        span = m.group(0)
        if len(span) > NESTED_QUOTE_MAX:
            return span
        # the stops that end the quotation itself stay, so the sentence ends after its closing mark
        body = span[:-1]
        inner = body.rstrip(_STOP_CHARS)
        return inner.translate(_HIDE) + body[len(inner):] + span[-1]

    values = [nested.sub(hide, t) for t in arr.take(pa.array(rows)).to_pylist()]
    return replace_rows(arr, rows, values), rows


def _unhide(arr: pa.StringArray, rows: np.ndarray) -> pa.StringArray:
    """The stops that :func:`_protect_nested_quotes` hid in ``rows``, back."""
    if not len(rows):
        return arr
    return replace_rows(arr, rows, [t.translate(_UNHIDE) for t in arr.take(pa.array(rows)).to_pylist()])


def replace_rows(arr: pa.StringArray, rows: np.ndarray, values: list[str]) -> pa.StringArray:
    """``arr`` with the texts at ``rows`` replaced by ``values``."""
    mask = np.zeros(len(arr), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(arr, pa.array(mask), pa.array(values, pa.string()))


def _drop_empty(pieces: pa.ListArray, flat: pa.StringArray) -> pa.ListArray:
    """Rebuild the list array without its empty strings (vectorised offset arithmetic)."""
    keep = np.asarray(pc.greater(pc.utf8_length(flat), 0).fill_null(False))
    if keep.all():
        return pa.ListArray.from_arrays(_offsets(pieces), flat)
    parent = np.asarray(pc.list_parent_indices(pieces))
    counts = np.bincount(parent[keep], minlength=len(pieces))
    offsets = np.zeros(len(pieces) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep)))


def _offsets(lists: pa.ListArray) -> pa.Array:
    offsets = np.asarray(lists.offsets)
    return pa.array(offsets - offsets[0])
