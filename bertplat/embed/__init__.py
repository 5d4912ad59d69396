"""Embeddings: any BERT-family model turns a corpus or task dataset into vectors in the lake;
DuckDB answers top-k and near-duplicate queries over them.

The names below load on first use, so that importing ``bertplat.cli`` (which mounts the embed commands)
does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EmbedConfig": "bertplat.embed.config",
    "EmbedResult": "bertplat.embed.stage",
    "Int8Refused": "bertplat.embed.stage",
    "run_embed": "bertplat.embed.stage",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bertplat.embed' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
