"""What every stage shares: the shape of its result, and re-using a version that already exists."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bertplat.catalog import Catalog
from bertplat.lake import DatasetHandle, Lake, read_manifest
from bertplat.validation import GateReport


class StageResult(BaseModel):
    """A stage's output: the version it wrote (or found), its gate report and statistics."""

    dataset: DatasetHandle
    reused: bool
    report: GateReport
    stats: dict[str, Any]
    elapsed_s: float

    def _verb(self, done: str) -> str:
        return "already up to date" if self.reused else f"{done} in {self.elapsed_s:.1f}s"


def find_existing(lake: Lake, catalog: Catalog | None, kind: str, name: str, fp: str
                  ) -> tuple[DatasetHandle, dict[str, Any]] | None:
    """The complete version with this fingerprint, if any, re-pointed as the newest in the catalog:
    same inputs and config, nothing to compute."""
    handle = lake.find(kind, name, fp)
    if handle is None:
        return None
    if catalog is not None:
        catalog.register(handle)
    return handle, read_manifest(handle)
