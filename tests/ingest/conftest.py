"""Fixtures for ingest tests: a lake and catalog in a temporary data root, and a runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertplat.catalog import Catalog
from bertplat.ingest import IngestConfig, run_ingest
from bertplat.lake import Lake


@pytest.fixture()
def lake(settings) -> Lake:
    return Lake(settings.data_dir)


@pytest.fixture()
def catalog(settings, lake) -> Catalog:
    return Catalog(settings.catalog_file, lake)


@pytest.fixture()
def ingest(lake, catalog):
    """ingest(paths, name="t", **config) -> IngestResult, in a fresh lake (one worker by default)."""

    def run(paths, name: str = "t", **options):
        options.setdefault("workers", 1)
        return run_ingest([str(p) for p in paths], name, IngestConfig(**options), lake, catalog)

    return run


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path
