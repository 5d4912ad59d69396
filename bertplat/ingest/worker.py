"""One unit of parallel ingest work: read a group of files, clean and segment their documents in
batches, and write Parquet shards plus a rejects file into the version's temporary directory.

Runs in a worker process (or inline with one worker). It holds at most one batch of documents
(``batch_bytes``) and one record in memory; each batch becomes one Parquet row group.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bertplat.ingest.cleanup import clean_markup
from bertplat.ingest.config import IngestConfig
from bertplat.ingest.gate import check_row_group
from bertplat.ingest.neardup import band_keys, sketch
from bertplat.ingest.quality import QUALITY_REASONS, drop_mojibake_lines, measure_and_filter
from bertplat.ingest.readers import (
    FileRejected,
    Record,
    Records,
    Reject,
    read_delimited,
    read_gutenberg,
    read_json,
    read_jsonl,
    read_parquet,
    read_text,
    read_wikiextractor,
)
from bertplat.ingest.schema import CORPUS_SCHEMA, REJECTS_SCHEMA
from bertplat.ingest.sources import InputFile, detect_compression, detect_format
from bertplat.ingest.streams import (
    DecompressedStream,
    TranscodedStream,
    detect_bom,
    guess_wide_encoding,
    needs_transcoding,
)
from bertplat.ingest.text import clean_whitespace, split_sentences

# Document length histogram, characters per document (log-spaced bin edges; the last bin is open).
LENGTH_BINS = [1, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000]

_progress_counter: Any = None  # a shared multiprocessing.Value of input bytes read, set per worker


def init_worker(counter: Any, die_with_parent: bool = False) -> None:
    global _progress_counter
    _progress_counter = counter
    if die_with_parent:
        _die_with_parent()


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies (even by SIGKILL), so that no orphan
    keeps writing into a temporary directory that the next run will sweep."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: orphans finish their task and exit on the broken pipe


@dataclass
class Task:
    index: int
    files: list[InputFile]


@dataclass
class TaskResult:
    index: int
    parts: list[str] = field(default_factory=list)
    documents: int = 0
    records: int = 0          # records seen: documents + record-level rejects (before dedup)
    rejects: int = 0          # rejects, whole files counted once each
    file_rejects: int = 0     # rejects not tied to a record (a whole file, text between records)
    reasons: Counter = field(default_factory=Counter)
    schema_failures: list = field(default_factory=list)   # gate checks of the row groups written
    per_source: dict[str, Counter] = field(default_factory=dict)
    length_hist: list[int] = field(default_factory=lambda: [0] * len(LENGTH_BINS))
    length_hist_before_filters: list[int] = field(default_factory=lambda: [0] * len(LENGTH_BINS))
    filtered: Counter = field(default_factory=Counter)          # quality filter -> documents (or lines) removed
    filtered_chars: Counter = field(default_factory=Counter)    # quality filter -> characters removed
    filtered_examples: dict[str, list] = field(default_factory=dict)   # reason -> a few (file, record, detail, text)
    signature_parts: list[str] = field(default_factory=list)    # near-dedup signature files of the task
    bytes_read: int = 0


class _CountingFile(io.RawIOBase):
    """Counts bytes read from the file on disk, for progress on compressed and plain input alike."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.pending = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.pending += n or 0
        if self.pending >= 1 << 22:
            self.flush_progress()
        return n

    def flush_progress(self) -> None:
        if _progress_counter is not None and self.pending:
            with _progress_counter.get_lock():
                _progress_counter.value += self.pending
        self.pending = 0

    def close(self) -> None:
        self.flush_progress()
        self.raw.close()
        super().close()


def _open(path: str) -> tuple[BinaryIO, _CountingFile, DecompressedStream | None]:
    counted = _CountingFile(open(path, "rb"))  # noqa: SIM115 (closed by the caller)
    raw: BinaryIO = io.BufferedReader(counted, buffer_size=1 << 20)
    kind = detect_compression(path, raw.peek(8)[:8])
    if kind is None:
        return raw, counted, None
    decompressed = DecompressedStream(raw, kind)
    return io.BufferedReader(decompressed, buffer_size=1 << 20), counted, decompressed  # type: ignore[return-value]


def read_file(f: InputFile, cfg: IngestConfig):
    """Records and rejects of one file; file-level problems become one reject with record=None."""
    if f.reject_reason:            # found while resolving the sources (a symbolic link loop, a broken link)
        yield Reject(f.reject_reason, f.reject_detail)
        return
    try:
        stream, counted, decompressed = _open(f.path)
    except PermissionError:
        yield Reject("unreadable", "permission denied; fix the file's permissions")
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            yield Reject("symlink_loop", f"cannot open: {exc.strerror}; the path is a symbolic link loop")
        else:
            yield Reject("unreadable", f"cannot open: {exc.strerror or exc}")
        return
    opened = _Opened(stream, decompressed)
    rejected = None
    try:
        yield from _read_stream(opened, f, cfg)
    except FileRejected as exc:
        rejected = Reject(exc.reason, exc.detail)
    finally:
        counted.flush_progress()
        opened.stream.close()
    # Damage is reported after the records read before it, and explains a file rejected because of it.
    if (reject := opened.damage() or rejected) is not None:
        yield reject


@dataclass
class _Opened:
    """An open input file and the layers that may have stopped early at damage."""

    stream: BinaryIO
    decompressed: DecompressedStream | None = None
    transcoded: TranscodedStream | None = None

    def damage(self) -> Reject | None:
        """The reject for the damage that ended the stream, if any (reported after its records)."""
        if self.decompressed is not None and self.decompressed.damage:
            d = self.decompressed
            return Reject("corrupt_compression", f"damaged {d.kind} stream after {d.decoded:,} decompressed bytes "
                          f"({d.damage}); every record in those bytes was read (one that the damage cut short "
                          "may be incomplete or rejected)")
        if self.transcoded is not None and self.transcoded.damage:
            return Reject("undecodable", f"{self.transcoded.damage}; the records before them were read, the rest "
                          "of the file was not; set --encoding if the file uses another one")
        return None


def _read_stream(opened: _Opened, f: InputFile, cfg: IngestConfig):
    stream = opened.stream
    head = stream.peek(1 << 16)[: 1 << 16]  # type: ignore[attr-defined]
    if not head:
        if opened.damage() is not None:
            return      # nothing could be decompressed: the damage is the whole story
        raise FileRejected("empty_file", "the file is empty")
    fmt = cfg.format if cfg.format != "auto" else detect_format(f.path, head)
    if fmt == "parquet":
        if detect_compression(f.path, head[:8]) is not None:
            raise FileRejected("malformed_parquet", "compressed Parquet files are not supported; Parquet "
                               "compresses internally, store it uncompressed")
        yield from read_parquet(f.path, cfg)
        return
    stream, encoding, head = _decode_layer(opened, cfg.encoding, head)
    if b"\x00" in head[:8192]:
        what = "text" if fmt == "text" else f"{fmt} text"
        hint = ""
        if encoding == cfg.encoding and opened.transcoded is None and (wide := guess_wide_encoding(head)):
            every = "other" if "16" in wide else "fourth"
            hint = f"; it looks like {wide[:6].upper()} (NUL every {every} byte): pass --encoding {wide}"
        raise FileRejected("binary_file", f"NUL bytes in the first 8 KB: this is not a {what} file in {encoding}"
                           f"{hint}")
    if cfg.format == "auto":
        fmt = detect_format(f.path, head)
    if cfg.encoding != "utf-8" and (opened.transcoded is not None or encoding == "utf-8"):
        # The bytes the readers see are UTF-8 now, whatever the configured encoding says.
        yield from _utf8_texts(_read_format(stream, fmt, cfg.model_copy(update={"encoding": "utf-8"}), f))
    else:
        yield from _read_format(stream, fmt, cfg, f)


def _decode_layer(opened: _Opened, configured: str, head: bytes) -> tuple[BinaryIO, str, bytes]:
    """A byte-order mark decides the file's encoding (and is skipped); UTF-16 and UTF-32 are
    transcoded to UTF-8. Returns the stream to read, the file's encoding and the stream's new head."""
    stream, encoding = opened.stream, configured
    if bom := detect_bom(head):
        encoding, length = bom
        stream.read(length)
    if needs_transcoding(encoding):
        opened.transcoded = TranscodedStream(stream, encoding)
        stream = opened.stream = io.BufferedReader(opened.transcoded, buffer_size=1 << 20)  # type: ignore[assignment]
    elif not bom:
        return stream, encoding, head
    return stream, encoding, stream.peek(1 << 16)[: 1 << 16]  # type: ignore[attr-defined]


def _read_format(stream: BinaryIO, fmt: str, cfg: IngestConfig, f: InputFile):
    if fmt == "text":
        return read_text(stream, cfg, f.relname)
    if fmt == "jsonl":
        return read_jsonl(stream, cfg)
    if fmt == "json":
        return read_json(stream, cfg)
    if fmt in ("csv", "tsv"):
        return read_delimited(stream, cfg, "," if fmt == "csv" else "\t")
    if fmt == "wikiextractor":
        return read_wikiextractor(stream, cfg)
    if fmt == "gutenberg":
        return read_gutenberg(stream, cfg, f.relname)
    raise ValueError(f"unknown format {fmt}")  # pragma: no cover - the config's Literal makes this unreachable


def _utf8_texts(items):
    """Records of a file read in another encoding than the configured one (a byte-order mark decided,
    or it was transcoded): their bytes are UTF-8, so they are decoded here, as the batch would decode
    them with the configured encoding."""
    for item in items:
        if isinstance(item, Records):
            try:
                item.texts = [t.decode("utf-8") for t in item.texts]  # type: ignore[misc]
            except UnicodeDecodeError:
                yield from _utf8_texts(Record(t, item.first_record + i, item.lines[i], item.titles[i], None,
                                              item.source_ids[i]) for i, t in enumerate(item.texts))
                continue
        elif isinstance(item, Record) and isinstance(item.text, bytes):
            try:
                item.text = item.text.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Reject("undecodable", f"byte {exc.object[exc.start:exc.start + 4]!r} at offset {exc.start} "
                             "of the record is not valid UTF-8 (the file starts with a UTF-8 byte-order mark)",
                             item.record, item.line)
                continue
        yield item


# -- batches ---------------------------------------------------------------------------------
class _Batch:
    """A batch of documents as columns (plain lists), filled record by record or many at a time."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.texts: list[str | bytes] = []
        self.titles: list[str | None] = []
        self.labels: list[str | None] = []
        self.source_ids: list[str | None] = []
        self.records: list[int] = []
        self.lines: list[int | None] = []
        self.files: list[InputFile] = []
        self.unwrap: list[bool] = []
        self.markup: list[bool] = []
        self.nbytes = 0
        # doc ids, signatures, band keys, short documents' shingle sets
        self.near: tuple[list[str], np.ndarray, np.ndarray, pa.ListArray] | None = None
        self.hist_before = np.zeros(len(LENGTH_BINS), dtype=np.int64)
        self.examples: list[tuple[int, str]] = []    # (row, start of the text) of filtered documents

    def add(self, rec: Record, f: InputFile) -> None:
        self.texts.append(rec.text)
        self.titles.append(rec.title)
        self.labels.append(rec.label)
        self.source_ids.append(rec.source_id)
        self.records.append(rec.record)
        self.lines.append(rec.line)
        self.files.append(f)
        self.unwrap.append(rec.unwrap)
        self.markup.append(rec.markup)
        self.nbytes += len(rec.text)

    def extend(self, recs: Records, f: InputFile) -> None:
        n = len(recs)
        self.texts += recs.texts
        self.titles += recs.titles
        self.labels += [None] * n
        self.source_ids += recs.source_ids
        self.records += range(recs.first_record, recs.first_record + n)
        self.lines += recs.lines
        self.files += [f] * n
        self.unwrap += [False] * n
        self.markup += [recs.markup] * n
        self.nbytes += sum(map(len, recs.texts))

    def columns(self, rows: list[int]) -> list[pa.Array]:
        """title, label, source_id, source, source_file, source_record, source_line for ``rows``."""
        def pick(values: list) -> list:
            return values if len(rows) == len(values) else [values[i] for i in rows]

        files = pick(self.files)
        return [pa.array(pick(self.titles), pa.string()), pa.array(pick(self.labels), pa.string()),
                pa.array(pick(self.source_ids), pa.string()), pa.array([f.source for f in files], pa.string()),
                pa.array([f.relname for f in files], pa.string()), pa.array(pick(self.records), pa.int64()),
                pa.array(pick(self.lines), pa.int64())]


def _encode_fast(texts: list[str | bytes], cfg: IngestConfig) -> pa.StringArray | None:
    """The whole batch at once when it is UTF-8 bytes: Arrow validates the encoding in one pass, and
    only the non-ASCII documents go through Unicode normalisation. None: take the careful path."""
    if cfg.encoding != "utf-8" or not all(isinstance(t, bytes) for t in texts):
        return None
    texts = [t.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in t else t for t in texts]
    try:
        arr = pa.array(texts, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return None   # some record is not UTF-8; the careful path names it
    if cfg.normalization == "none":
        return arr
    rows = np.flatnonzero(~np.asarray(pc.string_is_ascii(arr)))   # ASCII is already NFC and NFKC
    if not len(rows):
        return arr
    before = arr.take(pa.array(rows)).to_pylist()
    after = [unicodedata.normalize(cfg.normalization, t) for t in before]
    changed = [j for j, (a, b) in enumerate(zip(before, after)) if a is not b]
    if changed:
        mask = np.zeros(len(arr), dtype=bool)
        mask[rows[changed]] = True
        arr = pc.replace_with_mask(arr, pa.array(mask), pa.array([after[j] for j in changed], pa.string()))
    return arr


def _encode_texts(texts: list[str | bytes], cfg: IngestConfig) -> tuple[list[bytes | None], list[str]]:
    """Decode, Unicode-normalise and re-encode as UTF-8 one text at a time; None (with a reason)
    where that fails. Bytes that decode and are already normalised are kept as they are."""
    form = cfg.normalization
    out: list[bytes | None] = []
    errors: list[str] = []
    utf8 = cfg.encoding == "utf-8"
    for t in texts:
        try:
            s = t.decode(cfg.encoding) if isinstance(t, bytes) else t
            if "\r" in s:   # memchr: most documents have no carriage return at all
                s = s.replace("\r\n", "\n").replace("\r", "\n")
            n = unicodedata.normalize(form, s) if form != "none" else s
            out.append(t if (utf8 and n is s and isinstance(t, bytes)) else n.encode("utf-8"))
            errors.append("")
        except UnicodeDecodeError as exc:
            out.append(None)
            errors.append(f"byte {exc.object[exc.start:exc.start + 4]!r} at offset {exc.start} of the record is "
                          f"not valid {cfg.encoding}; set --encoding if the file uses another one")
        except UnicodeEncodeError:
            out.append(None)
            errors.append("the text holds lone surrogate code points (e.g. a JSON '\\ud800' escape)")
    return out, errors


def process_batch(batch: _Batch, cfg: IngestConfig, unwrap: bool) -> tuple[pa.Table | None, list[tuple[int, str, str, int]]]:
    """The batch as a corpus table, plus (row, reason, detail, characters removed by a quality filter) for every
    rejected record."""
    arr = _encode_fast(batch.texts, cfg)
    if arr is not None:
        ok, rejects = list(range(len(batch.texts))), []
    else:
        encoded, errors = _encode_texts(batch.texts, cfg)
        rejects = [(i, "undecodable", e, 0) for i, e in enumerate(errors) if e]
        ok = [i for i, e in enumerate(errors) if not e]
        if not ok:
            return None, rejects
        arr = pa.array([encoded[i] for i in ok], pa.binary()).cast(pa.string())
    arr = _clean_markup(arr, [batch.markup[i] for i in ok], cfg)
    # hard-wrapped lines are joined everywhere with unwrap, else in the records that say so (Gutenberg books)
    arr = clean_whitespace(arr, True if unwrap else np.array([batch.unwrap[i] for i in ok], dtype=bool))
    mojibake = None    # the texts' mojibake counts, once the garbled lines are dropped
    if cfg.quality.max_mojibake_line_share is not None:
        arr, dropped, mojibake = drop_mojibake_lines(arr, cfg.quality.max_mojibake_line_share)
        for j, line, start, share in dropped:
            rejects.append((ok[j], "quality_mojibake_line", f"line {line} of the text dropped: {share:.3g} of its "
                            f"characters garbled (max_mojibake_line_share={cfg.quality.max_mojibake_line_share:g}): "
                            f"{start!r}", 0))
    n_chars = np.asarray(pc.utf8_length(arr), dtype=np.int64)
    short = n_chars < cfg.min_chars
    if short.any():
        for j in np.flatnonzero(short):
            reason = "empty_text" if n_chars[j] == 0 else "too_short"
            rejects.append((ok[j], reason, f"{n_chars[j]} characters after normalisation (min_chars={cfg.min_chars})", 0))
        keep = ~short
        arr = arr.filter(pa.array(keep))
        n_chars = n_chars[keep]
        mojibake = mojibake[keep] if mojibake is not None else None
        ok = [i for i, k in zip(ok, keep) if k]
        if not ok:
            return None, rejects
    batch.hist_before += np.histogram(n_chars, bins=[*LENGTH_BINS, np.iinfo(np.int64).max])[0]
    if failures := _in_slices(arr, lambda part, start: measure_and_filter(
            part, cfg.quality, row_offset=start,
            mojibake=None if mojibake is None else mojibake[start:start + len(part)])):
        keep = np.ones(len(ok), dtype=bool)
        for f in failures:
            keep[f.row] = False
            rejects.append((ok[f.row], f.reason, f"{f.detail} ({n_chars[f.row]} characters)", int(n_chars[f.row])))
        examples = arr.take(pa.array([f.row for f in failures[:20]])).to_pylist()
        batch.examples += [(ok[f.row], t[:160]) for f, t in zip(failures, examples)]
        arr = arr.filter(pa.array(keep))
        n_chars = n_chars[keep]
        ok = [i for i, k in zip(ok, keep) if k]
        if not ok:
            return None, rejects
    sentences = split_sentences(arr, cfg.segment_sentences)
    ids = doc_ids(arr)
    if cfg.near_dedup.threshold is not None:
        parts = _in_slices(arr, lambda part, start: [sketch(part, cfg.near_dedup)])   # arr holds a document
        sig = np.concatenate([p[0] for p in parts])
        sets = pa.concat_arrays([p[1] for p in parts])
        batch.near = (ids, sig, band_keys(sig, cfg.near_dedup.bands), sets)
    table = pa.Table.from_arrays([
        pa.array(ids, pa.string()), arr, sentences,
        pa.array(n_chars, pa.int32()), pc.cast(pc.list_value_length(sentences), pa.int32()),
        *batch.columns(ok),
    ], schema=CORPUS_SCHEMA)
    return table, rejects


SLICE_BYTES = 1 << 20


def _in_slices(arr: pa.StringArray, fn, slice_bytes: int = SLICE_BYTES) -> list:
    """``fn(slice, first_row)`` over consecutive slices of ``arr`` of about ``slice_bytes`` of text (whole
    documents), results concatenated. The quality filters and the signatures are per document, so the
    slicing changes no result; it bounds their numpy temporaries (several 8-byte arrays per text byte)."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
    out: list = []
    start = 0
    while start < len(arr):
        stop = int(np.searchsorted(offsets, offsets[start] + slice_bytes, side="right")) - 1
        stop = min(max(stop, start + 1), len(arr))
        out.extend(fn(arr.slice(start, stop - start), start))
        start = stop
    return out


def _clean_markup(arr: pa.StringArray, markup: list[bool], cfg: IngestConfig) -> pa.StringArray:
    """WikiExtractor clean-up on the texts it applies to (see ``IngestConfig.markup_cleanup``)."""
    if cfg.markup_cleanup == "off" or (cfg.markup_cleanup == "auto" and not any(markup)):
        return arr
    if cfg.markup_cleanup == "on" or all(markup):
        return clean_markup(arr, cfg.placeholder_token)
    mask = pa.array(markup)
    return pc.replace_with_mask(arr, mask, clean_markup(arr.filter(mask), cfg.placeholder_token))


def doc_ids(arr: pa.StringArray) -> list[str]:
    """blake2b-128 of each text's UTF-8 bytes, hashed straight from the Arrow buffer (no copies)."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
    data = memoryview(arr.buffers()[2]) if arr.buffers()[2] is not None else memoryview(b"")
    blake = hashlib.blake2b
    return [blake(data[offsets[i]:offsets[i + 1]], digest_size=16).hexdigest() for i in range(len(arr))]


# -- writing ---------------------------------------------------------------------------------
class _ShardWriter:
    """part-<task>-<seq>.parquet files of at most ~shard_bytes of text, one row group per batch."""

    def __init__(self, out_dir: Path, task: int, shard_bytes: int):
        self.out_dir, self.task, self.shard_bytes = out_dir, task, shard_bytes
        self.writer: pq.ParquetWriter | None = None
        self.parts: list[str] = []
        self.written = 0

    def write(self, table: pa.Table, text_bytes: int) -> str:
        if self.writer is None or self.written >= self.shard_bytes:
            self.close()
            name = f"part-{self.task:05d}-{len(self.parts):03d}.parquet"
            self.writer = pq.ParquetWriter(self.out_dir / name, CORPUS_SCHEMA, compression="zstd",
                                           use_dictionary=["source", "source_file", "label"])
            self.parts.append(name)
            self.written = 0
            self.groups = 0
        self.writer.write_table(table, row_group_size=len(table))
        self.written += text_bytes
        self.groups += 1
        return f"{self.parts[-1]} row group {self.groups - 1}"

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _RejectWriter:
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[tuple] = []
        self.writer: pq.ParquetWriter | None = None

    def add(self, f: InputFile, reason: str, detail: str, record: int | None, line: int | None) -> None:
        self.rows.append((f.source, f.relname, record, line, reason, detail))
        if len(self.rows) >= 50_000:
            self.flush()

    def flush(self) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, REJECTS_SCHEMA, compression="zstd")
        if self.rows:
            cols = list(zip(*self.rows))
            self.writer.write_table(pa.Table.from_arrays([pa.array(c, t.type) for c, t in zip(cols, REJECTS_SCHEMA)],
                                                         schema=REJECTS_SCHEMA))
            self.rows = []

    def close(self) -> None:
        self.flush()
        assert self.writer is not None
        self.writer.close()


def run_task(task: Task, cfg: IngestConfig, out_dir: str) -> TaskResult:
    """Read every file of the task and write its shards and rejects under ``out_dir``."""
    out = Path(out_dir)
    result = TaskResult(task.index)
    shards = _ShardWriter(out, task.index, cfg.shard_bytes)
    (out / "rejects").mkdir(exist_ok=True)
    rejects = _RejectWriter(out / "rejects" / f"part-{task.index:05d}.parquet")
    near = _SignatureWriter(out / "_near" / f"sig-{task.index:05d}.parquet")
    batch = _Batch()

    def reject(f: InputFile, reason: str, detail: str, record: int | None, line: int | None) -> None:
        rejects.add(f, reason, detail, record, line)
        result.rejects += 1
        result.reasons[reason] += 1

    def flush() -> None:
        if batch.texts:
            table, bad = process_batch(batch, cfg, unwrap=cfg.unwrap_lines is True)
            examples = dict(batch.examples)
            for row, reason, detail, chars in bad:
                if reason in QUALITY_REASONS:
                    _filtered(batch, row, reason, detail, chars, examples.get(row))
                else:
                    reject(batch.files[row], reason, detail, batch.records[row], batch.lines[row])
            result.length_hist_before_filters = [a + int(b) for a, b in
                                                 zip(result.length_hist_before_filters, batch.hist_before)]
            if table is not None:
                where = shards.write(table, batch.nbytes)
                result.schema_failures += check_row_group(table, where)   # the gate's schema, per row group
                _account(result, table)
                if batch.near is not None:
                    near.write(*batch.near)
            batch.clear()

    def _filtered(b: _Batch, row: int, reason: str, detail: str, chars: int, text: str | None) -> None:
        """A quality filter's removal: in the rejects table, but counted apart from rejects."""
        f = b.files[row]
        rejects.add(f, reason, detail, b.records[row], b.lines[row])
        result.filtered[reason] += 1
        result.filtered_chars[reason] += chars
        ex = result.filtered_examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append({"file": f.relname, "record": b.records[row], "detail": detail, "text": text or ""})

    try:
        for f in task.files:
            for item in read_file(f, cfg):
                if isinstance(item, Records):
                    result.records += len(item)
                    batch.extend(item, f)
                    if batch.nbytes >= cfg.batch_bytes:
                        flush()
                    continue
                if isinstance(item, Reject):
                    reject(f, item.reason, item.detail, item.record, item.line)
                    if item.record is None:
                        result.file_rejects += 1
                    else:
                        result.records += 1
                    continue
                result.records += 1
                batch.add(item, f)
                if batch.nbytes >= cfg.batch_bytes:
                    flush()
            src = result.per_source.setdefault(f.source, Counter())
            src["files"] += 1
            src["input_bytes"] += f.size
            result.bytes_read += f.size
        flush()
    except BaseException:
        # Release the writers' files: on a full disk an open ParquetWriter keeps the space of the
        # temporary file that the failed run's clean-up deletes, until this process exits.
        for writer in (shards, rejects, near):
            with contextlib.suppress(Exception):
                writer.close()
        raise
    shards.close()
    rejects.close()
    result.signature_parts = near.close()
    result.parts = shards.parts
    return result


class _SignatureWriter:
    """Per task: doc_id, order within the task, MinHash signature and LSH band keys of every document
    written, in writing order (the stage's near-dedup reads them)."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.seq = 0

    def write(self, ids: list[str], sig: np.ndarray, bands: np.ndarray, shingles: pa.ListArray) -> None:
        n, k = sig.shape
        table = pa.table({
            "doc_id": pa.array(ids, pa.string()),
            "seq": pa.array(np.arange(self.seq, self.seq + n), pa.int64()),
            "sig": pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1)), k),
            "bands": pa.FixedSizeListArray.from_arrays(pa.array(bands.reshape(-1)), bands.shape[1]),
            "shingles": shingles,
        })
        if self.writer is None:
            self.path.parent.mkdir(exist_ok=True)
            # hashes do not compress: zstd would only cost time
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="none", use_dictionary=False)
        self.writer.write_table(table)
        self.seq += n

    def close(self) -> list[str]:
        if self.writer is None:
            return []
        self.writer.close()
        return [self.path.name]


def _account(result: TaskResult, table: pa.Table) -> None:
    result.documents += table.num_rows
    n_chars = table.column("n_chars").to_numpy()
    n_sent = table.column("n_sentences").to_numpy()
    hist = np.histogram(n_chars, bins=[*LENGTH_BINS, np.iinfo(np.int64).max])[0]
    result.length_hist = [a + int(b) for a, b in zip(result.length_hist, hist)]
    sources = table.column("source").to_numpy(zero_copy_only=False)
    for source in np.unique(sources):
        mask = sources == source
        c = result.per_source.setdefault(str(source), Counter())
        c["documents"] += int(mask.sum())
        c["sentences"] += int(n_sent[mask].sum())
        c["characters"] += int(n_chars[mask].sum())


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
