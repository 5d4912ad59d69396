"""Pieces every flow uses: the deployments' pull step, the settings/lake/catalog context, the IO retry
policy, and artifacts."""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from bertplat.catalog import Catalog
from bertplat.lake import DatasetHandle, DatasetNotFound, Lake
from bertplat.progress import LogProgress
from bertplat.settings import Settings
from bertplat.validation import GateError, GateReport


def enter_worker_directory() -> dict[str, str]:
    """prefect.yaml's pull step: run the flow in the directory the worker was started in, the clone.

    A process worker runs each flow run in a fresh temporary directory, where the entrypoint
    (flows/ingest.py) does not exist. The worker's directory reaches the flow-run process as the
    ``PWD`` its shell set, inherited through the worker. It is read here, when the run starts: a
    ``{{ $PWD }}`` template in prefect.yaml would be filled in by ``prefect deploy``, baking in the
    directory deploy ran in.
    """
    directory = os.environ.get("PWD", "")
    if not os.path.isdir(os.path.join(directory, "flows")):
        raise FileNotFoundError(f"the worker's directory {directory or '(PWD unset)'} is not a bertplat clone "
                                "(no flows/ there): start the worker from a shell in the clone's root, "
                                "with `make worker`")
    os.chdir(directory)
    return {"directory": directory}


def context() -> tuple[Settings, Lake, Catalog]:
    settings = Settings()
    logging.getLogger("bertplat").setLevel(settings.log_level)
    lake = Lake(settings.data_dir, settings.cache_dir)
    return settings, lake, Catalog(settings.catalog_file, lake)


def resolve_input(lake: Lake, kind: str, ref: str, field: str, made_by: str) -> DatasetHandle:
    """The input dataset ``ref`` of a flow; a missing one fails with what to set in the run form.

    ``field`` is the form field that named it, ``made_by`` the deployment that makes such datasets.
    """
    try:
        return lake.resolve(kind, ref)
    except DatasetNotFound as exc:
        raise DatasetNotFound(f"{exc}. Set `{field}` in the run form to a dataset that exists (NAME or "
                              f"NAME@FINGERPRINT), or make {kind} {ref!r} first with the `{made_by}` deployment.") from None


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
