"""Bad input: every reject reason, named with its file, record and line; nothing dropped silently."""

from __future__ import annotations

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
    assert 0 < kept < 60_000   # the records before the damage are kept
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
    assert lake.names("corpus") == ["strict"] and lake.versions("corpus", "strict") == []
    assert not list((lake.root / "corpus" / "strict").iterdir()), "no temporary directory left behind"
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


@pytest.mark.parametrize("suffix", ["bz2", "xz", "zst"])
def test_damaged_bz2_xz_and_zstd_streams_keep_what_came_before(tmp_path, ingest, catalog, suffix):
    import bz2
    import lzma

    import zstandard

    # ~6 MB of records: the reader decodes in 1 MiB blocks, and the block the damage falls in is lost
    lines = "".join(f'{{"text": "compressed record {i}"}}\n' for i in range(200_000)).encode()
    compress = {"bz2": bz2.compress, "xz": lzma.compress, "zst": zstandard.ZstdCompressor().compress}[suffix]
    blob = compress(lines)
    write(tmp_path / "c" / f"damaged.jsonl.{suffix}", blob[: len(blob) * 3 // 4])
    result = ingest([tmp_path / "c"], name="damaged", max_reject_ratio=0.9)
    assert result.stats["reject_reasons"] == {"corrupt_compression": 1}
    _, rows = catalog.fetch("SELECT source_file, detail FROM rejects_damaged")
    assert rows[0][0] == f"c/damaged.jsonl.{suffix}" and "damaged" in rows[0][1]
    assert 100_000 < result.counts["documents"] < 160_000  # the records before the damage are kept


def test_every_reject_reason_is_produced_by_a_test_here():
    """A reason added to REJECT_REASONS needs a test in this module that produces it."""
    source = open(__file__, encoding="utf-8").read()
    untested = [r for r in REJECT_REASONS if f'"{r}"' not in source.split("def test_every_reject_reason")[0]]
    assert not untested, f"no test produces {untested}"
