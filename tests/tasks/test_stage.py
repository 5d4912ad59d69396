"""run_tasks on small files written here: the table and views, rejects, gate failures, splits,
content addressing, and a task bertplat has never seen imported from its YAML alone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bertplat.catalog import Catalog
from bertplat.lake import Lake, read_manifest
from bertplat.tasks.readers import TaskDataError
from bertplat.tasks.spec import TasksOptions, TaskSpec
from bertplat.tasks.splits import split_by_group, split_by_hash
from bertplat.tasks.stage import run_tasks
from bertplat.validation import GateError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "data"))


@pytest.fixture()
def catalog(lake) -> Catalog:
    return Catalog(lake.data_dir / "catalog.duckdb", lake)


def sst(**kw) -> TaskSpec:
    base = {"name": "sst", "task_type": "classification", "format": "tsv",
            "splits": {"train": "train.tsv", "test": {"paths": "test.tsv", "labelled": False,
                                                      "columns": {"id": "index"}}},
            "columns": {"text": "sentence", "label": "label"}, "labels": ["neg", "pos"]}
    base.update(kw)
    return TaskSpec.build(base)


def sst_files(root: Path, train_rows: list[str], n: int = 0) -> None:
    rows = train_rows + [f"sentence {i}\t{'pos' if i % 2 else 'neg'}" for i in range(n)]
    write(root / "train.tsv", "sentence\tlabel\n" + "\n".join(rows) + "\n")
    write(root / "test.tsv", "index\tsentence\n0\tunseen one\n1\tunseen two\n")


def test_import_writes_one_table_with_splits_views_and_a_manifest(tmp_path, lake, catalog):
    sst_files(tmp_path, ["a good film\tpos", "a bad film\tneg"])
    result = run_tasks(sst(), lake, catalog, root=tmp_path)
    assert not result.reused and result.report.passed
    cols, rows = catalog.fetch("SELECT id, split, labelled, text, label, label_id, source_file, source_line "
                               "FROM task_sst ORDER BY split, source_line")
    assert rows == [("0", "test", False, "unseen one", None, None, "test.tsv", 2),
                    ("1", "test", False, "unseen two", None, None, "test.tsv", 3),
                    ("train-0000001", "train", True, "a good film", "pos", 1, "train.tsv", 2),
                    ("train-0000002", "train", True, "a bad film", "neg", 0, "train.tsv", 3)]
    assert catalog.fetch("SELECT count(*) FROM rejects_sst")[1] == [(0,)]
    m = read_manifest(result.dataset)
    assert m["labels"] == ["neg", "pos"] and m["task_type"] == "classification"
    assert m["counts"]["per_split"] == {"train": 2, "test": 2} and m["counts"]["labelled_per_split"]["test"] == 0
    assert m["stats"]["label_counts"] == {"train": {"neg": 1, "pos": 1}, "test": {}}
    assert sum(m["stats"]["char_histogram"]) == 4 and m["config"]["spec"]["name"] == "sst"
    assert (result.dataset.path / "_report" / "length_chars.png").stat().st_size > 1000
    assert {i["rel"] for i in m["inputs"]} == {"train.tsv", "test.tsv"}


def test_unknown_label_becomes_a_reject_with_file_line_value_and_reason(tmp_path, lake, catalog):
    sst_files(tmp_path, ["fine\tpos", "what\tmeh"], n=200)
    result = run_tasks(sst(), lake, catalog, root=tmp_path)
    assert result.counts["rejects"] == 1 and result.counts["per_split"]["train"] == 201
    _, rows = catalog.fetch("SELECT split, source_file, line, value, reason FROM rejects_sst")
    assert rows == [("train", "train.tsv", 3, "meh", "unknown label")]
    assert catalog.fetch("SELECT dataset_kind, count(*) FROM rejects GROUP BY ALL")[1] == [("tasks", 1)]


def test_too_many_rejects_fail_the_gate_and_write_nothing(tmp_path, lake, catalog):
    sst_files(tmp_path, ["fine\tpos", "what\tmeh", "\tpos", "ragged"])
    with pytest.raises(GateError, match="reject ratio.*unknown label.*train.tsv line 3") as exc:
        run_tasks(sst(), lake, catalog, root=tmp_path)
    assert lake.versions("tasks", "sst") == []
    assert exc.value.report_path.is_file()
    rejects = pq.read_table(exc.value.report_path.with_name(exc.value.report_path.stem + "-rejects.parquet"))
    assert sorted(rejects.column("reason").to_pylist()) == ["empty text", "ragged row", "unknown label"]


def test_a_yaml_naming_a_missing_column_fails_before_writing(tmp_path, lake):
    sst_files(tmp_path, ["fine\tpos"])
    with pytest.raises(TaskDataError, match="train.tsv line 1: no column 'text'"):
        run_tasks(sst(columns={"text": "text", "label": "label"}), lake, root=tmp_path)
    assert lake.names("tasks") == [] or lake.versions("tasks", "sst") == []


def test_missing_file_names_the_split_and_the_root(tmp_path, lake):
    with pytest.raises(FileNotFoundError, match="split 'train': file .*train.tsv does not exist.*--root"):
        run_tasks(sst(), lake, root=tmp_path)


def test_same_input_same_fingerprint_and_reuse_changed_input_new_version(tmp_path, lake, catalog):
    sst_files(tmp_path, ["a good film\tpos", "a bad film\tneg"])
    first = run_tasks(sst(), lake, catalog, root=tmp_path)
    again = run_tasks(sst(), lake, catalog, root=tmp_path)
    assert again.reused and again.dataset == first.dataset and again.counts == first.counts
    renamed = run_tasks(sst(name="sst_copy"), lake, catalog, root=tmp_path)
    assert renamed.dataset.fingerprint == first.dataset.fingerprint  # the name is not content
    limited = run_tasks(sst(), lake, catalog, root=tmp_path, options=TasksOptions(limit=1))
    assert limited.dataset.fingerprint != first.dataset.fingerprint and limited.counts["per_split"]["train"] == 1
    sst_files(tmp_path, ["a good film\tpos", "a bad film\tpos"])
    changed = run_tasks(sst(), lake, catalog, root=tmp_path)
    assert changed.dataset.fingerprint not in (first.dataset.fingerprint, limited.dataset.fingerprint)


def test_a_task_named_like_a_corpus_is_refused_because_the_rejects_views_would_clash(tmp_path, lake):
    with lake.writer("corpus", "sst", "0123456789abcdef") as w:
        w.commit({"tables": {}})
    sst_files(tmp_path, ["fine\tpos"])
    with pytest.raises(ValueError, match="corpus dataset named 'sst'.*rejects_sst.*--name"):
        run_tasks(sst(), lake, root=tmp_path)


def test_regression_targets_must_be_finite_numbers_in_range(tmp_path, lake):
    rows = [f"s{i}\tt{i}\t{i % 5}.5" for i in range(300)] + ["x\ty\tnan", "x\ty\t7", "x\ty\tlots"]
    write(tmp_path / "sts.tsv", "a\tb\tscore\n" + "\n".join(rows) + "\n")
    spec = TaskSpec.build({"name": "sts", "task_type": "regression", "format": "tsv", "splits": {"train": "sts.tsv"},
                           "columns": {"text": "a", "text_pair": "b", "label": "score"}, "target_range": [0, 5]})
    result = run_tasks(spec, lake, root=tmp_path)
    table = pq.read_table(result.dataset.path / "part-00000.parquet")
    assert table.column("target").to_pylist()[:2] == [0.5, 1.5] and table.column("text_pair")[0].as_py() == "t0"
    reasons = pq.read_table(result.dataset.path / "rejects" / "rejects.parquet").column("reason").to_pylist()
    assert reasons == ["target not finite", "target out of range", "target not a number"]
    assert result.stats["label_counts"]["train"]["max"] == 4.5


def ner_spec(**kw) -> TaskSpec:
    base = {"name": "ner", "task_type": "token_classification", "format": "conll", "splits": {"train": "t.txt"},
            "tagging_scheme": "iob2", "entity_types": ["PER", "LOC"]}
    base.update(kw)
    return TaskSpec.build(base)


def test_tags_are_checked_against_the_list_the_scheme_and_the_token_count(tmp_path, lake):
    good = "\n\n".join(f"Ann B-PER\nin O\nRome B-LOC\n{i} O" for i in range(300))
    bad = "Ann B-ORG\n\nAnn I-PER\nx O\n\nAnn B-PER\nLee I-PER"
    write(tmp_path / "t.txt", good + "\n\n" + bad + "\n")
    result = run_tasks(ner_spec(), lake, root=tmp_path)
    rejects = pq.read_table(result.dataset.path / "rejects" / "rejects.parquet").to_pylist()
    assert [(r["reason"], r["value"]) for r in rejects] == [("unknown tag", "B-ORG"),
                                                            ("invalid tag sequence", "I-PER O")]
    table = pq.read_table(result.dataset.path / "part-00000.parquet")
    last = table.slice(table.num_rows - 1).to_pylist()[0]
    assert last["tokens"] == ["Ann", "Lee"] and last["tag_ids"] == [1, 2] and last["text"] == "Ann Lee"
    assert result.stats["label_counts"]["train"] == {"LOC": 300, "PER": 301}


def test_tag_count_mismatch_is_a_reject(tmp_path, lake):
    lines = [json.dumps({"w": ["Ann", "ran"], "t": ["B-PER", "O"]})] * 1 + \
            [json.dumps({"w": [f"w{i}", "ran"], "t": ["B-PER", "O"]}) for i in range(200)] + \
            [json.dumps({"w": ["Ann", "ran", "off"], "t": ["B-PER", "O"]})]
    write(tmp_path / "t.jsonl", "\n".join(lines) + "\n")
    result = run_tasks(ner_spec(format="jsonl", splits={"train": "t.jsonl"}, columns={"tokens": "w", "tags": "t"}),
                       lake, root=tmp_path)
    rejects = pq.read_table(result.dataset.path / "rejects" / "rejects.parquet").to_pylist()
    assert [(r["reason"], r["line"], r["value"]) for r in rejects] == [("tag count mismatch", 202, "2 tags")]


def squad_file(path: Path, articles: int = 6, per: int = 40, bad: bool = False) -> Path:
    data = []
    for a in range(articles):
        ctx = f"Article {a} says Ann met Bob in Rome."
        qas = [{"id": f"{a}-{q}", "question": f"Who met Bob ({q})?",
                "answers": [{"text": "Ann", "answer_start": ctx.index("Ann")}]} for q in range(per)]
        data.append({"title": f"A{a}", "paragraphs": [{"context": ctx, "qas": qas}]})
    if bad:
        data[0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    return write(path, json.dumps({"version": "1.1", "data": data}))


def squad_spec(**kw) -> TaskSpec:
    base = {"name": "qa", "task_type": "extractive_qa", "format": "squad", "splits": {"all": "dev.json"},
            "derive": {"from_split": "all", "by": "article", "fractions": {"train": 0.75, "validation": 0.25}}}
    base.update(kw)
    return TaskSpec.build(base)


def test_squad_split_by_article_keeps_every_context_on_one_side(tmp_path, lake, catalog):
    squad_file(tmp_path / "dev.json")
    result = run_tasks(squad_spec(), lake, catalog, root=tmp_path)
    assert result.counts["per_split"] == {"train": 160, "validation": 80}
    _, rows = catalog.fetch("SELECT title, count(DISTINCT split) FROM task_qa GROUP BY title HAVING count(DISTINCT split) > 1")
    assert rows == []
    again = run_tasks(squad_spec(name="qa2"), lake, catalog, root=tmp_path)
    assert catalog.fetch("SELECT id, split FROM task_qa ORDER BY id") == catalog.fetch(
        "SELECT id, split FROM task_qa2 ORDER BY id") and again.dataset.fingerprint == result.dataset.fingerprint


def test_answer_that_does_not_match_its_context_is_a_reject_naming_the_record(tmp_path, lake):
    squad_file(tmp_path / "dev.json", articles=2, per=150, bad=True)
    result = run_tasks(squad_spec(), lake, root=tmp_path)
    rejects = pq.read_table(result.dataset.path / "rejects" / "rejects.parquet").to_pylist()
    assert len(rejects) == 1 and rejects[0]["reason"] == "answer span mismatch"
    assert rejects[0]["value"] == "'Ann'@3" and "data[0].paragraphs[0].qas[0]" in rejects[0]["detail"]
    assert "context[3:6] is 'icl'" in rejects[0]["detail"]


def test_hash_split_is_stable_when_other_examples_come_and_go():
    keys = [f"example {i}" for i in range(2000)]
    full = dict(zip(keys, split_by_hash(keys, {"train": 0.9, "validation": 0.1})))
    half = dict(zip(keys[::2], split_by_hash(keys[::2], {"train": 0.9, "validation": 0.1})))
    assert all(full[k] == v for k, v in half.items())
    share = sum(v == "validation" for v in full.values()) / len(full)
    assert 0.08 < share < 0.12


def test_group_split_gives_every_split_a_group_and_whole_groups():
    groups = ["a"] * 50 + ["b"] * 3
    sides = split_by_group(groups, {"train": 0.99, "validation": 0.01})
    assert set(sides[:50]) != set(sides[50:]) and len(set(sides[:50])) == 1 and len(set(sides[50:])) == 1


def test_a_task_never_seen_works_from_its_yaml_alone(tmp_path, lake, catalog):
    """JSON Lines with oddly named, nested fields, numeric raw labels mapped to names, and an
    unlabelled test file with other field names: only a YAML, no code."""
    recs = [{"meta": {"uid": f"r{i}"}, "Körper": f"Review number {i}", "Bewertung": i % 2} for i in range(30)]
    write(tmp_path / "reviews" / "train.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n")
    write(tmp_path / "reviews" / "blind.jsonl", json.dumps({"n": 7, "body": "Unlabelled review"}) + "\n")
    yaml = write(tmp_path / "reviews.yaml", """
name: reviews_de
task_type: classification
format: jsonl
root: reviews
splits:
  train: train.jsonl
  test:
    paths: [blind.jsonl]
    labelled: false
    columns: {id: n, text: body}
columns: {id: meta.uid, text: Körper, label: Bewertung}
labels: [schlecht, gut]
label_map: {"0": schlecht, "1": gut}
metrics: [accuracy, macro_f1]
language: de
""")
    result = run_tasks(TaskSpec.from_yaml(yaml), lake, catalog)
    assert result.counts["per_split"] == {"train": 30, "test": 1} and result.labels == ["schlecht", "gut"]
    _, rows = catalog.fetch("SELECT id, text, label, label_id FROM task_reviews_de WHERE source_line <= 2 "
                            "ORDER BY split DESC, source_line")
    assert rows == [("r0", "Review number 0", "schlecht", 0), ("r1", "Review number 1", "gut", 1),
                    ("7", "Unlabelled review", None, None)]
    assert read_manifest(result.dataset)["metrics"] == ["accuracy", "macro_f1"]


def test_a_jsonl_qa_task_with_hf_style_answers_and_a_tsv_ner_task_from_yaml_alone(tmp_path, lake, catalog):
    qa = [{"q": f"Where {i}?", "ctx": f"In Rome {i}.", "ans": {"text": ["Rome"], "answer_start": [3]}, "key": i}
          for i in range(20)]
    write(tmp_path / "qa.jsonl", "\n".join(json.dumps(r) for r in qa) + "\n")
    write(tmp_path / "qa.yaml", "name: myqa\ntask_type: extractive_qa\nformat: jsonl\nroot: .\nsplits: {train: qa.jsonl}\n"
                                "columns: {id: key, question: q, context: ctx, answers: ans}\n"
                                "derive: {from_split: train, by: hash, fractions: {train_a: 0.5, train_b: 0.5}}\n")
    res = run_tasks(TaskSpec.from_yaml(tmp_path / "qa.yaml"), lake, catalog)
    assert sum(res.counts["per_split"].values()) == 20 and set(res.counts["per_split"]) == {"train_a", "train_b"}
    assert catalog.fetch("SELECT DISTINCT answer_texts, answer_starts FROM task_myqa")[1] == [(["Rome"], [3])]
    write(tmp_path / "ner.tsv", "words|labels\nAnn Lee ran|B-PER E-PER O\nRome|S-LOC\n")
    write(tmp_path / "ner.yaml", "name: myner\ntask_type: token_classification\nformat: tsv\nroot: .\n"
                                 "splits: {train: ner.tsv}\noptions: {delimiter: '|'}\n"
                                 "columns: {tokens: words, tags: labels}\ntagging_scheme: iobes\n"
                                 "entity_types: [PER, LOC]\n")
    res = run_tasks(TaskSpec.from_yaml(tmp_path / "ner.yaml"), lake, catalog)
    assert res.stats["label_counts"]["train"] == {"LOC": 1, "PER": 1}
    assert catalog.fetch("SELECT tokens FROM task_myner ORDER BY source_line")[1] == [(["Ann", "Lee", "ran"],), (["Rome"],)]


def test_truncation_share_with_the_models_tokenizer(tmp_path, lake):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "w": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "\n".join(
        f"{' '.join(['w'] * n)}\tpos" for n in (2, 6, 7, 20)) + "\n")
    write(tmp_path / "test.tsv", "index\tsentence\n0\tw\n")
    result = run_tasks(sst(), lake, root=tmp_path, options=TasksOptions(tokenizer=str(tmp_path / "tok"), max_length=8))
    per = result.stats["truncation"]["per_split"]
    # 2 + [CLS] [SEP] = 4 and 6 + 2 = 8 fit; 7 + 2 = 9 and 22 do not
    assert per["train"] == {"examples": 4, "truncated": 2, "share": 0.5, "tokens_mean": 10.75, "tokens_max": 22}
    assert math.isclose(per["test"]["share"], 0.0)


def test_squad_v2_unanswerable_questions_are_kept_and_counted(tmp_path, lake):
    from tests.tasks.test_readers import squad_doc

    doc = squad_doc("2.0")
    write(tmp_path / "v2.json", json.dumps(doc))
    spec = TaskSpec.build({"name": "v2", "task_type": "extractive_qa", "format": "squad",
                           "splits": {"validation": "v2.json"}})
    result = run_tasks(spec, lake, root=tmp_path)
    rows = pq.read_table(result.dataset.path / "part-00000.parquet").to_pylist()
    assert [(r["id"], r["is_impossible"], r["answer_texts"]) for r in rows] == [("q1", False, ["Ann"]),
                                                                               ("q2", True, [])]
    assert result.stats["label_counts"]["validation"] == {"answerable": 1, "unanswerable": 1}


def test_the_pandera_schema_catches_rows_the_row_checks_would_have_rejected():
    """The row builder rejects these before the gate; the schema must still catch them if it did not."""
    import pyarrow as pa

    from bertplat.tasks.gate import check_schema
    from bertplat.tasks.rows import EMPTY_ROW
    from bertplat.tasks.schema import TASK_SCHEMA

    base = {**EMPTY_ROW, "split": "train", "labelled": True, "source_file": "f", "source_record": 1}
    cls = [{**base, "id": "1", "text": "fine", "label": "pos", "label_id": 1},
           {**base, "id": "2", "text": "  ", "label": "meh", "label_id": 1}]
    failures = check_schema(pa.Table.from_pylist(cls, schema=TASK_SCHEMA), sst(), ["train", "test"])
    names = " | ".join(c.name for c in failures)
    assert "text is not empty" in names and "label in the declared labels" in names and "label_id" in names
    assert all(not c.passed and "'2'" in c.detail for c in failures)
    ner = [{**base, "id": "1", "tokens": ["a", "b"], "tags": ["O"], "tag_ids": [0]}]
    failures = check_schema(pa.Table.from_pylist(ner, schema=TASK_SCHEMA), ner_spec(), ["train"])
    assert [c.name for c in failures] == ["schema: TaskExample[token_classification] as many tags as tokens"]


def test_task_info_and_read_split_give_later_stages_the_task(tmp_path, lake):
    from bertplat.tasks.dataset import read_split, task_info

    sst_files(tmp_path, ["a good film\tpos", "a bad film\tneg"])
    handle = run_tasks(sst(), lake, root=tmp_path).dataset
    info = task_info(handle)
    assert (info.task_type, info.labels, info.splits, info.labelled_per_split) == (
        "classification", ["neg", "pos"], ["train", "test"], {"train": 2, "test": 0})
    assert read_split(handle, "train", ["text", "label_id"]).to_pylist() == [
        {"text": "a good film", "label_id": 1}, {"text": "a bad film", "label_id": 0}]
    with pytest.raises(ValueError, match="no split 'dev'; its splits are \\['train', 'test'\\]"):
        read_split(handle, "dev")
