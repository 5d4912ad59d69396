"""Downstream task data: readers for the shapes the field uses (GLUE TSV, CoNLL columns, Chinese
character NER, SQuAD JSON, generic CSV/TSV/JSON Lines/Parquet with a column mapping), a YAML task
spec, deterministic splits, the gate, and the ``tasks`` stage that writes one dataset per task.

Names are imported lazily, so ``bertplat.tasks.tagging`` and the readers load without the stage.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "TaskSpec": "bertplat.tasks.spec",
    "TasksOptions": "bertplat.tasks.spec",
    "TasksResult": "bertplat.tasks.stage",
    "run_tasks": "bertplat.tasks.stage",
    "TaskDataError": "bertplat.tasks.readers",
    "TaskInfo": "bertplat.tasks.dataset",
    "task_info": "bertplat.tasks.dataset",
    "read_split": "bertplat.tasks.dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bertplat.tasks' has no attribute {name!r}")
