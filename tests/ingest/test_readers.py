"""Every reader, end to end through run_ingest, on small hand-made files."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.ingest.conftest import write


def rows(result, columns="title, label, source_id, text, sentences, source_file, source_record, source_line"):
    files = [str(p) for p in sorted(result.dataset.path.glob("part-*.parquet"))]
    with duckdb.connect() as con:
        return con.execute(f"SELECT {columns} FROM read_parquet(?) ORDER BY source_file, source_record",
                           [files]).fetchall()


def test_plain_text_one_document_per_file(tmp_path, ingest):
    write(tmp_path / "in" / "b.txt", "Second file. It has two sentences.")
    write(tmp_path / "in" / "a.txt", "First file.\n\nNew paragraph.")
    write(tmp_path / "in" / ".hidden.txt", "never read")
    result = ingest([tmp_path / "in"])
    got = rows(result, "title, text, sentences, source_file")
    assert got == [("a", "First file.\n\nNew paragraph.", ["First file.", "New paragraph."], "in/a.txt"),
                   ("b", "Second file. It has two sentences.", ["Second file.", "It has two sentences."], "in/b.txt")]


def test_plain_text_paragraph_and_line_modes(tmp_path, ingest):
    f = write(tmp_path / "p.txt", "doc one line one\ndoc one line two\n\n\ndoc two\n")
    para = rows(ingest([f], name="para", text_mode="paragraphs"), "text, source_record, source_line")
    assert para == [("doc one line one\ndoc one line two", 1, 1), ("doc two", 2, 5)]
    lines = rows(ingest([f], name="lines", text_mode="lines"), "text, source_record, source_line")
    assert lines == [("doc one line one", 1, 1), ("doc one line two", 2, 2), ("doc two", 3, 5)]


def test_jsonl_fields_and_nested_paths(tmp_path, ingest):
    f = write(tmp_path / "d.jsonl", "\n".join(json.dumps(o) for o in [
        {"body": {"text": "Hello there."}, "id": 7, "meta": {"title": "T1"}, "y": 1},
        {"body": {"text": "Second one."}, "id": "x", "meta": {"title": "T2"}, "y": "neg"},
    ]) + "\n")
    result = ingest([f], text_field="body.text", id_field="id", title_field="meta.title", label_field="y")
    assert rows(result, "title, label, source_id, text, source_line") == [
        ("T1", "1", "7", "Hello there.", 1), ("T2", "neg", "x", "Second one.", 2)]


@pytest.mark.parametrize("shape", ["list", "object_of_objects", "wrapped"])
def test_json_shapes(tmp_path, ingest, shape):
    records = [{"t": "Alpha text.", "k": "a"}, {"t": "Beta text.", "k": "b"}]
    data = {"list": records, "object_of_objects": {"first": records[0], "second": records[1]},
            "wrapped": {"data": records}}[shape]
    result = ingest([write(tmp_path / "d.json", json.dumps(data))], text_field="t", label_field="k")
    got = rows(result, "text, label, source_id")
    ids = ["first", "second"] if shape == "object_of_objects" else [None, None]
    assert got == [("Alpha text.", "a", ids[0]), ("Beta text.", "b", ids[1])]


def test_csv_with_quotes_and_tsv_without(tmp_path, ingest):
    csv_file = write(tmp_path / "d.csv", 'id,text,label\n1,"Hello, ""world"".\nSecond line.",pos\n2,plain,neg\n')
    got = rows(ingest([csv_file], name="c", id_field="id", label_field="label"), "source_id, text, label, source_line")
    assert got == [("1", 'Hello, "world".\nSecond line.', "pos", 2), ("2", "plain", "neg", 4)]
    tsv_file = write(tmp_path / "d.tsv", 'sentence\tlabel\nit\'s "quoted" as is\t1\nsecond\t0\n')
    got = rows(ingest([tsv_file], name="t", text_field="sentence", label_field="label"), "text, label")
    assert got == [('it\'s "quoted" as is', "1"), ("second", "0")]


def test_csv_by_column_index_without_header(tmp_path, ingest):
    f = write(tmp_path / "cola.tsv", "src\t1\t\tThe sailors rode the breeze.\nsrc\t0\t*\tThey drank the pub.\n")
    got = rows(ingest([f], csv_header=False, text_field="3", label_field="1"), "text, label")
    assert got == [("The sailors rode the breeze.", "1"), ("They drank the pub.", "0")]


def test_parquet_column(tmp_path, ingest):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"content": ["One doc.", None, "Two doc."], "lbl": [1, 2, 3]}), path)
    result = ingest([path], text_field="content", label_field="lbl", max_reject_ratio=0.5)
    assert rows(result, "text, label, source_record") == [("One doc.", "1", 1), ("Two doc.", "3", 3)]
    assert result.stats["reject_reasons"] == {"missing_field": 1}


def test_wikiextractor_blocks_and_json_form(tmp_path, ingest):
    write(tmp_path / "AA" / "wiki_00",
              '<doc id="12" url="https://x?curid=12" title="Anarchism &amp; Co">\nAnarchism &amp; Co\n\n'
              'Anarchism is a philosophy. It rejects hierarchy.\n</doc>\n'
              '<doc id="25" url="u" title="Autism">\nAutism\n\nAutism is a condition.\n</doc>\n')
    write(tmp_path / "AA" / "wiki_01.jsonl", json.dumps(
        {"id": "13", "url": "u", "title": "数学", "text": "数学\n\n数学是一门学科。它很有用。"}, ensure_ascii=False) + "\n")
    result = ingest([tmp_path / "AA"])
    got = rows(result, "title, source_id, sentences, source_line")
    # issue 15: WikiExtractor input is cleaned by default, so the escaped title line is unescaped too
    assert got == [("Anarchism & Co", "12", ["Anarchism & Co", "Anarchism is a philosophy.", "It rejects hierarchy."], 1),
                   ("Autism", "25", ["Autism", "Autism is a condition."], 6),
                   ("数学", "13", ["数学", "数学是一门学科。", "它很有用。"], 1)]
    dropped = ingest([tmp_path / "AA"], name="notitle", wikiextractor_title_line="drop")
    assert rows(dropped, "sentences")[1] == (["Autism is a condition."],)
    # the escaped title line is compared unescaped, so it is dropped as well
    assert rows(dropped, "sentences")[0] == (["Anarchism is a philosophy.", "It rejects hierarchy."],)


GUTENBERG_NEW = """The Project Gutenberg EBook of Tiny Book, by Someone

This eBook is for the use of anyone anywhere at no cost.

Title: Tiny Book

Author: Someone

*** START OF THIS PROJECT GUTENBERG EBOOK TINY
BOOK ***




Produced by A Volunteer and the Online Distributed
Proofreading Team

CHAPTER I.

It was a dark night. The wind
blew hard.

The end came.

*** END OF THIS PROJECT GUTENBERG EBOOK TINY BOOK ***

***** This file should be named 1-0.txt *****
Licence text follows.
"""

GUTENBERG_OLD = """***The Project Gutenberg Etext of Old Book***

Please take a look at the important information in this header.

***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
Small print lines.
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

Old text begins here. It goes on.

End of The Project Gutenberg Etext of Old Book
"""


def test_gutenberg_header_footer_and_credits_stripped(tmp_path, ingest):
    write(tmp_path / "pg" / "Someone - Tiny Book [PG1].txt", GUTENBERG_NEW.replace("\n", "\r\n"))
    write(tmp_path / "pg" / "Old - Old Book [PG2].txt", GUTENBERG_OLD)
    result = ingest([tmp_path / "pg"], format="gutenberg")
    (old_title, old_text, old_id), (title, text, pg_id) = rows(result, "title, text, source_id")
    assert (title, pg_id) == ("Tiny Book", "PG1")
    assert text == "CHAPTER I.\n\nIt was a dark night. The wind blew hard.\n\nThe end came."
    assert (old_title, old_id, old_text) == ("Old Book", "PG2", "Old text begins here. It goes on.")


def test_auto_format_detection(tmp_path, ingest):
    write(tmp_path / "in" / "a.jsonl", '{"text": "From JSONL."}\n')
    write(tmp_path / "in" / "b.csv", "text\nFrom CSV.\n")
    write(tmp_path / "in" / "c", '<doc id="1" url="u" title="C">\nFrom WikiExtractor.\n</doc>\n')
    write(tmp_path / "in" / "d.txt", GUTENBERG_NEW)
    write(tmp_path / "in" / "e.md", "From plain text.")
    got = [r[0] for r in rows(ingest([tmp_path / "in"]), "text")]
    assert got == ["From JSONL.", "From CSV.", "From WikiExtractor.",
                   "CHAPTER I.\n\nIt was a dark night. The wind blew hard.\n\nThe end came.", "From plain text."]


@pytest.mark.parametrize("suffix,compress", [
    (".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress),
    (".zst", lambda b: zstandard.ZstdCompressor().compress(b)),
])
def test_compressed_inputs(tmp_path, ingest, suffix, compress):
    payload = "\n".join(json.dumps({"text": f"Document number {i}."}) for i in range(500)).encode()
    f = write(tmp_path / f"d.jsonl{suffix}", compress(payload))
    result = ingest([f])
    assert result.counts["documents"] == 500
    assert rows(result, "text")[0] == ("Document number 0.",)


@pytest.mark.parametrize("suffix,compress", [
    (".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress),
    (".zst", lambda b: zstandard.ZstdCompressor().compress(b)),
])
def test_concatenated_streams_are_read_to_the_end(tmp_path, ingest, suffix, compress):
    """What `cat a.gz b.gz`, pbzip2 and multi-threaded zstd write: several frames or members in one file."""
    parts = [("\n".join(json.dumps({"text": f"Part {p} document {i}."}) for i in range(200)) + "\n").encode()
             for p in range(3)]
    f = write(tmp_path / f"multi.jsonl{suffix}", b"".join(compress(part) for part in parts))
    result = ingest([f])
    assert result.counts["documents"] == 600 and not result.counts["rejects"]


def test_compression_detected_by_magic_without_suffix(tmp_path, ingest):
    f = write(tmp_path / "wiki_00", gzip.compress(b'<doc id="1" url="u" title="T">\nHidden gzip.\n</doc>\n'))
    assert rows(ingest([f]), "text") == [("Hidden gzip.",)]


def test_globs_and_overlapping_sources_read_each_file_once(tmp_path, ingest):
    write(tmp_path / "x" / "one.txt", "One.")
    write(tmp_path / "x" / "two.txt", "Two.")
    write(tmp_path / "x" / "skip.log", "Not me.")
    result = ingest([tmp_path / "x" / "*.txt", tmp_path / "x" / "one.txt"])
    assert result.counts["files"] == 2
    assert [r[0] for r in rows(result, "source_file")] == ["x/one.txt", "x/two.txt"]


def test_include_and_exclude_patterns(tmp_path, ingest):
    write(tmp_path / "x" / "keep.txt", "Keep.")
    write(tmp_path / "x" / "drop.txt", "Drop.")
    write(tmp_path / "x" / "FILES.tsv", "a\tb\n")
    result = ingest([tmp_path / "x"], include=["*.txt"], exclude=["drop*"])
    assert [r[0] for r in rows(result, "text")] == ["Keep."]
