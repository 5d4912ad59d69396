"""Readers: one per file shape, each yielding :class:`RawRecord` s with file and line provenance.

- ``tsv`` / ``csv``: GLUE-style TSV (header or none, a BOM on the header line, quotes are text) and
  RFC 4180 CSV; columns by header name or 0-based index.
- ``jsonl``: one JSON object per line; fields by name (``a.b`` reaches into nested objects).
- ``json``: one document of records: a list, an object of objects, or ``{"key": [records]}``.
- ``parquet``: columns by name.
- ``conll``: CoNLL column files (``-DOCSTART-`` lines, blank lines between sentences, the token and tag
  columns chosen by index), as in the CoNLL-2003 shared task.
- ``char_ner``: Chinese character NER, one ``char tag`` per line (MSRA), blank line between sentences.
- ``tagged_lines``: one sentence per line, ``c c c<TAB>T T T``.
- ``squad``: SQuAD v1.1 / v2.0 JSON (``is_impossible`` kept, ``plausible_answers`` ignored).

A record a reader cannot use (a ragged row, a line that is not JSON) comes back with ``problem`` set
and becomes a reject row; a file whose *shape* is wrong (a mapped column missing from the header, a
CoNLL file without its tag column, a JSON file that is not SQuAD) raises :class:`TaskDataError` at once.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertplat.tasks.spec import ColumnMap, ReadOptions

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class TaskDataError(ValueError):
    """A task file whose shape does not match its spec; the message names the file, line and fix."""


@dataclass
class RawRecord:
    """One example as read: canonical field name -> raw value, and where it came from."""

    fields: dict[str, Any]
    file: str
    record: int                     # 1-based within the file
    line: int | None = None         # 1-based, where the format has lines
    where: str = ""                 # a locator for formats without lines (SQuAD: data[3].paragraphs[2].qas[0])
    problem: str | None = None      # set: the record is unusable (a reject reason)
    value: str | None = None        # the offending value, with ``problem``
    extra: dict[str, Any] = field(default_factory=dict)

    def at(self) -> str:
        if self.line is not None:
            return f"{self.file} line {self.line}"
        return f"{self.file} {self.where or f'record {self.record}'}"


def _encoding(options: ReadOptions) -> str:
    return "utf-8-sig" if options.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else options.encoding


def _lines(path: Path, rel: str, options: ReadOptions) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending); a decoding error names the line."""
    n = 0
    try:
        with open(path, encoding=_encoding(options), newline="") as f:
            for n, line in enumerate(f, 1):
                yield n, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{rel} line {n + 1}: not valid {options.encoding} text ({exc.reason}); set "
                            "options.encoding in the task YAML") from None


# -- CSV / TSV ---------------------------------------------------------------------------------
def read_delimited(path: Path, rel: str, columns: ColumnMap, options: ReadOptions, fmt: str,
        labelled: bool = True) -> Iterator[RawRecord]:
    delimiter = options.delimiter or ("\t" if fmt == "tsv" else ",")
    quoting = options.quoting or ("none" if fmt == "tsv" else "minimal")
    header = True if options.header is None else options.header
    mapped = columns.mapped()
    n_lines = 0
    try:
        with open(path, encoding=_encoding(options), newline="") as f:
            reader = csv.reader(f, delimiter=delimiter,
                                quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL)
            index: dict[str, int] | None = None
            width: int | None = None
            record = 0
            for row in reader:
                line = n_lines + 1
                n_lines = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if index is None:
                    if header:
                        index = _resolve_columns(mapped, [c.strip() for c in row], rel)
                        width = len(row)
                        continue
                    index = _resolve_columns(mapped, None, rel)
                    width = len(row)
                    _check_width(index, width, rel, line)
                record += 1
                if len(row) != width:
                    yield RawRecord({}, rel, record, line, problem="ragged row",
                                    value=f"{len(row)} fields",
                                    extra={"detail": f"expected {width} fields ({'the header' if header else 'the first row'}"
                                                     f" has {width}); check the delimiter and quoting options"})
                    continue
                yield RawRecord({k: row[i] for k, i in index.items()}, rel, record, line)
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{rel} near line {n_lines + 1}: not valid {options.encoding} text ({exc.reason}); "
                            "set options.encoding in the task YAML") from None
    except csv.Error as exc:
        raise TaskDataError(f"{rel} line {n_lines + 1}: {exc}; check options.quoting and options.delimiter") from None


def _resolve_columns(mapped: dict[str, Any], header: list[str] | None, rel: str) -> dict[str, int]:
    index = {}
    for fld, col in mapped.items():
        if isinstance(col, int):
            index[fld] = col
        elif header is None:
            raise TaskDataError(f"{rel} has no header (options.header: false), so columns.{fld} must be a "
                                f"0-based column index, not {col!r}")
        elif col in header:
            index[fld] = header.index(col)
        else:
            raise TaskDataError(f"{rel} line 1: no column {col!r} (columns.{fld}); the header has "
                                f"{header}; fix columns.{fld} in the task YAML, or set options.header: false "
                                "and use column indexes if the first line is data")
    if header is not None:
        _check_width(index, len(header), rel, 1)
    return index


def _check_width(index: dict[str, int], width: int, rel: str, line: int) -> None:
    for fld, i in index.items():
        if not -width <= i < width:
            raise TaskDataError(f"{rel} line {line}: columns.{fld} is column {i}, but the line has {width} "
                                "columns; fix the column index (0-based) or options.delimiter")


# -- JSON Lines and Parquet --------------------------------------------------------------------
def _get(obj: dict[str, Any], key: str) -> tuple[bool, Any]:
    if key in obj:
        return True, obj[key]
    cur: Any = obj
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def _json_columns(columns: ColumnMap, rel: str) -> dict[str, Any]:
    mapped = columns.mapped()
    for fld, col in mapped.items():
        if isinstance(col, int):
            raise TaskDataError(f"{rel}: JSON fields are named, so columns.{fld} must be a field name, "
                                f"not index {col}")
    return mapped


def _json_record(obj: Any, mapped: dict[str, Any], rel: str, record: int, line: int | None,
                 where: str) -> RawRecord:
    """One JSON object as a record: its mapped fields, or a problem that becomes a reject."""
    if not isinstance(obj, dict):
        return RawRecord({}, rel, record, line, problem="not a JSON object", value=str(obj)[:80],
                         extra={"detail": "each record must be one JSON object"})
    fields, missing = {}, []
    for fld, key in mapped.items():
        found, value = _get(obj, key)
        if found:
            fields[fld] = value
        else:
            missing.append((fld, key))
    if missing:
        fld, key = missing[0]
        if record == 1:
            raise TaskDataError(f"{rel} {where}: no field {key!r} (columns.{fld}); the record has "
                                f"fields {sorted(obj)}; fix columns.{fld} in the task YAML")
        return RawRecord({}, rel, record, line, problem="missing field", value=key,
                         extra={"detail": f"columns.{fld} names field {key!r}, absent from this record"})
    return RawRecord(fields, rel, record, line)


def read_jsonl(path: Path, rel: str, columns: ColumnMap, options: ReadOptions, fmt: str,
        labelled: bool = True) -> Iterator[RawRecord]:
    mapped = _json_columns(columns, rel)
    record = 0
    for line, text in _lines(path, rel, options):
        if not text.strip():
            continue
        record += 1
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RawRecord({}, rel, record, line, problem="invalid JSON", value=text[:80],
                            extra={"detail": f"{exc.msg} at column {exc.colno}"})
            continue
        yield _json_record(obj, mapped, rel, record, line, f"line {line}")


def read_json(path: Path, rel: str, columns: ColumnMap, options: ReadOptions, fmt: str,
        labelled: bool = True) -> Iterator[RawRecord]:
    """One JSON document holding the records: a list of objects, an object of objects (``{key: record}``,
    e.g. keyed by title) or an object with one list of objects (``{"data": [...]}``). Records are
    numbered from 1 in document order; JSON documents have no line numbers."""
    mapped = _json_columns(columns, rel)
    try:
        with open(path, encoding=_encoding(options)) as f:
            doc = json.load(f)
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{rel}: not valid {options.encoding} text ({exc.reason}); set options.encoding "
                            "in the task YAML") from None
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"{rel} line {exc.lineno}: not valid JSON ({exc.msg}); a json task file is one "
                            "document (use format: jsonl for one object per line)") from None
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(doc) == 1 and len(lists) == 1:
            doc = lists[0]
        elif all(isinstance(v, dict) for v in doc.values()):
            doc = list(doc.values())
    if not isinstance(doc, list):
        raise TaskDataError(f"{rel}: expected a list of records, an object of records or an object with one "
                            f"list of records, found a JSON {type(doc).__name__} of another shape")
    for record, obj in enumerate(doc, 1):
        yield _json_record(obj, mapped, rel, record, None, f"record {record}")


def read_parquet(path: Path, rel: str, columns: ColumnMap, options: ReadOptions, fmt: str,
        labelled: bool = True) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise TaskDataError(f"{rel}: not a Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    index = {}
    for fld, col in columns.mapped().items():
        if isinstance(col, int):
            if not -len(names) <= col < len(names):
                raise TaskDataError(f"{rel}: columns.{fld} is column {col}, but the file has {len(names)} columns")
            col = names[col]
        if col not in names:
            raise TaskDataError(f"{rel}: no column {col!r} (columns.{fld}); the file has {names}; fix "
                                f"columns.{fld} in the task YAML")
        index[fld] = col
    record = 0
    for batch in pf.iter_batches(columns=sorted(set(index.values()))):
        for row in batch.to_pylist():
            record += 1
            yield RawRecord({fld: row[col] for fld, col in index.items()}, rel, record, where=f"row {record}")


# -- token-per-line files ----------------------------------------------------------------------
def read_conll(path: Path, rel: str, columns: ColumnMap, options: ReadOptions, fmt: str,
        labelled: bool = True) -> Iterator[RawRecord]:
    """CoNLL columns, or (``char_ner``) one ``char tag`` per line; an unlabelled split reads tokens only."""
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    record = 0
    bad: tuple[int, str] | None = None
    seen_token_line = False

    def flush() -> Iterator[RawRecord]:
        nonlocal tokens, tags, bad, record
        if tokens or bad:
            record += 1
            if bad:
                yield RawRecord({}, rel, record, start, problem="ragged line", value=bad[1][:80],
                                extra={"detail": f"line {bad[0]} lacks the token or tag column"})
            else:
                yield RawRecord({"tokens": tokens, **({"tags": tags} if labelled else {})}, rel, record, start)
        tokens, tags, bad = [], [], None

    for line, text in _lines(path, rel, options):
        if not text.strip() or text.startswith(options.docstart):
            yield from flush()
            continue
        if not tokens and not bad:
            start = line
        parts = _split_token_line(text, options, fmt)
        token, tag = _pick(parts, options, labelled)
        if token is None or (labelled and tag is None):
            if not seen_token_line:
                raise TaskDataError(
                    f"{rel} line {line}: {len(parts)} column(s) {parts!r}, but the token is column "
                    f"{options.token_column} and the tag column {options.tag_column}: the tag column is missing. "
                    "Set options.tag_column (0-based) in the task YAML, or `labelled: false` for a split "
                    "without tags")
            bad = bad or (line, text)
            continue
        seen_token_line = True
        tokens.append(token)
        if labelled:
            tags.append(tag)
    yield from flush()


_CHAR_TAG = re.compile(r"^(.+?)[ \t]+(\S+)\s*$")


def _split_token_line(text: str, options: ReadOptions, fmt: str) -> list[str]:
    if fmt == "char_ner" and options.column_separator is None:
        # The character may itself be a space-like character (U+3000), which str.split() would eat.
        m = _CHAR_TAG.match(text)
        return [m.group(1), m.group(2)] if m else [text.strip()]
    return text.split(options.column_separator) if options.column_separator else text.split()


def _pick(parts: list[str], options: ReadOptions, labelled: bool) -> tuple[str | None, str | None]:
    n = len(parts)
    ti, gi = options.token_column, options.tag_column
    token = parts[ti] if -n <= ti < n else None
    if not labelled:
        return token, None
    # The tag needs its own column: with one column, tag_column -1 would point at the token.
    tag = parts[gi] if n >= 2 and -n <= gi < n and (gi % n) != (ti % n) else None
    return token, tag


def read_tagged_lines(path: Path, rel: str, columns: ColumnMap, options: ReadOptions, fmt: str,
        labelled: bool = True) -> Iterator[RawRecord]:
    sep = options.delimiter or "\t"
    record = 0
    for line, text in _lines(path, rel, options):
        if not text.strip():
            continue
        record += 1
        parts = text.split(sep)
        if labelled and len(parts) != 2:
            if record == 1:
                raise TaskDataError(f"{rel} line {line}: expected 'tokens{sep!r}tags' (two fields), got "
                                    f"{len(parts)}; set options.delimiter, or `labelled: false` for untagged text")
            yield RawRecord({}, rel, record, line, problem="ragged row", value=f"{len(parts)} fields",
                            extra={"detail": "expected space-separated tokens, a tab, space-separated tags"})
            continue
        fields: dict[str, Any] = {"tokens": parts[0].split()}
        if labelled:
            fields["tags"] = parts[1].split()
        yield RawRecord(fields, rel, record, line)


# -- SQuAD -------------------------------------------------------------------------------------
_SQUAD_SHAPE = ('{"data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id": ..., "question": ..., '
                '"answers": [{"text": ..., "answer_start": ...}]}]}]}]}')


def read_squad(path: Path, rel: str, columns: ColumnMap, options: ReadOptions, fmt: str,
        labelled: bool = True) -> Iterator[RawRecord]:
    try:
        with open(path, encoding=_encoding(options)) as f:
            doc = json.load(f)
    except json.JSONDecodeError as exc:
        raise TaskDataError(f"{rel} line {exc.lineno} column {exc.colno}: not JSON ({exc.msg}); a SQuAD file is "
                            f"one JSON document: {_SQUAD_SHAPE}") from None
    except UnicodeDecodeError as exc:
        raise TaskDataError(f"{rel}: not valid {options.encoding} text ({exc.reason})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        got = sorted(doc)[:8] if isinstance(doc, dict) else type(doc).__name__
        raise TaskDataError(f"{rel}: not SQuAD: the top level needs a 'data' list (got {got}); expected {_SQUAD_SHAPE}")
    record = 0
    for a, article in enumerate(doc["data"]):
        _expect(isinstance(article, dict) and isinstance(article.get("paragraphs"), list), rel,
                f"data[{a}]", "an article object with a 'paragraphs' list")
        title = article.get("title")
        for p, para in enumerate(article["paragraphs"]):
            where_p = f"data[{a}].paragraphs[{p}]"
            _expect(isinstance(para, dict) and isinstance(para.get("context"), str)
                    and isinstance(para.get("qas"), list), rel, where_p, "a paragraph with 'context' and 'qas'")
            for q, qa in enumerate(para["qas"]):
                where = f"{where_p}.qas[{q}]"
                _expect(isinstance(qa, dict) and "question" in qa and "id" in qa, rel, where,
                        "a question object with 'id' and 'question'")
                impossible = bool(qa.get("is_impossible", False))
                answers = [] if impossible else qa.get("answers", [])
                _expect(isinstance(answers, list) and all(isinstance(x, dict) and "text" in x and "answer_start" in x
                                                          for x in answers),
                        rel, where, "'answers' as a list of {text, answer_start}")
                record += 1
                yield RawRecord({"id": qa["id"], "title": title, "context": para["context"],
                                 "question": qa["question"],
                                 "answers": [(x["text"], x["answer_start"]) for x in answers],
                                 "is_impossible": impossible}, rel, record, where=where)


def _expect(ok: bool, rel: str, where: str, what: str) -> None:
    if not ok:
        raise TaskDataError(f"{rel} {where}: not SQuAD: expected {what}; a SQuAD file looks like {_SQUAD_SHAPE}")


READERS = {"tsv": read_delimited, "csv": read_delimited, "jsonl": read_jsonl, "json": read_json, "parquet": read_parquet,
           "conll": read_conll, "char_ner": read_conll, "tagged_lines": read_tagged_lines, "squad": read_squad}


def read_records(fmt: str, path: Path, rel: str, columns: ColumnMap, options: ReadOptions,
                 labelled: bool = True) -> Iterator[RawRecord]:
    """The records of one file, in file order (an unlabelled split reads no label or tag column)."""
    if not labelled:
        columns = columns.model_copy(update={"label": None, "tags": None, "answers": None, "answer_texts": None,
                                             "answer_starts": None})
    return READERS[fmt](path, rel, columns, options, fmt, labelled)
