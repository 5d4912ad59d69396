"""What every stage shares: the shape of its result, and re-using a version that already exists."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bertplat.catalog import Catalog
from bertplat.lake import DatasetHandle, Lake
from bertplat.validation import GateReport

CatalogStatus = Literal["indexed", "deferred"]


class StageResult(BaseModel):
    """A stage's output: the version it wrote (or found), its gate report and statistics."""

    dataset: DatasetHandle
    reused: bool
    report: GateReport
    stats: dict[str, Any]
    elapsed_s: float
    catalog_status: CatalogStatus | None = Field(
        default=None, description="Whether the version was indexed in the catalog now ('indexed'), or the "
        "catalog was busy and its registration is pending ('deferred': the next registration or "
        "`bertplat catalog rebuild` indexes it); None when the stage ran without a catalog.")

    def _verb(self, done: str) -> str:
        verb = "already up to date" if self.reused else f"{done} in {self.elapsed_s:.1f}s"
        if self.catalog_status == "deferred":
            verb += (" (the catalog was busy: indexing is deferred to the next write; "
                     "`bertplat catalog rebuild` does it now)")
        return verb


def catalog_status(catalog: Catalog | None, handle: DatasetHandle) -> CatalogStatus | None:
    """What a stage reports about its version's registration (see ``StageResult.catalog_status``)."""
    if catalog is None:
        return None
    return "deferred" if catalog.is_pending(handle) else "indexed"


def find_existing(lake: Lake, catalog: Catalog | None, kind: str, name: str, fp: str
                  ) -> tuple[DatasetHandle, dict[str, Any]] | None:
    """The complete version with this fingerprint, if any, re-pointed as the newest in the catalog:
    same inputs and config, nothing to compute. A busy catalog defers the re-pointing
    (:func:`catalog_status` then says ``"deferred"``)."""
    handle = lake.find(kind, name, fp)
    if handle is None:
        return None
    if catalog is not None:
        catalog.register(handle)
    return handle, lake.manifest(handle)  # the manifest alone: nothing is copied from a bucket
