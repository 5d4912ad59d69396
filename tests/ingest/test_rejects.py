"""Bad input: every reject reason, named with its file, record and line; nothing dropped silently."""

from __future__ import annotations

import codecs
import gzip
import json
import os
import socket

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertplat.ingest import REJECT_REASONS
from bertplat.ingest.sources import SourceError
from bertplat.validation import GateError
from tests.ingest.conftest import write

GOOD = "A perfectly good document. It has two sentences."


@pytest.fixture()
def bad_folder(tmp_path):
    """Good files next to every kind of bad one. Returns (folder, expected rejects)."""
    d = tmp_path / "bad"
    write(d / "good.txt", GOOD)
    write(d / "good.jsonl", "\n".join(json.dumps({"text": f"Good line {i}."}) for i in range(40)) + "\n")
    write(d / "undecodable.txt", b"Latin-1 text: caf\xe9 au lait.")
    write(d / "binary.dat", b"\x00\x01\x02PK\x03\x04" + bytes(range(256)) * 4)
    write(d / "empty.txt", b"")
    write(d / "later_copy.txt", GOOD)  # duplicate of good.txt, which comes first
    big_line = json.dumps({"text": "x" * (50 * 1024 * 1024)})
    write(d / "huge.jsonl", '{"text": "Before the huge line."}\n' + big_line + '\n{"text": "After it."}\n')
    write(d / "records.jsonl", "\n".join([
        '{"text": "Fine record."}',
        '{"text": "unterminated',
        '{"body": "no text field"}',
        '{"text": 42}',
        '{"text": "   "}',
        '["not", "an", "object"]',
        '{"text": "lone surrogate \\ud800 here"}',
    ]).encode() + b'\n{"text": "bad bytes \xff\xfe"}\n')
    write(d / "rows.csv", 'text,label\n"Fine row.",1\ntoo,many,fields\n"Bad \xff bytes",0\n'.encode("latin-1"))
    write(d / "scalar.json", "42")
    write(d / "broken.json", '{"a": [1, 2')
    write(d / "no_column.csv", "sentence,label\nhello,1\n")
    lines = "".join(f'{{"text": "compressed record {i}"}}\n' for i in range(60_000)).encode()
    write(d / "truncated.jsonl.gz", gzip.compress(lines)[:-40])
    write(d / "wiki_00", '<doc id="1" url="u" title="Fine">\nFine article.\n</doc>\nstray junk\n'
                         '<doc id="2" url="u" title="Open">\nNever closed.\n')
    pq.write_table(pa.table({"other": ["x"]}), d / "no_text.parquet")
    write(d / "fake.parquet", b"PAR1 this is not parquet")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "socket.txt"))          # exists, cannot be opened: an I/O error at read time
    expected = {
        ("bad/undecodable.txt", 1, 1, "undecodable"),
        ("bad/binary.dat", None, None, "binary_file"),
        ("bad/empty.txt", None, None, "empty_file"),
        ("bad/later_copy.txt", 1, 1, "duplicate"),
        ("bad/huge.jsonl", 2, 2, "record_too_large"),
        ("bad/records.jsonl", 2, 2, "malformed_json"),
        ("bad/records.jsonl", 3, 3, "missing_field"),
        ("bad/records.jsonl", 4, 4, "not_text"),
        ("bad/records.jsonl", 5, 5, "empty_text"),
        ("bad/records.jsonl", 6, 6, "malformed_json"),
        ("bad/records.jsonl", 7, 7, "undecodable"),
        ("bad/records.jsonl", 8, 8, "undecodable"),
        ("bad/rows.csv", 2, 3, "malformed_csv"),
        ("bad/rows.csv", 3, 4, "undecodable"),
        ("bad/scalar.json", None, None, "unsupported_json_shape"),
        ("bad/broken.json", None, None, "malformed_json"),
        ("bad/no_column.csv", None, None, "missing_column"),
        ("bad/truncated.jsonl.gz", None, None, "corrupt_compression"),
        ("bad/truncated.jsonl.gz", 59988, 59988, "malformed_json"),   # the record the truncation cut short
        ("bad/wiki_00", None, 4, "malformed_doc"),
        ("bad/wiki_00", 2, 5, "malformed_doc"),
        ("bad/no_text.parquet", None, None, "missing_column"),
        ("bad/fake.parquet", None, None, "malformed_parquet"),
        ("bad/socket.txt", None, None, "unreadable"),
    }
    yield d, expected
    sock.close()


def test_bad_folder_completes_and_every_reject_is_named(bad_folder, ingest, catalog):
    folder, expected = bad_folder
    result = ingest([folder], name="bad", max_reject_ratio=0.9)
    assert result.report.passed
    columns, rows = catalog.fetch("SELECT source_file, record, line, reason, detail FROM rejects_bad")
    got = {(f, r, line, reason) for f, r, line, reason, _ in rows}
    assert got == expected
    assert all(detail for *_, detail in rows), "every reject says what was wrong"
    assert {reason for *_, reason in expected} <= set(REJECT_REASONS)
    # The good records all arrived: 1 text file, 40 JSONL lines, the records around the bad ones.
    _, docs = catalog.fetch("SELECT text FROM corpus_bad ORDER BY source_file, source_record")
    texts = [t for (t,) in docs]
    assert GOOD in texts and "Good line 39." in texts and "Before the huge line." in texts and "After it." in texts
    assert "Fine record." in texts and "Fine row." in texts and "Fine article." in texts
    kept = sum(t.startswith("compressed") for t in texts)
    assert kept == 59_987   # every record before the damage is kept
    assert result.counts["duplicates"] == 1
    # Also in the union view across datasets
    _, union = catalog.fetch("SELECT count(*) FROM rejects WHERE dataset = 'bad'")
    assert union[0][0] == len(expected)


def test_reject_details_say_what_to_do(bad_folder, ingest, catalog):
    ingest([bad_folder[0]], name="bad", max_reject_ratio=0.9)
    _, rows = catalog.fetch("SELECT source_file, reason, detail FROM rejects_bad")
    details = {(f, r): d for f, r, d in rows}
    assert "--encoding" in details[("bad/undecodable.txt", "undecodable")]
    assert "--text-field" in details[("bad/no_column.csv", "missing_column")]
    assert "duplicate of bad/" in details[("bad/later_copy.txt", "duplicate")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_is_a_reject(tmp_path, ingest):
    write(tmp_path / "d" / "ok.txt", GOOD)
    locked = write(tmp_path / "d" / "locked.txt", "secret")
    locked.chmod(0)
    result = ingest([tmp_path / "d"], max_reject_ratio=0.9)
    assert result.stats["reject_reasons"] == {"unreadable": 1}


def test_too_many_rejects_fail_with_a_clear_message_and_write_nothing(tmp_path, ingest, lake, settings):
    write(tmp_path / "d" / "records.jsonl", '{"text": "ok"}\n' + "not json\n" * 3)
    with pytest.raises(GateError) as info:
        ingest([tmp_path / "d"], name="strict", max_reject_ratio=0.1)
    message = str(info.value)
    assert "reject ratio" in message and "3 of 4" in message and "--max-reject-ratio" in message
    assert lake.versions("corpus", "strict") == []
    left = lake.root / "corpus" / "strict"
    assert not left.exists() or not list(left.iterdir()), "no temporary directory left behind"
    report_dir = settings.catalog_file.parent / "reports"
    assert list(report_dir.glob("*-rejects.parquet")), "the rejects are kept beside the report"


def test_missing_path_is_an_immediate_error(tmp_path, ingest):
    with pytest.raises(SourceError, match="does not exist"):
        ingest([tmp_path / "nope"])
    with pytest.raises(SourceError, match="matches no files"):
        ingest([tmp_path / "*.jsonl"])


def test_gutenberg_format_on_other_text_is_rejected(tmp_path, ingest):
    write(tmp_path / "g" / "book.txt", "Just text, no licence header.")
    write(tmp_path / "g" / "real.txt", "*** START OF THE PROJECT GUTENBERG EBOOK X ***\nBody text.\n")
    result = ingest([tmp_path / "g"], format="gutenberg", max_reject_ratio=0.9)
    assert result.stats["reject_reasons"] == {"not_gutenberg": 1}
    assert result.counts["documents"] == 1


def test_short_documents_below_min_chars(tmp_path, ingest):
    f = write(tmp_path / "s.jsonl", '{"text": "tiny"}\n{"text": "long enough text"}\n')
    result = ingest([f], min_chars=10, max_reject_ratio=0.9)
    assert result.stats["reject_reasons"] == {"too_short": 1}


def test_a_json_file_over_max_json_bytes_is_rejected_with_advice(tmp_path, ingest):
    d = tmp_path / "j"
    write(d / "big.json", json.dumps([{"text": f"Record number {i} of a large file."} for i in range(100)]))
    write(d / "small.json", json.dumps([{"text": "A small file."}]))
    result = ingest([d], max_json_bytes=1024, max_reject_ratio=0.9)
    assert result.stats["reject_reasons"] == {"file_too_large": 1}
    assert result.counts["documents"] == 1


def _decompressor(suffix: str):
    import bz2
    import lzma

    import zstandard

    return {"bz2": bz2.BZ2Decompressor, "xz": lzma.LZMADecompressor,
            "zst": lambda: zstandard.ZstdDecompressor().decompressobj()}[suffix]()


@pytest.mark.parametrize("suffix", ["bz2", "xz", "zst"])
def test_damaged_bz2_xz_and_zstd_streams_keep_what_came_before(tmp_path, ingest, catalog, suffix):
    import bz2
    import lzma

    import zstandard

    lines = "".join(f'{{"text": "compressed record {i}"}}\n' for i in range(200_000)).encode()
    compress = {"bz2": bz2.compress, "xz": lzma.compress, "zst": zstandard.ZstdCompressor().compress}[suffix]
    blob = compress(lines)
    write(tmp_path / "c" / f"damaged.jsonl.{suffix}", blob[: len(blob) * 3 // 4])
    result = ingest([tmp_path / "c"], name="damaged", max_reject_ratio=0.9)
    reasons = result.stats["reject_reasons"]
    assert reasons["corrupt_compression"] == 1 and set(reasons) <= {"corrupt_compression", "malformed_json"}
    _, rows = catalog.fetch("SELECT source_file, detail FROM rejects_damaged WHERE reason = 'corrupt_compression'")
    assert rows[0][0] == f"c/damaged.jsonl.{suffix}" and "damaged" in rows[0][1] and "truncated" in rows[0][1]
    # Every complete record a decoder can recover from the truncated file is kept (the one the cut
    # falls in, if any, is rejected as malformed JSON).
    recoverable = _decompressor(suffix).decompress(blob[: len(blob) * 3 // 4])
    assert result.counts["documents"] == recoverable.count(b"\n") > 100_000
    assert reasons.get("malformed_json", 0) == (0 if recoverable.endswith(b"\n") else 1)


def test_zstd_with_trailing_garbage_keeps_every_record_and_says_so(tmp_path, ingest, catalog):
    """Issue 10 item 15: 5,000 records then 5,000 garbage bytes kept 0 records, while the reject said
    the records before the damage were kept. ``zstd -dc`` recovers all 5,000; so does ingest now."""
    import zstandard

    lines = "".join(f'{{"text": "record number {i}"}}\n' for i in range(5000)).encode()
    garbage = bytes((i * 7919 + 13) % 256 for i in range(5000))
    write(tmp_path / "z" / "garbage.jsonl.zst", zstandard.ZstdCompressor().compress(lines) + garbage)
    result = ingest([tmp_path / "z"], name="garbage", max_reject_ratio=0.9)
    assert result.counts["documents"] == 5000
    assert result.stats["reject_reasons"] == {"corrupt_compression": 1}
    _, rows = catalog.fetch("SELECT detail FROM rejects_garbage")
    detail = rows[0][0]
    assert f"after {len(lines):,} decompressed bytes" in detail and "every record in those bytes was read" in detail


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_utf16_with_a_bom_is_ingested_not_rejected_as_binary(tmp_path, ingest, catalog, codec):
    """Issue 10 item 14: ``--encoding utf-16`` on a UTF-16 file with a BOM was rejected as binary_file,
    because the NUL check ran before decoding. A BOM decides the encoding, whatever --encoding says."""
    text = '{"text": "Grüße aus Köln. 東京にいます。"}\n{"text": "Second record, ñ."}\n'
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(codec, b"")
    write(tmp_path / "u" / "wide.jsonl", bom + text.encode(codec))
    for encoding in ("utf-16", "utf-8", "latin-1"):
        name = f"u{encoding.replace('-', '')}"
        result = ingest([tmp_path / "u"], name=name, encoding=encoding)
        assert result.counts["rejects"] == 0, (encoding, result.stats["reject_reasons"])
        _, rows = catalog.fetch(f"SELECT text FROM corpus_{name} ORDER BY source_record")
        assert [r[0] for r in rows] == ["Grüße aus Köln. 東京にいます。", "Second record, ñ."]


def test_utf16_without_a_bom_follows_encoding_and_the_binary_reject_suggests_it(tmp_path, ingest, catalog):
    text = "Plain text in UTF-16 without a byte-order mark.\nSecond line.\n"
    write(tmp_path / "n" / "nobom.txt", text.encode("utf-16-le"))
    result = ingest([tmp_path / "n"], name="asked", encoding="utf-16-le", text_mode="lines")
    assert result.counts["documents"] == 2 and result.counts["rejects"] == 0
    with pytest.raises(GateError):
        ingest([tmp_path / "n"], name="plain")   # utf-8: NUL bytes everywhere
    report = next((catalog.path.parent / "reports").glob("*plain*-rejects.parquet"))
    (detail,) = pq.read_table(report).column("detail").to_pylist()
    assert "looks like UTF-16 (NUL every other byte): pass --encoding utf-16-le" in detail
    assert "not a text file in utf-8" in detail   # was "not a text text file"


def test_undecodable_utf16_keeps_the_records_before_it(tmp_path, ingest, catalog):
    good = "".join(f"line {i}\n" for i in range(100)).encode("utf-16-le")
    write(tmp_path / "b" / "broken.txt", codecs.BOM_UTF16_LE + good + b"\x00\xd8A\x00")   # a lone surrogate
    result = ingest([tmp_path / "b"], name="broken", text_mode="lines", max_reject_ratio=0.9)
    assert result.counts["documents"] == 100
    assert result.stats["reject_reasons"] == {"undecodable": 1}
    _, rows = catalog.fetch("SELECT detail FROM rejects_broken")
    assert "utf-16-le" in rows[0][0] and "the records before them were read" in rows[0][0]


def test_symlink_loop_inside_a_directory_is_a_reject_naming_the_link(tmp_path, ingest, catalog):
    """Issue 10 item 17: a loop inside a directory aborted the run ("cannot stat .../self/self/...
    Too many levels of symbolic links"). Now it is a reject naming the link; the rest is ingested."""
    d = tmp_path / "tree"
    write(d / "ok.txt", GOOD)
    write(d / "sub" / "deeper.txt", "Another good document.")
    os.symlink(".", d / "self")                 # the directory itself
    os.symlink("..", d / "sub" / "up")          # the directory above
    os.symlink("knot", d / "knot")              # a link to itself
    os.symlink("nowhere", d / "dangling")       # a link to nothing
    result = ingest([d], name="links", max_reject_ratio=0.9)
    assert result.counts["documents"] == 2
    _, rows = catalog.fetch("SELECT source_file, record, reason, detail FROM rejects_links ORDER BY source_file")
    assert [r[:3] for r in rows] == [("tree/dangling", None, "unreadable"), ("tree/knot", None, "symlink_loop"),
                                     ("tree/self", None, "symlink_loop"), ("tree/sub/up", None, "symlink_loop")]
    assert all("symbolic link" in r[3] for r in rows)


def test_self_referencing_symlink_given_directly_is_a_loop_not_permission_denied(tmp_path, ingest):
    os.symlink(tmp_path / "me", tmp_path / "me")
    with pytest.raises(SourceError, match="symbolic link loop") as info:
        ingest([tmp_path / "me"])
    assert "permission" not in str(info.value)
    os.symlink(tmp_path / "gone", tmp_path / "broken")
    with pytest.raises(SourceError, match="broken symbolic link"):
        ingest([tmp_path / "broken"])


def test_gutenberg_too_large_hint_names_max_record_bytes_not_a_missing_option(tmp_path, ingest, catalog):
    """Issue 10 item 21: the hint said "raise --max-record-bytes", an option the CLI does not have."""
    book = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n" + "A line of a long book.\n" * 100
    write(tmp_path / "g" / "big.txt", book)
    write(tmp_path / "g" / "small.txt", "*** START OF THE PROJECT GUTENBERG EBOOK Y ***\nShort.\n")
    ingest([tmp_path / "g"], name="books", format="gutenberg", max_record_bytes=1024, max_reject_ratio=0.9)
    _, rows = catalog.fetch("SELECT reason, detail FROM rejects_books")
    assert rows[0][0] == "record_too_large"
    assert "--max-record-bytes" not in rows[0][1] and "max_record_bytes" in rows[0][1] and "--config" in rows[0][1]


def test_txt_file_starting_with_a_brace_is_text_not_json_lines(tmp_path, ingest, catalog):
    """Issue 10 item 21: under --format auto a .txt file whose first byte is '{' was read as JSON Lines."""
    write(tmp_path / "t" / "notes.txt", "{braces} open this note. It is plain text.")
    result = ingest([tmp_path / "t"], name="brace")
    assert result.counts["documents"] == 1 and result.counts["rejects"] == 0
    _, rows = catalog.fetch("SELECT text FROM corpus_brace")
    assert rows == [("{braces} open this note. It is plain text.",)]


def test_every_reject_reason_is_produced_by_a_test_here():
    """A reason added to REJECT_REASONS needs a test in this module that produces it."""
    source = open(__file__, encoding="utf-8").read()
    untested = [r for r in REJECT_REASONS if f'"{r}"' not in source.split("def test_every_reject_reason")[0]]
    assert not untested, f"no test produces {untested}"
