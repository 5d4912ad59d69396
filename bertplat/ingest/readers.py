"""One reader per input format. A reader turns an open (decompressed) binary stream into records
and rejects; it never holds more than one record (bounded by ``max_record_bytes``) in memory,
except for ``.json`` files, which are parsed whole up to ``max_json_bytes``.

A :class:`Record` carries its text as ``bytes`` (decoded later, in batch, with the configured
encoding) or ``str`` (formats whose parser decodes). A :class:`Reject` says which record or line
was bad and why; nothing is ever dropped silently.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import orjson

from bertplat.ingest.config import IngestConfig


@dataclass(slots=True)
class Record:
    text: str | bytes
    record: int                 # 1-based ordinal of the record in its file
    line: int | None = None     # 1-based line where the record starts, where lines apply
    title: str | None = None
    label: str | None = None
    source_id: str | None = None
    unwrap: bool = False        # hard-wrapped text whose single newlines should become spaces
    markup: bool = False        # WikiExtractor output: markup clean-up applies when markup_cleanup is 'auto'


@dataclass(slots=True)
class Records:
    """Many records at once, for readers that parse whole chunks with one regex (no per-record calls)."""

    texts: list[bytes]
    titles: list[str | None]
    source_ids: list[str | None]
    first_record: int          # record number of texts[0]; the rest follow consecutively
    lines: list[int]
    markup: bool = False       # WikiExtractor output (see Record.markup)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(slots=True)
class Reject:
    reason: str                 # a short code, e.g. 'malformed_json'; see REJECT_REASONS
    detail: str                 # what was wrong and what to do, for people
    record: int | None = None
    line: int | None = None


REJECT_REASONS = {
    "unreadable": "the file could not be read (permissions, I/O error, a broken symbolic link)",
    "symlink_loop": "a symbolic link that leads back to itself or to a directory above it",
    "empty_file": "the file is empty",
    "binary_file": "the file holds NUL bytes in its encoding: not text",
    "corrupt_compression": "the compressed stream is damaged (what came before the damage is read)",
    "undecodable": "bytes that are not valid in the configured encoding",
    "record_too_large": "a line or record over max_record_bytes",
    "file_too_large": "a .json file over max_json_bytes",
    "malformed_json": "a line or file that is not valid JSON",
    "unsupported_json_shape": "JSON that is not a list of objects or an object of objects",
    "malformed_csv": "a CSV/TSV row that cannot be parsed or has the wrong number of fields",
    "missing_column": "the text column or field is not in the file",
    "missing_field": "a record without the text field",
    "not_text": "a text field that is not a string",
    "malformed_doc": "WikiExtractor markup that is not a complete <doc>...</doc>",
    "malformed_parquet": "a Parquet file that cannot be read",
    "not_gutenberg": "no Project Gutenberg start marker",
    "empty_text": "a document that is empty after normalisation",
    "too_short": "a document shorter than min_chars",
    "duplicate": "an exact duplicate of an earlier document (reported, not counted as a reject)",
}


class FileRejected(Exception):
    """Raised inside a reader when the whole file must be rejected."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# -- helpers ---------------------------------------------------------------------------------
def iter_lines(stream: BinaryIO, max_bytes: int, chunk: int = 1 << 20) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its newline) for every line; ``None`` in place of a line longer
    than ``max_bytes``, which is skipped without ever being held whole in memory."""
    lineno = 0
    tail = b""
    skipping = False
    while block := stream.read(chunk):
        parts = (tail + block).split(b"\n") if not skipping else block.split(b"\n")
        tail = parts.pop()
        if skipping and parts:   # the overlong line ends in this block
            lineno += 1
            yield lineno, None
            parts = parts[1:]
            skipping = False
        elif skipping:
            tail = b""
            continue
        for line in parts:
            lineno += 1
            yield lineno, (line if len(line) <= max_bytes else None)
        if len(tail) > max_bytes:
            skipping, tail = True, b""
    if skipping:
        yield lineno + 1, None
    elif tail:
        yield lineno + 1, tail


def get_field(obj: Any, path: str) -> Any:
    """``obj['a']['b']`` for the dotted path 'a.b'; raises KeyError when absent."""
    for key in path.split("."):
        if not isinstance(obj, dict) or key not in obj:
            raise KeyError(path)
        obj = obj[key]
    return obj


def _optional_str(obj: Any, path: str | None) -> str | None:
    if path is None:
        return None
    try:
        value = get_field(obj, path)
    except KeyError:
        return None
    return None if value is None else str(value)


def record_from_object(obj: Any, cfg: IngestConfig, record: int, line: int | None,
                       text_field: str | None = None) -> Record | Reject:
    """A JSON object to a record, or a reject naming the missing or non-text field."""
    field = text_field or cfg.text_field
    if not isinstance(obj, dict):
        return Reject("malformed_json", f"expected a JSON object, got {type(obj).__name__}", record, line)
    try:
        text = get_field(obj, field)
    except KeyError:
        keys = ", ".join(list(obj)[:10])
        return Reject("missing_field", f"no field {field!r} (fields: {keys}); set --text-field", record, line)
    if not isinstance(text, str):
        return Reject("not_text", f"field {field!r} is {type(text).__name__}, not a string", record, line)
    return Record(text, record, line, _optional_str(obj, cfg.title_field), _optional_str(obj, cfg.label_field),
                  _optional_str(obj, cfg.id_field))


def _decode(raw: bytes, encoding: str) -> str:
    return raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)


def _decode_error_detail(exc: UnicodeDecodeError) -> str:
    return (f"byte {exc.object[exc.start:exc.start + 4]!r} at offset {exc.start} is not valid "
            f"{exc.encoding}; set --encoding if the file uses another one")


# -- plain text ------------------------------------------------------------------------------
def read_text(stream: BinaryIO, cfg: IngestConfig, name: str) -> Iterator[Record | Reject]:
    if cfg.text_mode == "file":
        data = stream.read(cfg.max_record_bytes + 1)
        if len(data) > cfg.max_record_bytes:
            raise FileRejected("record_too_large", f"one document per file, and this file is over "
                               f"{cfg.max_record_bytes} bytes; use --text-mode paragraphs or lines")
        yield Record(data, 1, 1, title=_title_from_name(name))
    elif cfg.text_mode == "lines":
        record = 0
        for lineno, line in iter_lines(stream, cfg.max_record_bytes):
            if line is None:
                record += 1
                yield Reject("record_too_large", f"line over {cfg.max_record_bytes} bytes", record, lineno)
            elif line.strip():
                record += 1
                yield Record(line, record, lineno)
    else:
        yield from _read_paragraphs(stream, cfg)


def _read_paragraphs(stream: BinaryIO, cfg: IngestConfig) -> Iterator[Record | Reject]:
    record, start, size, lines, too_large = 0, 0, 0, [], False
    for lineno, line in iter_lines(stream, cfg.max_record_bytes):
        if line is not None and not line.strip():
            if lines or too_large:
                record += 1
                yield (Reject("record_too_large", f"paragraph over {cfg.max_record_bytes} bytes", record, start)
                       if too_large else Record(b"\n".join(lines), record, start))
            lines, size, too_large = [], 0, False
            continue
        if not lines and not too_large:
            start = lineno
        if line is None or size + len(line) > cfg.max_record_bytes:
            lines, too_large = [], True
            continue
        if not too_large:
            lines.append(line)
            size += len(line) + 1
    if lines or too_large:
        record += 1
        yield (Reject("record_too_large", f"paragraph over {cfg.max_record_bytes} bytes", record, start)
               if too_large else Record(b"\n".join(lines), record, start))


# -- JSON Lines and JSON -------------------------------------------------------------------
def read_jsonl(stream: BinaryIO, cfg: IngestConfig, text_field: str | None = None,
               defaults: dict[str, str] | None = None) -> Iterator[Record | Reject]:
    record = 0
    for lineno, line in iter_lines(stream, cfg.max_record_bytes):
        if line is None:
            record += 1
            yield Reject("record_too_large", f"line over {cfg.max_record_bytes} bytes", record, lineno)
            continue
        if not line.strip():
            continue
        record += 1
        try:
            obj = orjson.loads(line if cfg.encoding == "utf-8" else _decode(line, cfg.encoding))
        except orjson.JSONDecodeError as exc:
            reason = "undecodable" if any(w in str(exc).lower() for w in ("utf-8", "surrogate")) else "malformed_json"
            yield Reject(reason, f"{exc}", record, lineno)
            continue
        except UnicodeDecodeError as exc:
            yield Reject("undecodable", _decode_error_detail(exc), record, lineno)
            continue
        yield _with_defaults(record_from_object(obj, cfg, record, lineno, text_field), obj, defaults)


def _with_defaults(item: Record | Reject, obj: Any, defaults: dict[str, str] | None) -> Record | Reject:
    """Fill title/source_id from fixed fields (WikiExtractor --json) when the config names none."""
    if defaults and isinstance(item, Record):
        if item.title is None and "title" in defaults:
            item.title = _optional_str(obj, defaults["title"])
        if item.source_id is None and "id" in defaults:
            item.source_id = _optional_str(obj, defaults["id"])
        item.markup = True      # only WikiExtractor --json passes defaults
    return item


def read_json(stream: BinaryIO, cfg: IngestConfig) -> Iterator[Record | Reject]:
    data = stream.read(cfg.max_json_bytes + 1)
    if len(data) > cfg.max_json_bytes:
        raise FileRejected("file_too_large", f".json files are parsed whole and this one is over "
                           f"{cfg.max_json_bytes} bytes; convert it to JSON Lines (one object per line)")
    try:
        obj = orjson.loads(data if cfg.encoding == "utf-8" else _decode(data, cfg.encoding))
    except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileRejected("malformed_json", f"not valid JSON: {exc}") from None
    items: list[tuple[Any, Any]]
    if isinstance(obj, list):
        items = [(None, o) for o in obj]
    elif isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        items = list(obj.items())           # {key: record}: the key is the record's id
    elif isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), list):
        items = [(None, o) for o in next(iter(obj.values()))]  # {"data": [records]}
    else:
        raise FileRejected("unsupported_json_shape", "expected a list of objects, an object of objects or "
                           "{\"<key>\": [objects]}; for one object per line use --format jsonl")
    for i, (key, item) in enumerate(items, start=1):
        rec = record_from_object(item, cfg, i, None)
        if isinstance(rec, Record) and rec.source_id is None and key is not None:
            rec.source_id = str(key)
        yield rec


# -- CSV and TSV -----------------------------------------------------------------------------
def read_delimited(stream: BinaryIO, cfg: IngestConfig, delimiter: str) -> Iterator[Record | Reject]:
    quoting = cfg.csv_quoting if cfg.csv_quoting != "auto" else ("none" if delimiter == "\t" else "minimal")
    csv.field_size_limit(cfg.max_record_bytes)
    oversize: list[int] = []

    def lines():
        for lineno, raw in iter_lines(stream, cfg.max_record_bytes):
            if raw is None:
                oversize.append(lineno)
                continue
            yield raw.decode(cfg.encoding, errors="surrogateescape").rstrip("\r") + "\n"

    text = lines()
    if cfg.csv_header:
        first = next(text, None)
        if first is None:
            return
        header = next(csv.reader([first.lstrip("\ufeff")], delimiter=delimiter))
    else:
        header = None
    columns = _column_indexes(header, cfg)
    reader = csv.reader(text, delimiter=delimiter, strict=True,
                        quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL)
    width = len(header) if header else None
    record, offset = 0, 1 if header else 0
    while True:
        start_line = reader.line_num + offset + len(oversize) + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            record += 1
            yield Reject("malformed_csv", str(exc), record, start_line)
            continue
        while oversize:
            record += 1
            yield Reject("record_too_large", f"line over {cfg.max_record_bytes} bytes", record, oversize.pop(0))
        if not row:
            continue
        record += 1
        yield _row_to_record(row, columns, width, record, start_line)
    while oversize:
        record += 1
        yield Reject("record_too_large", f"line over {cfg.max_record_bytes} bytes", record, oversize.pop(0))


def _column_indexes(header: list[str] | None, cfg: IngestConfig) -> dict[str, int | None]:
    def index(name: str | None, required: bool) -> int | None:
        if name is None:
            return None
        if header is not None and name in header:
            return header.index(name)
        if name.isdigit():
            return int(name)
        if required or header is not None:
            cols = ", ".join(header or []) or "(no header)"
            raise FileRejected("missing_column", f"no column {name!r} (columns: {cols}); set --text-field")
        return None

    return {"text": index(cfg.text_field, True), "title": index(cfg.title_field, False),
            "label": index(cfg.label_field, False), "id": index(cfg.id_field, False)}


def _row_to_record(row: list[str], columns: dict[str, int | None], width: int | None,
                   record: int, line: int) -> Record | Reject:
    if width is not None and len(row) != width:
        return Reject("malformed_csv", f"{len(row)} fields where the header has {width}", record, line)
    if any(_has_surrogates(field) for field in row):
        return Reject("undecodable", "bytes that are not valid in the configured encoding; set --encoding",
                      record, line)

    def cell(key: str) -> str | None:
        idx = columns[key]
        return row[idx] if idx is not None and idx < len(row) else None

    text = cell("text")
    if text is None:
        return Reject("malformed_csv", f"row has {len(row)} fields, no text column", record, line)
    return Record(text, record, line, cell("title"), cell("label"), cell("id"))


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- Parquet ---------------------------------------------------------------------------------
def read_parquet(path: str, cfg: IngestConfig) -> Iterator[Record | Reject]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileRejected("malformed_parquet", f"not a readable Parquet file: {exc}") from None
    names = pf.schema_arrow.names
    wanted = {k: v for k, v in (("text", cfg.text_field), ("title", cfg.title_field),
                                 ("label", cfg.label_field), ("id", cfg.id_field)) if v}
    for key, column in wanted.items():
        if column not in names:
            if key == "text":
                raise FileRejected("missing_column", f"no column {column!r} (columns: {', '.join(names)}); "
                                   "set --text-field")
            wanted.pop(key)
    if not pa.types.is_string(pf.schema_arrow.field(cfg.text_field).type) and \
            not pa.types.is_large_string(pf.schema_arrow.field(cfg.text_field).type):
        raise FileRejected("not_text", f"column {cfg.text_field!r} has type "
                           f"{pf.schema_arrow.field(cfg.text_field).type}, not string")
    record = 0
    for batch in pf.iter_batches(batch_size=4096, columns=list(dict.fromkeys(wanted.values()))):
        cols = {k: batch.column(v).to_pylist() for k, v in wanted.items()}
        for i, text in enumerate(cols["text"]):
            record += 1
            if text is None:
                yield Reject("missing_field", f"null in column {cfg.text_field!r}", record)
                continue
            meta = {k: (None if cols[k][i] is None else str(cols[k][i])) for k in ("title", "label", "id") if k in cols}
            yield Record(text, record, None, meta.get("title"), meta.get("label"), meta.get("id"))


# -- WikiExtractor ---------------------------------------------------------------------------
_OPEN_RE = re.compile(rb"<doc\b([^>\n]*)>\n?")
_ATTR_RE = re.compile(rb'(\w+)="([^"]*)"')
_CLOSE = b"</doc>"


def read_wikiextractor(stream: BinaryIO, cfg: IngestConfig) -> Iterator[Record | Reject]:
    """``<doc id=.. url=.. title=..>`` ... ``</doc>`` blocks, or the ``--json`` form (one object per line)."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
    if buffered.peek(64)[:64].lstrip().startswith(b"{"):
        yield from read_jsonl(buffered, cfg, text_field="text", defaults={"title": "title", "id": "id"})
        return
    record = 0
    for kind, payload, line in _doc_blocks(buffered, cfg.max_record_bytes):
        if kind == "docs":
            yield _doc_records(payload, record + 1, line, cfg)
            record += len(payload[0])
            continue
        if kind == "junk":
            yield Reject("malformed_doc", f"text outside <doc>...</doc>: {payload.strip()[:60]!r}", None, line)
            continue
        record += 1
        if kind == "doc":
            yield _doc_record(payload, record, line, cfg)
        elif kind == "too_large":
            yield Reject("record_too_large", f"<doc> over {cfg.max_record_bytes} bytes", record, line)
        else:
            yield Reject("malformed_doc", "<doc> without its </doc>", record, line)


def _doc_blocks(stream: BinaryIO, max_bytes: int, chunk: int = 1 << 22):
    """('doc', (attributes, body), line) for each complete block; ('junk', bytes, line) for text
    outside blocks; ('unterminated', bytes, line) and ('too_large', None, line) for damage.
    Works on large chunks with regexes (no per-line Python), holding at most one document."""
    buf, line, eof = b"", 1, False
    while True:
        if not eof:
            block = stream.read(chunk)
            eof = not block
            buf += block
        pos = 0
        if (fast := _fast_blocks(buf, line)) is not None:     # the common, well-formed case
            docs, lines, pos, line = fast
            yield "docs", docs, lines
        while (m := _OPEN_RE.search(buf, pos)) is not None:
            end = buf.find(_CLOSE, m.end())
            nested = buf.find(b"<doc ", m.end(), len(buf) if end < 0 else end)
            if end < 0 and nested < 0:
                break                                   # the block continues in the next chunk
            if (junk := buf[pos:m.start()]).strip():
                lead = len(junk) - len(junk.lstrip())
                yield "junk", junk, line + junk.count(b"\n", 0, lead)
            line += buf.count(b"\n", pos, m.start())
            if nested >= 0:                             # a <doc> that never closed
                yield "unterminated", buf[m.start():nested], line
                line += buf.count(b"\n", m.start(), nested)
                pos = nested
                continue
            yield "doc", (m.group(1), buf[m.end():end]), line
            line += buf.count(b"\n", m.start(), end + len(_CLOSE))
            pos = end + len(_CLOSE)
        buf = buf[pos:]
        if eof:
            m = _OPEN_RE.search(buf)
            junk, rest = (buf[:m.start()], buf[m.start():]) if m else (buf, b"")
            if junk.strip():
                yield "junk", junk, line + junk.count(b"\n", 0, len(junk) - len(junk.lstrip()))
            if rest:
                yield "unterminated", rest, line + junk.count(b"\n")
            return
        if len(buf) > max_bytes + chunk:
            if not buf.lstrip().startswith(b"<doc"):
                yield "junk", buf[:200], line
                line += buf.count(b"\n")
                buf = b""
                continue
            yield "too_large", None, line
            line, buf, eof = _skip_past_close(stream, buf, line, chunk)


_FAST_HEAD_RE = re.compile(rb'<doc id="([^"]*)" url="[^"]*" title="([^"]*)">\n?')
_CLOSE_RE = re.compile(re.escape(_CLOSE))


def _fast_blocks(buf: bytes, line: int):
    """All complete blocks of ``buf`` at once, when they are well formed (standard attribute
    order, blocks strictly alternating with their </doc>, only whitespace between them); else None
    and the careful path takes over. Headers and closing tags are found by two regex scans (no
    lazy '.*?' over the bodies). Returns ((ids, titles, bodies), start lines, end offset, next line)."""
    end = buf.rfind(_CLOSE)
    if end < 0:
        return None
    end += len(_CLOSE)
    heads = list(_FAST_HEAD_RE.finditer(buf, 0, end))
    closes = [m.start() for m in _CLOSE_RE.finditer(buf, 0, end)]
    if not heads or len(heads) != len(closes) or len(heads) != buf.count(b"<doc", 0, end):
        return None
    starts = [m.start() for m in heads]
    body_starts = [m.end() for m in heads]
    # strictly alternating: header i, then close i, then header i + 1
    if any(c < b for b, c in zip(body_starts, closes)) or any(s < c for c, s in zip(closes, starts[1:])):
        return None
    gaps_from = [0] + [c + len(_CLOSE) for c in closes]
    if any(buf[a:b].strip() for a, b in zip(gaps_from, starts + [end])):
        return None
    newlines = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8, count=end) == 10)
    lines = (line + np.searchsorted(newlines, starts)).tolist()
    docs = ([m.group(1) for m in heads], [m.group(2) for m in heads],
            [buf[b:c] for b, c in zip(body_starts, closes)])
    return docs, lines, end, line + len(newlines)


def _doc_records(docs: tuple[list[bytes], list[bytes], list[bytes]], first: int, lines: list[int],
                 cfg: IngestConfig) -> Records:
    ids, titles, bodies = docs
    titles_text = [_attr_text(t) for t in titles]
    if cfg.wikiextractor_title_line == "drop":
        bodies = [_drop_title_line(b, t) for b, t in zip(bodies, titles_text)]
    return Records(bodies, titles_text, [i.decode("utf-8", "replace") for i in ids], first, lines, markup=True)


def _drop_title_line(body: bytes, title: str) -> bytes:
    """The body without its first line when that line is the title (``title`` is unescaped already;
    the line is compared unescaped too, so ``Batman &amp; Robin`` matches ``Batman & Robin``)."""
    first, _, rest = body.lstrip(b"\n").partition(b"\n")
    return rest if title and _attr_text(first.strip()) == title.strip() else body


def _skip_past_close(stream: BinaryIO, buf: bytes, line: int, chunk: int) -> tuple[int, bytes, bool]:
    """Discard an oversized document up to its </doc>; returns (line, rest of buffer, eof)."""
    while True:
        end = buf.find(_CLOSE)
        if end >= 0:
            return line + buf.count(b"\n", 0, end), buf[end + len(_CLOSE):], False
        line += buf[:-len(_CLOSE)].count(b"\n")
        buf = buf[-len(_CLOSE):]                        # '</doc>' may straddle two chunks
        block = stream.read(chunk)
        if not block:
            return line, b"", True
        buf += block


_ID_TITLE_RE = re.compile(rb'\s*id="([^"]*)"(?:\s+url="[^"]*")?\s+title="([^"]*)"\s*$')


def _attr_text(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    return html.unescape(text) if "&" in text else text


def _doc_record(payload: tuple[bytes, bytes], record: int, line: int, cfg: IngestConfig) -> Record:
    attr_bytes, body = payload
    if m := _ID_TITLE_RE.match(attr_bytes):     # the usual attribute order: one regex, no dict
        attrs = {"id": m.group(1), "title": m.group(2)}
    else:
        attrs = {k.decode(): v for k, v in _ATTR_RE.findall(attr_bytes)}
    attrs = {k: _attr_text(v) for k, v in attrs.items() if k in ("id", "title")}
    title = attrs.get("title")
    if cfg.wikiextractor_title_line == "drop" and title:
        body = _drop_title_line(body, title)
    return Record(body, record, line, title, None, attrs.get("id"), markup=True)


# -- Project Gutenberg -----------------------------------------------------------------------
_PG_START = re.compile(
    r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG[^*]{0,300}\*{0,3}.*$"  # titles may wrap a line
    r"|^\s*\*END\*?\s*THE SMALL PRINT.*$", re.I | re.M)
_PG_END = re.compile(
    r"^\s*\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*$"
    r"|^\s*End of (?:the |this )?Project Gutenberg.*$", re.I | re.M)
_PG_TITLE = re.compile(r"^Title:\s*(.+)$", re.M)
_PG_ETEXT_OF = re.compile(r"Project Gutenberg (?:Etext|E-?Book) of (.+?)(?:, by .*)?\**$", re.M | re.I)
_PG_CREDITS = re.compile(r"^\s*(?:Produced by|E-text prepared by|Etext prepared by|This etext was prepared by|"
                         r"This Project Gutenberg etext was prepared by|Note: Project Gutenberg also has|"
                         r"Transcribed from|This e-?book was produced by)\b[^\n]*(?:\n[^\n]+)*\n*", re.I)


def strip_gutenberg(text: str) -> tuple[str, str | None, int] | None:
    """(body, title, line where the body starts) with the licence header, the transcriber's credit
    and the licence footer removed; None when the text has no start marker."""
    # Markers sit near the top and the bottom; search there first (whole-book regex scans are slow).
    head = min(len(text), 200_000)
    starts = list(_PG_START.finditer(text, 0, head)) or list(_PG_START.finditer(text))
    if not starts:
        return None
    start = starts[-1] if starts[-1].start() < len(text) // 2 else starts[0]
    body_start = start.end()
    end = _PG_END.search(text, max(body_start, len(text) - 100_000)) or _PG_END.search(text, body_start)
    body = text[body_start:end.start() if end else len(text)]
    stripped = body.lstrip("\n\r ")
    body_start += len(body) - len(stripped)
    while credits := _PG_CREDITS.match(stripped):   # transcribers' credits, one paragraph each
        body_start += credits.end()
        stripped = stripped[credits.end():]
    title = _PG_TITLE.search(text, 0, start.start()) or _PG_ETEXT_OF.search(text, 0, start.start())
    return stripped.rstrip(), (title.group(1).strip() if title else None), text.count("\n", 0, body_start) + 1


def read_gutenberg(stream: BinaryIO, cfg: IngestConfig, name: str) -> Iterator[Record | Reject]:
    data = stream.read(cfg.max_record_bytes + 1)
    if len(data) > cfg.max_record_bytes:
        raise FileRejected("record_too_large", f"book over {cfg.max_record_bytes} bytes; raise max_record_bytes "
                           "in an ingest config file (--config)")
    try:
        text = _decode(data, cfg.encoding)
    except UnicodeDecodeError as exc:
        raise FileRejected("undecodable", _decode_error_detail(exc)) from None
    stripped = strip_gutenberg(text.replace("\r\n", "\n").replace("\r", "\n"))
    if stripped is None:
        raise FileRejected("not_gutenberg", "no '*** START OF THE PROJECT GUTENBERG EBOOK' or '*END*THE SMALL "
                           "PRINT' marker; read it with --format text if it has no licence header")
    body, title, line = stripped
    yield Record(body, 1, line, title or _title_from_name(name).split(" - ", 1)[-1], None, _pg_number(name),
                 unwrap=cfg.unwrap_lines is not False)   # books are hard-wrapped at ~70 columns


def _title_from_name(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return re.sub(r"\s*\[PG\d+\]\s*$", "", stem)


def _pg_number(name: str) -> str | None:
    m = re.search(r"\[PG(\d+)\]", name)
    return f"PG{m.group(1)}" if m else None
