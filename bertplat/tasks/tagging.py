"""Tagging schemes: tag sequences to entity spans and back, for IOB1, IOB2, BIOES, BIOS and BMES.

A tag is ``O`` or ``<prefix>-<TYPE>`` (the type is everything after the first ``-``). The schemes:

=======  ==========================  ============================================================
scheme   prefixes                    a chunk is written as
=======  ==========================  ============================================================
iob1     I, B (and O)                ``I I I``; ``B`` only opens a chunk right after another chunk
                                     of the same type (CoNLL-2003's original release, its chunk
                                     column)
iob2     B, I                        ``B I I`` (BIO; CoNLL-2003 NER as most copies distribute it)
bioes    B, I, E, S                  ``B I E``; one token: ``S`` (IOBES)
bios     B, I, S                     ``B I I``; one token: ``S`` (CLUENER's "bios" markup)
bmes     B, M, E, S                  ``B M E``; one token: ``S`` (Chinese NER: MSRA, Weibo, Resume)
=======  ==========================  ============================================================

Accepted names (case-insensitive, ``-``/``_`` ignored): ``iob1``; ``iob2``, ``iob``, ``bio``;
``bioes``, ``iobes``, ``bieso``; ``bios``, ``iobs``; ``bmes``, ``bmeso``, ``bmeos``. BIOS is *not* BMES
with other letters: a multi-token BIOS chunk has no end tag, so it is its own scheme.

Decoding (:func:`tags_to_spans`) is lenient exactly as conlleval is, in the form seqeval's default
mode extends to E and S (and BMES's M read as I): a chunk ends before ``B``, ``S``, ``O`` or a tag
of another type, and after ``E`` or ``S``; a chunk starts at ``B`` or ``S``, at a type change, at
``I``/``E`` after ``O``, and at ``I``/``E`` after ``E`` or ``S``. So ``O I-PER`` is a PER chunk
(ill-formed in IOB2, normal in IOB1), and ``B-PER I-LOC`` is two chunks. For B/I/O tags these rules
are conlleval's, so IOB1 and IOB2 decode the same way; they differ in how spans are *written*.
:func:`validate_tags` reports what a strict reader of the scheme would reject.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

SCHEMES = ("iob1", "iob2", "bioes", "bios", "bmes")
# The prefixes each scheme may use, besides O.
SCHEME_PREFIXES: dict[str, str] = {"iob1": "IB", "iob2": "BI", "bioes": "BIES", "bios": "BIS", "bmes": "BMES"}
_ALIASES = {
    "iob1": "iob1",
    "iob2": "iob2", "iob": "iob2", "bio": "iob2",
    "bioes": "bioes", "iobes": "bioes", "bieso": "bioes",
    "bios": "bios", "iobs": "bios",
    "bmes": "bmes", "bmeso": "bmes", "bmeos": "bmes",
}


class Span(NamedTuple):
    """An entity: its type and its token range ``[start, end)``."""

    label: str
    start: int
    end: int


def normalize_scheme(name: str) -> str:
    """The canonical scheme name for ``name`` (case-insensitive; aliases such as iobes -> bioes)."""
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in _ALIASES:
        raise ValueError(f"unknown tagging scheme {name!r}: use one of {', '.join(SCHEMES)} "
                         f"(aliases: {', '.join(sorted(set(_ALIASES) - set(SCHEMES)))})")
    return _ALIASES[key]


def split_tag(tag: str) -> tuple[str, str | None]:
    """``'B-PER'`` -> ``('B', 'PER')``; ``'O'`` -> ``('O', None)``. Raises on a tag with no type."""
    if tag == "O":
        return "O", None
    prefix, sep, label = tag.partition("-")
    if not sep or not label or len(prefix) != 1:
        raise ValueError(f"tag {tag!r} is neither O nor <prefix>-<TYPE> (such as B-PER)")
    return prefix, label


def _parse(tags: Sequence[str], scheme: str) -> list[tuple[str, str | None]]:
    """(letter, type) per tag, with BMES's M read as I; a prefix outside the scheme is an error."""
    allowed = SCHEME_PREFIXES[scheme]
    parsed = []
    for i, tag in enumerate(tags):
        try:
            letter, label = split_tag(tag)
        except ValueError as e:
            raise ValueError(f"token {i}: {e}") from None
        if letter != "O" and letter not in allowed:
            raise ValueError(f"token {i}: tag {tag!r} has prefix {letter!r}, which {scheme} does not use "
                             f"(it uses {', '.join(allowed)} and O); is the tagging scheme right?")
        parsed.append(("I" if letter == "M" else letter, label))
    return parsed


def _ends_before(prev: str, letter: str, prev_type: str | None, label: str | None) -> bool:
    """Whether the chunk open at the previous token ends before this one (conlleval/seqeval rules)."""
    if prev in "ES":
        return True
    if prev in "BI" and letter in "BSO":
        return True
    return prev != "O" and prev_type != label


def _starts_at(prev: str, letter: str, prev_type: str | None, label: str | None) -> bool:
    """Whether a chunk starts at this token (conlleval/seqeval rules)."""
    if letter in "BS":
        return True
    if letter in "IE" and prev in "ESO":
        return True
    return letter != "O" and prev_type != label


def tags_to_spans(tags: Sequence[str], scheme: str) -> list[Span]:
    """The entity spans of one tag sequence, decoded leniently as conlleval does (see the module doc)."""
    scheme = normalize_scheme(scheme)
    spans: list[Span] = []
    prev, prev_type, begin = "O", None, 0
    for i, (letter, label) in enumerate([*_parse(tags, scheme), ("O", None)]):
        if _ends_before(prev, letter, prev_type, label):
            spans.append(Span(prev_type or "", begin, i))
        if _starts_at(prev, letter, prev_type, label):
            begin = i
        prev, prev_type = letter, label
    return spans


def _check_spans(spans: Sequence[Span], length: int) -> list[Span]:
    ordered = sorted((Span(*s) for s in spans), key=lambda s: (s.start, s.end))
    last_end = 0
    for s in ordered:
        if not s.label or any(c.isspace() for c in s.label):
            raise ValueError(f"span {tuple(s)}: the entity type must be a non-empty word without spaces")
        if not 0 <= s.start < s.end <= length:
            raise ValueError(f"span {tuple(s)} is not a non-empty range inside a sequence of {length} tokens")
        if s.start < last_end:
            raise ValueError(f"span {tuple(s)} overlaps the span before it; tags cannot hold nested entities")
        last_end = s.end
    return ordered


def spans_to_tags(spans: Sequence[Span], length: int, scheme: str) -> list[str]:
    """The tag sequence of ``length`` tokens that holds ``spans`` (non-overlapping) in ``scheme``."""
    scheme = normalize_scheme(scheme)
    tags = ["O"] * length
    prev_end, prev_label = -1, None
    for label, start, end in _check_spans(spans, length):
        if scheme == "iob1":
            # IOB1: I throughout; B only where the chunk touches a previous chunk of its type.
            first = "B" if (prev_end == start and prev_label == label) else "I"
            inside, last, single = "I", "I", first
        elif scheme == "iob2":
            first, inside, last, single = "B", "I", "I", "B"
        elif scheme == "bioes":
            first, inside, last, single = "B", "I", "E", "S"
        elif scheme == "bios":
            first, inside, last, single = "B", "I", "I", "S"
        else:  # bmes
            first, inside, last, single = "B", "M", "E", "S"
        if end - start == 1:
            tags[start] = f"{single}-{label}"
        else:
            tags[start] = f"{first}-{label}"
            for i in range(start + 1, end - 1):
                tags[i] = f"{inside}-{label}"
            tags[end - 1] = f"{last}-{label}"
        prev_end, prev_label = end, label
    return tags


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """``tags`` rewritten from one scheme to another, through their spans (ill-formed input is
    decoded leniently first, so the output is always well-formed)."""
    return spans_to_tags(tags_to_spans(tags, source), len(tags), target)


def entity_types(tags: Iterable[str]) -> list[str]:
    """The entity types the tags mention, sorted (``B-PER``, ``I-LOC`` -> ``['LOC', 'PER']``)."""
    return sorted({label for t in tags for _, label in [split_tag(t)] if label is not None})


def tag_vocabulary(types: Iterable[str], scheme: str) -> list[str]:
    """Every tag of ``scheme`` for ``types``: O, then each type's tags in the scheme's prefix order."""
    prefixes = SCHEME_PREFIXES[normalize_scheme(scheme)]
    return ["O", *(f"{p}-{t}" for t in types for p in prefixes)]


def validate_tags(tags: Sequence[str], scheme: str) -> list[str]:
    """What a strict reader of ``scheme`` would object to in one tag sequence, as sentences naming
    the token; empty when the sequence is well-formed. Decoding still works on ill-formed input."""
    scheme = normalize_scheme(scheme)
    allowed = SCHEME_PREFIXES[scheme]
    parsed: list[tuple[str, str | None]] = []
    problems: list[str] = []
    for i, tag in enumerate(tags):
        try:
            letter, label = split_tag(tag)
        except ValueError as e:
            problems.append(f"token {i}: {e}")
            letter, label = "O", None
        if letter != "O" and letter not in allowed:
            problems.append(f"token {i}: prefix {letter!r} of {tag!r} is not one of {scheme}'s ({allowed}, O)")
            letter, label = "O", None
        parsed.append((letter, label))
    cont = {"iob1": "I", "iob2": "I", "bioes": "I", "bios": "I", "bmes": "M"}[scheme]
    closing = "E" if scheme in ("bioes", "bmes") else None
    for i, (letter, label) in enumerate(parsed):
        prev, prev_type = parsed[i - 1] if i else ("O", None)
        nxt, next_type = parsed[i + 1] if i + 1 < len(parsed) else ("O", None)
        in_chunk = prev in ("B", cont) and prev_type == label
        if scheme == "iob1":
            if letter == "B" and not (prev in "IB" and prev_type == label):
                problems.append(f"token {i}: {tags[i]!r} does not follow a chunk of its type "
                                "(in iob1, B- only separates two adjacent chunks of one type; use I-)")
            continue
        if letter in (cont, closing) and not in_chunk:
            problems.append(f"token {i}: {tags[i]!r} does not continue a chunk of its type "
                            f"(a {scheme} chunk starts with B-{'' if scheme == 'iob2' else ' or is a single S-'})")
        if scheme == "iob2":
            continue
        goes_on = nxt in (cont, closing) and next_type == label
        if letter in ("B", cont) and not goes_on:
            if closing is not None:
                problems.append(f"token {i}: {tags[i]!r} is not followed by {cont}- or E- of its type "
                                f"(a {scheme} chunk ends with E-, a one-token chunk is S-)")
            elif letter == "B":
                problems.append(f"token {i}: {tags[i]!r} is a one-token chunk (in bios that is S-)")
    return problems


def detect_scheme(tags: Iterable[str]) -> str | None:
    """The scheme a body of tags is written in, from the prefixes it uses: M -> bmes, E -> bioes,
    S without E -> bios, B/I only -> iob1 if some chunk starts with I (after O or another type),
    else iob2. ``None`` when there are no entity tags at all."""
    letters: set[str] = set()
    i_starts = False
    prev, prev_type = "O", None
    for tag in tags:
        letter, label = split_tag(tag)
        letters.add(letter)
        if letter == "I" and (prev == "O" or prev_type != label):
            i_starts = True
        prev, prev_type = letter, label
    letters.discard("O")
    if not letters:
        return None
    if "M" in letters:
        return "bmes"
    if "E" in letters:
        return "bioes"
    if "S" in letters:
        return "bios"
    return "iob1" if i_starts else "iob2"
