"""Flows run against a real, temporary Prefect server (prefect_test_harness), once per session."""

from __future__ import annotations

import pytest

import flows  # noqa: F401  (Prefect defaults before Prefect is imported)


@pytest.fixture(autouse=True, scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    # The server can take 20 s or more to start on a busy 2-core machine.
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    """Flows read settings from the environment, as they would under a Prefect worker."""
    path = tmp_path / "data"
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(path))
    return path
