"""Every ``configs/tasks/*.yaml`` imports the shared task data (../shared/data/tasks): the first
records of each split quickly, and the whole of the tasks whose published counts we can check."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertplat.catalog import Catalog
from bertplat.lake import Lake
from bertplat.tasks.spec import TasksOptions, TaskSpec
from bertplat.tasks.stage import run_tasks

pytestmark = pytest.mark.data
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "tasks"
YAMLS = sorted(CONFIGS.glob("*.yaml"))


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    return Lake(str(tmp_path_factory.mktemp("shared-tasks") / "data"))


@pytest.fixture(scope="module")
def catalog(lake) -> Catalog:
    return Catalog(lake.data_dir / "catalog.duckdb", lake)


def test_there_is_a_spec_for_every_shared_task():
    assert {p.stem for p in YAMLS} >= {"sst2", "mrpc", "msr_paraphrase", "cola", "conll2003", "squad11",
                                       "chnsenticorp", "msra_ner"}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_each_shared_task_imports_its_first_records_cleanly(path, shared_data, lake, catalog):
    spec = TaskSpec.from_yaml(path)
    # SQuAD's first article alone has 200+ questions: a split by article needs several articles.
    limit = 1500 if spec.derive and spec.derive.by == "article" else 200
    result = run_tasks(spec, lake, catalog, root=shared_data / "tasks", options=TasksOptions(limit=limit))
    assert result.report.passed and result.counts["rejects"] == 0
    expected_splits = list(spec.derive.fractions) if spec.derive else list(spec.splits)
    assert list(result.counts["per_split"]) == expected_splits
    for split, source in spec.splits.items():
        if spec.derive is None:
            assert result.counts["per_split"][split] == 200
            assert result.counts["labelled_per_split"][split] == (200 if source.labelled else 0)
    _, rows = catalog.fetch(f"SELECT count(*) FROM task_{spec.name}")
    assert rows == [(result.counts["rows"],)]


@pytest.mark.slow
def test_conll2003_whole_gives_the_official_sentence_and_entity_counts(shared_data, lake):
    result = run_tasks(TaskSpec.from_yaml(CONFIGS / "conll2003.yaml"), lake, root=shared_data / "tasks")
    assert result.counts["per_split"] == {"train": 14041, "validation": 3250, "test": 3453}
    assert result.stats["label_counts"]["train"] == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}
    assert result.counts["rejects"] == 0


@pytest.mark.slow
def test_squad11_dev_split_by_article_keeps_all_questions_and_no_article_on_both_sides(shared_data, lake, catalog):
    result = run_tasks(TaskSpec.from_yaml(CONFIGS / "squad11.yaml"), lake, catalog, root=shared_data / "tasks")
    assert result.counts["rows"] == 10570 and result.counts["rejects"] == 0
    assert 0.75 < result.counts["per_split"]["train"] / 10570 < 0.85
    _, rows = catalog.fetch("SELECT count(*) FROM (SELECT title FROM task_squad11 GROUP BY title "
                            "HAVING count(DISTINCT split) > 1)")
    assert rows == [(0,)]
    assert catalog.fetch("SELECT count(DISTINCT title) FROM task_squad11")[1] == [(48,)]


@pytest.mark.slow
def test_mrpc_and_msra_ner_whole(shared_data, lake):
    mrpc = run_tasks(TaskSpec.from_yaml(CONFIGS / "mrpc.yaml"), lake, root=shared_data / "tasks")
    assert mrpc.counts["per_split"] == {"train": 3667, "validation": 408, "test": 1725}
    msra = run_tasks(TaskSpec.from_yaml(CONFIGS / "msra_ner.yaml"), lake, root=shared_data / "tasks")
    # every sentence is a valid BMES sequence over NR/NS/NT
    assert msra.counts["rejects"] == 0 and msra.counts["per_split"] == {"validation": 4636, "test": 4365}
