"""Corpus ingestion: raw files of any common shape to a clean, deduplicated, validated corpus.

The names below load on first use, so that worker processes, which import only
``bertplat.ingest.worker``, do not pay for the stage's heavier imports (DuckDB, pandera, plots).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FORMATS": "bertplat.ingest.config",
    "IngestConfig": "bertplat.ingest.config",
    "REJECT_REASONS": "bertplat.ingest.readers",
    "IngestResult": "bertplat.ingest.stage",
    "run_ingest": "bertplat.ingest.stage",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bertplat.ingest' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
