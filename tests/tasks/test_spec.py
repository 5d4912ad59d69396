"""The task YAML: shorthand, derived tag lists, per-split overrides, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertplat.config import ConfigError
from bertplat.tasks.spec import TaskSpec

REPO = Path(__file__).resolve().parents[2]


def spec(**kw) -> TaskSpec:
    base = {"name": "t", "task_type": "classification", "format": "tsv", "splits": {"train": "train.tsv"},
            "columns": {"text": "sentence", "label": "label"}, "labels": [0, 1]}
    base.update(kw)
    return TaskSpec.build(base)


def test_shorthand_paths_and_labels_as_strings():
    s = spec()
    assert s.splits["train"].paths == ["train.tsv"] and s.labels == ["0", "1"]
    assert s.effective_metrics() == ["accuracy"]


def test_tag_list_is_derived_from_the_scheme_and_types_and_aliases_normalise():
    s = spec(task_type="token_classification", format="conll", columns={}, labels=None, tagging_scheme="IOBES",
             entity_types=["PER", "LOC"])
    assert s.tagging_scheme == "bioes"
    assert s.label_list() == ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def test_split_overrides_merge_over_the_task_columns():
    s = spec(splits={"train": "a.tsv", "test": {"paths": "b.tsv", "labelled": False, "columns": {"id": "index"}}})
    assert s.split_columns("test").mapped() == {"id": "index", "text": "sentence", "label": "label"}
    assert s.split_columns("train").mapped() == {"text": "sentence", "label": "label"}


@pytest.mark.parametrize("kw, message", [
    ({"labels": None}, "needs a non-empty labels list"),
    ({"columns": {"text": "sentence"}}, "needs columns.label"),
    ({"metrics": ["pearson"]}, "metric 'pearson' does not apply to classification"),
    ({"task_type": "pair_classification"}, "needs columns.text_pair"),
    ({"task_type": "token_classification", "labels": None}, "needs tagging_scheme"),
    ({"tagging_scheme": "xyz", "task_type": "token_classification"}, "unknown tagging scheme 'xyz'"),
    ({"derive": {"from_split": "all", "fractions": {"a": 0.5, "b": 0.5}}}, "derive.from_split 'all'"),
    ({"derive": {"from_split": "train", "fractions": {"a": 0.5, "b": 0.6}}}, "summing to 1"),
    ({"format": "squad"}, "format squad holds extractive_qa"),
    ({"colums": {}}, "colums: Extra inputs are not permitted"),
    ({"name": "bad name"}, "invalid dataset name"),
])
def test_bad_specs_say_what_to_fix(kw, message):
    with pytest.raises(ConfigError, match=message):
        spec(**kw)


def test_unlabelled_split_needs_no_label_column():
    s = spec(splits={"test": {"paths": "t.tsv", "labelled": False}}, columns={"text": "sentence"})
    assert not s.splits["test"].labelled


def test_fingerprint_json_leaves_out_name_description_and_root():
    assert spec(name="a", description="x", root="/r").fingerprint_json() == spec(name="b").fingerprint_json()
    assert spec().fingerprint_json() != spec(labels=["1", "0"]).fingerprint_json()


def test_root_in_a_yaml_is_relative_to_the_yaml(tmp_path):
    (tmp_path / "sub").mkdir()
    y = tmp_path / "sub" / "task.yaml"
    y.write_text("name: t\ntask_type: classification\nformat: tsv\nroot: ../data\nsplits: {train: a.tsv}\n"
                 "columns: {text: 0, label: 1}\nlabels: [a, b]\n")
    assert TaskSpec.from_yaml(y).root == str((tmp_path / "data").resolve())


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "tasks").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shared_task_yaml_is_a_valid_spec(path):
    s = TaskSpec.from_yaml(path)
    assert s.name == path.stem
    assert s.label_list() or s.task_type == "extractive_qa"
