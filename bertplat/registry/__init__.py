"""The model registry: versions, evaluations, lineage, aliases with gated promotion (no Prefect import).

The public functions are loaded lazily (``bertplat.catalog`` imports ``bertplat.registry.schema``, and the
rest of the registry imports the catalog)."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "register_model": "store", "record_evaluation": "store", "RegisteredVersion": "store",
    "promote": "promotion", "PromotionPolicy": "promotion", "PromotionRefused": "promotion",
    "PromotionResult": "promotion", "alias_history": "promotion",
    "resolve_reference": "refs", "ModelNotFound": "refs",
    "models_table": "report", "show_text": "report", "compare_text": "report", "lineage_text": "report",
    "verify": "report", "VerifyResult": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bertplat.registry' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"bertplat.registry.{_EXPORTS[name]}"), name)
