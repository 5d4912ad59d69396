"""Pieces every flow uses: the settings/lake/catalog context, the IO retry policy, and artifacts."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from bertplat.catalog import Catalog
from bertplat.lake import Lake
from bertplat.progress import LogProgress
from bertplat.settings import Settings
from bertplat.validation import GateError, GateReport


def context() -> tuple[Settings, Lake, Catalog]:
    settings = Settings()
    logging.getLogger("bertplat").setLevel(settings.log_level)
    lake = Lake(settings.data_dir)
    return settings, lake, Catalog(settings.catalog_file, lake)


def run_progress() -> LogProgress:
    """Progress lines every 10 s in the flow-run log."""
    return LogProgress(get_run_logger(), every_s=10.0)  # type: ignore[arg-type]


def retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only transient I/O failures; bad input, bad config and failed gates fail at once."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError))


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def png_markdown(path: Path, alt: str) -> str:
    """An inline PNG (data URI), so the plot shows in the Prefect UI without a file server."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"


def publish_gate_report(report: GateReport, key: str) -> None:
    create_markdown_artifact(report.to_markdown(), key=key, description=report.summary())


@contextmanager
def gate_report_on_failure(kind: str, name: str) -> Iterator[None]:
    """A failed gate publishes its report as an artifact (key ``<kind>-<name>-gate-failed``), then fails."""
    try:
        yield
    except GateError as exc:
        publish_gate_report(exc.report, artifact_key(kind, name, "gate-failed"))
        raise


def publish_table(rows: list[dict[str, Any]], key: str, description: str) -> None:
    if rows:
        create_table_artifact(rows, key=key, description=description)
