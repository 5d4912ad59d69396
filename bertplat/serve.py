"""``bertplat serve``: a local Prefect server, the work pool, every deployment and a worker, in one command.

What it starts, in order, each as a child process in its own process group (so a flow run a worker started
stops with the worker):

1. ``prefect server start --host 127.0.0.1 --port PORT`` (SQLite under ``PREFECT_HOME``), waited for on
   ``/api/health``;
2. the process work pool ``bertplat`` (created when missing);
3. every deployment of prefect.yaml whose work pool is that pool (``prefect deploy --name ...``; the GPU
   pool's deployments are for a cluster and are left out);
4. ``prefect worker start --pool bertplat`` in the clone, with ``PWD`` set to it (prefect.yaml's pull step
   runs each flow run there).

It prints the UI address and waits. Ctrl+C or SIGTERM stops the worker (then, after a grace period, kills
its process group), then the server, and exits once none of them is left; a child that exits on its own
stops the rest and ``serve`` fails with its log's tail. No Prefect import: it drives the ``prefect`` CLI.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import typer
import yaml

REPO = Path(__file__).resolve().parents[1]
POOL = "bertplat"


def local_deployments(prefect_yaml: Path, pool: str = POOL) -> list[str]:
    """The names of prefect.yaml's deployments that run on the local process pool."""
    data = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8")) or {}
    out = []
    for d in data.get("deployments") or []:
        if (d.get("work_pool") or {}).get("name") == pool:
            out.append(d["name"])
    if not out:
        raise typer.BadParameter(f"{prefect_yaml} has no deployment on the work pool {pool!r}")
    return out


def deploy_args(prefect_yaml: Path, pool: str = POOL) -> list[str]:
    """``prefect deploy`` arguments for the local pool's deployments (``--all`` would also deploy the GPU
    pool's, and fails where that pool does not exist). ``make deploy`` prints them with ``python -m
    bertplat.serve``."""
    return [arg for name in local_deployments(prefect_yaml, pool) for arg in ("--name", name)]


class Child:
    """A child process in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name, self.log = name, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float) -> None:
        """SIGTERM to the group, SIGKILL after ``grace_s`` (a worker whose server is gone may ignore SIGTERM);
        returns once the group leader has exited and the group is gone."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(self.proc.pid):
                break
            deadline = time.monotonic() + grace_s
            while _group_alive(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _group_alive(self.proc.pid):
                break
        self.proc.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_healthy(url: str, server: Child, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"the Prefect server exited (code {server.proc.returncode}); its log "
                               f"{server.log}:\n{server.tail()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the Prefect server did not answer on {url}/health within {timeout_s:.0f}s; its log "
                       f"{server.log}:\n{server.tail()}")


def prefect_cli(*args: str, env: dict[str, str], log: Path, timeout_s: float = 1800) -> None:
    exe = str(Path(sys.executable).with_name("prefect"))
    with open(log, "ab") as out:
        done = subprocess.run([exe, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=timeout_s)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"`prefect {' '.join(args)}` failed (code {done.returncode}); its log {log}:\n{tail}")


def serve_command(
    port: int = typer.Option(4200, min=1, max=65535, help="Port of the Prefect server and UI on 127.0.0.1."),
    pool: str = typer.Option(POOL, help="The process work pool to create, deploy to and run a worker on "
                             "(prefect.yaml's deployments on this pool are deployed)."),
    prefect_home: Path = typer.Option(None, help="Prefect's home: its SQLite database and UI files (default: "
                                      "PREFECT_HOME, else ~/.prefect). The server's runs and artifacts live there."),
    logs: Path = typer.Option(None, help="Directory for server.log, deploy.log and worker.log (default: "
                              "PREFECT_HOME/bertplat-serve)."),
    startup_timeout: float = typer.Option(600.0, min=1.0, help="Seconds to wait for the server to answer."),
    stop_timeout: float = typer.Option(20.0, min=0.5, help="Seconds each process gets to stop on SIGTERM "
                                       "before it is killed."),
    query_seconds: float = typer.Option(5.0, min=1.0, help="How often the worker polls for scheduled runs."),
    worker_restarts: int = typer.Option(3, min=0, help="Restart a worker that exits on its own this many times "
                                        "(then stop everything and fail)."),
) -> None:
    """Start a Prefect server on 127.0.0.1 (SQLite), the work pool, every deployment and a worker; print the UI
    address; stop them all on Ctrl+C or SIGTERM.

    Flow runs run in this clone (its flows/, configs/ and BERTPLAT_DATA_DIR, default ./data)."""
    host = "127.0.0.1"
    if not port_free(host, port):
        raise typer.BadParameter(f"{host}:{port} is in use (another `bertplat serve` or Prefect server?); "
                                 "stop it or pass --port", param_hint="--port")
    deployments = local_deployments(REPO / "prefect.yaml", pool)
    home = Path(prefect_home or os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser().resolve()
    log_dir = Path(logs or home / "bertplat-serve").resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    api = f"http://{host}:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api, "PWD": str(REPO),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_EXTRA_LOGGERS": "bertplat",
           "PREFECT_WORKER_QUERY_SECONDS": str(query_seconds), "PREFECT_UI_API_URL": api}
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)  # SQLite in PREFECT_HOME

    stopping = {"signal": None}

    def on_signal(signum, _frame):
        stopping["signal"] = signum
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    children: list[Child] = []
    start = time.monotonic()
    exe = str(Path(sys.executable).with_name("prefect"))
    failure: str | None = None
    try:
        print(f"bertplat serve: Prefect server on {host}:{port} (SQLite in {home}), logs in {log_dir}", flush=True)
        server = Child("server", [exe, "server", "start", "--host", host, "--port", str(port)], env,
                       log_dir / "server.log")
        children.append(server)
        wait_healthy(api, server, startup_timeout)
        print(f"  server up in {time.monotonic() - start:.0f}s", flush=True)
        try:
            prefect_cli("work-pool", "inspect", pool, env=env, log=log_dir / "deploy.log", timeout_s=120)
        except RuntimeError:
            prefect_cli("work-pool", "create", pool, "--type", "process", env=env, log=log_dir / "deploy.log",
                        timeout_s=120)
        print(f"  work pool {pool} (process)", flush=True)
        prefect_cli("--no-prompt", "deploy", *deploy_args(REPO / "prefect.yaml", pool), env=env,
                    log=log_dir / "deploy.log")
        print(f"  {len(deployments)} deployments: {', '.join(deployments)}", flush=True)
        worker = Child("worker", [exe, "worker", "start", "--pool", pool], env, log_dir / "worker.log")
        children.append(worker)
        print(f"  worker started (pid {worker.proc.pid}) in {REPO}", flush=True)
        print(f"\nPrefect UI: http://{host}:{port}  (deployments: http://{host}:{port}/deployments)\n"
              "Press Ctrl+C to stop the worker and the server.", flush=True)
        restarts = 0
        while True:
            if not server.alive():
                raise RuntimeError(f"the server exited (code {server.proc.returncode}); its log "
                                   f"{server.log}:\n{server.tail()}")
            if not worker.alive():  # killed or crashed: its flow runs resume from their checkpoints on re-run
                worker.stop(stop_timeout)  # what is left of its process group (a flow run it started)
                if restarts >= worker_restarts:
                    raise RuntimeError(f"the worker exited (code {worker.proc.returncode}) and was restarted "
                                       f"{restarts} times; its log {worker.log}:\n{worker.tail()}")
                restarts += 1
                print(f"  the worker exited (code {worker.proc.returncode}); restarting it ({restarts} of "
                      f"{worker_restarts})", flush=True)
                children.remove(worker)
                worker = Child("worker", [exe, "worker", "start", "--pool", pool], env, log_dir / "worker.log")
                children.append(worker)
                print(f"  worker started (pid {worker.proc.pid}) in {REPO}", flush=True)
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        failure = str(exc)
    finally:
        for child in reversed(children):  # the worker first: it may hang once its server is gone
            child.stop(stop_timeout)
        for s, handler in old.items():
            signal.signal(s, handler)
    why = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl+C"}.get(stopping["signal"], "an error")
    left = [c.name for c in children if c.alive() or _group_alive(c.proc.pid)]
    print(f"bertplat serve: stopped on {why} after {time.monotonic() - start:.0f}s; "
          + (f"still running: {', '.join(left)}" if left else f"{len(children)} processes stopped, none left"),
          flush=True)
    if failure:
        raise SystemExit(f"bertplat serve failed: {failure}")


if __name__ == "__main__":  # make deploy: the deploy arguments for prefect.yaml's local deployments
    print(" ".join(deploy_args(Path("prefect.yaml"))))
