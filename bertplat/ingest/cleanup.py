"""Clean-up of WikiExtractor leftovers, vectorised over Arrow string arrays (RE2 in C++).

WikiExtractor leaves HTML entities escaped (``&amp;``, ``&lt;br&gt;``), markup it did not expand
(``</dl>`` lines, ``<poem>``, ``<ref name=..>``), placeholders for formulas and code
(``formula_4``, ``codice_2``), empty parentheses where templates were (``Aegina (; Greek: ...``)
and inline-style fragments (``px; width:px;">S``). The steps, in order:

1. entities unescaped (``html.unescape``, in Python only for the texts holding an entity), so that
   escaped tags become tags the next steps see;
2. lines holding only markup removed;
3. inline tags removed (a ``<`` directly followed by a tag name, so ``a < b`` stays);
4. style fragments (``width:200px;``, ``">``) removed;
5. ``formula_N`` / ``codice_N`` removed, or replaced by ``placeholder_token``;
6. parentheses left empty or opening on punctuation tidied, spaces before punctuation removed.

Whitespace is collapsed afterwards by ``text.clean_whitespace``.
"""

from __future__ import annotations

import html

import pyarrow as pa
import pyarrow.compute as pc

from bertplat.ingest.text import replace_in_rows, replace_rows, rows_containing, rows_matching

_ENTITY_RE = "&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});"
_TAG = "</?[a-zA-Z][a-zA-Z0-9:-]*(?:\\s[^<>\\n]*)?/?>"
_MARKUP_LINE_RE = f"(?m)^[ \\t]*(?:{_TAG}[ \\t]*)+$"
_STYLE_RE = "(?:[a-z-]+ ?: ?)?-?[0-9.]*(?:px|em|pt);\\s*|\"\\s*>"
_PLACEHOLDER_RE = "\\b(?:formula|codice)_[0-9]+\\b"
# "( ; Greek: x)" -> "(Greek: x)"; "()" and "( , )" -> ""; " ," -> ","
_EMPTY_PARENS_RE = "\\s*[(\\[]\\s*[,;:]*\\s*[)\\]]"
_OPEN_PUNCT_RE = "([(\\[])\\s*[,;:]+\\s*"
_SPACE_BEFORE_PUNCT_RE = " +([,;:.!?)\\]])"
_DOUBLE_PUNCT_RE = "([,;:])(?:\\s*[,;:])+"


def unescape_entities(arr: pa.StringArray) -> pa.StringArray:
    """HTML entities unescaped; only the texts that hold one pass through Python."""
    rows = rows_matching(arr, _ENTITY_RE, "&")
    if not len(rows):
        return arr
    return replace_rows(arr, rows, [html.unescape(t) for t in arr.take(pa.array(rows)).to_pylist()])


def clean_markup(arr: pa.StringArray, placeholder_token: str = "") -> pa.StringArray:
    """Every step of the module docstring on every text of ``arr``.

    A step whose every match holds a rare literal (``<`` for tags, ``px;`` or ``>`` for style, ``formula_``
    for placeholders) runs on the texts holding it only (:func:`rows_containing`); each mask is taken after
    the steps that could add its literal, so the result is that of every step on every text."""
    arr = unescape_entities(arr)
    tags = rows_containing(arr, "<")
    arr = replace_in_rows(arr, tags, _MARKUP_LINE_RE, "")
    arr = replace_in_rows(arr, tags, _TAG, " ")
    arr = replace_in_rows(arr, rows_containing(arr, "px;", "em;", "pt;", ">"), _STYLE_RE, "")
    token = placeholder_token.replace("\\", "\\\\")
    arr = replace_in_rows(arr, rows_containing(arr, "formula_", "codice_"), _PLACEHOLDER_RE, token)
    # parentheses are in most of the text's bytes (the long articles have them): compiled scans over every text
    from bertplat.ingest import textpass  # numba: imported where texts are cleaned only

    return textpass.tidy_punctuation(arr)


def arrow_tidy_punctuation(arr: pa.StringArray) -> pa.StringArray:
    """Step 6 of the module docstring as RE2 passes: the definition ``textpass.tidy_punctuation`` is held to."""
    arr = pc.replace_substring_regex(arr, pattern=_EMPTY_PARENS_RE, replacement="")
    arr = pc.replace_substring_regex(arr, pattern=_OPEN_PUNCT_RE, replacement="\\1")
    arr = pc.replace_substring_regex(arr, pattern=_DOUBLE_PUNCT_RE, replacement="\\1")
    return pc.replace_substring_regex(arr, pattern=_SPACE_BEFORE_PUNCT_RE, replacement="\\1")
