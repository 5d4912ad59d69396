"""Deployments run on a real process worker, started as the README says (make server, deploy, worker).

Regression: every deployment run on a worker Crashed before its flow loaded (FileNotFoundError:
'/tmp/tmpXXXXprefect/flows/ingest.py'), because a process worker runs each flow run in a fresh
temporary directory and the pull step ``set_working_directory: .`` pointed there, not at the clone.
Only a real worker shows it: this module starts a Prefect server and a worker as processes, deploys
prefect.yaml with ``make deploy``, and triggers runs through the REST API, as the UI does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent  # the venv running the tests; make's VENV
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def prefect_server():
    """Replaces the conftest's in-process test server: this module starts its own, as `make server` would."""
    yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Background:
    """A process in its own session (so make and what it starts stop together), logging to a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: a worker whose server went away can ignore SIGTERM."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


def wait_for_server(client: httpx.Client, server: Background, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, f"the Prefect server exited:\n{server.tail()}"
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    pytest.fail(f"the Prefect server did not answer within {timeout:.0f}s:\n{server.tail()}")


def run_flow(client: httpx.Client, deployment: str, parameters: dict, worker: Background,
             timeout: float = 420.0) -> dict:
    """Trigger ``flow/deployment`` as the UI's run button does, then wait for a final state."""
    found = client.get(f"/deployments/name/{deployment}")
    assert found.status_code == 200, found.text
    created = client.post(f"/deployments/{found.json()['id']}/create_flow_run",
                          json={"parameters": parameters, "state": {"type": "SCHEDULED"}})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/flow_runs/{run_id}").json()
        if run["state_type"] in FINAL_STATES:
            return run
        assert worker.proc.poll() is None, f"the worker exited:\n{worker.tail()}"
        time.sleep(1.0)
    pytest.fail(f"{deployment} run {run_id} not finished after {timeout:.0f}s:\n{worker.tail()}")


def run_logs(client: httpx.Client, run: dict) -> str:
    logs = client.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200})
    return "\n".join(entry["message"] for entry in logs.json())


def assert_completed(client: httpx.Client, run: dict, worker: Background) -> None:
    assert run["state_type"] == "COMPLETED", (
        f"{run['name']}: {run['state_type']} {run['state']['message']}\n{run_logs(client, run)}\n"
        f"worker:\n{worker.tail()}")


def test_deployments_run_on_a_process_worker_started_as_the_readme_says(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    data_dir = tmp_path / "data"
    # The README's shell: nothing of this session's Prefect or bertplat settings, and a PWD that is not
    # the clone (`make worker` must still give the flow runs the clone).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "BERTPLAT_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=api, PWD=str(tmp_path),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", BERTPLAT_DATA_DIR=str(data_dir),
               PREFECT_WORKER_QUERY_SECONDS="2")  # the worker polls every 10 s by default
    make = ["make", "--no-print-directory", "-o", "setup", f"VENV={VENV}"]  # setup: the venv running this test
    server = worker = None
    try:
        server = Background([str(VENV / "bin" / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], tmp_path / "server.log", env)
        with httpx.Client(base_url=api, timeout=30.0) as client:
            wait_for_server(client, server)
            deployed = subprocess.run([*make, "deploy"], cwd=REPO, env=env, capture_output=True, text=True,
                                      timeout=300)
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            pull = client.get("/deployments/name/ingest/ingest").json()["pull_steps"]
            assert str(REPO) not in json.dumps(pull), f"deploy baked in the clone's path: {pull}"
            worker = Background([*make, "worker"], tmp_path / "worker.log", env)

            # ingest, vocab and examples with their defaults (the demo corpus, then what each made)
            for deployment in ("ingest/ingest", "vocab/vocab", "examples/examples"):
                assert_completed(client, run_flow(client, deployment, {}, worker), worker)
            assert (data_dir / "catalog.duckdb").is_file()
            for kind in ("corpus", "vocab", "examples"):
                assert list((data_dir / "lake" / kind / "demo").glob("*/_manifest.json")), kind

            # pretrain as a custom run: the form's defaults made a smoke run of 12 small steps (the gate's
            # accuracy floors are for the full 800 steps; the loss must still fall)
            defaults = client.get("/deployments/name/pretrain/pretrain").json()["parameters"]["params"]
            options = {**defaults["options"], "max_steps": 12, "warmup_steps": 2, "micro_batch_size": 16,
                       "log_every_n_steps": 2, "val_every_n_steps": 12, "val_examples": 64,
                       "checkpoint_every_n_steps": 12}
            options.update({key: 0.0 for key in options if key.startswith("min_val_mlm_accuracy")})
            run = run_flow(client, "pretrain/pretrain", {"params": {**defaults, "options": options}}, worker)
            assert_completed(client, run, worker)
    finally:
        for process in (worker, server):  # the worker first: it may hang once its server is gone
            if process is not None:
                process.stop()
    models = list((data_dir / "models" / "demo-tiny").glob("*/_manifest.json"))
    assert len(models) == 1 and json.loads(models[0].read_text())["metrics"]["steps"] == 12
