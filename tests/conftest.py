"""Shared fixtures: the shared data folder (tests that need it skip without it) and a fresh lake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
