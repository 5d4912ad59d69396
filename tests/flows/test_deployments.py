"""prefect.yaml deploys from any copy of the repository, with no absolute path baked in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def prefect(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("prefect")
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_prefect_yaml_deploys_from_a_copy(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    clone = tmp_path / "somewhere" / "else"
    clone.mkdir(parents=True)
    for item in ("prefect.yaml", "flows", "configs", "bertplat"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, clone / item)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(clone)}
    created = prefect("work-pool", "create", "bertplat", "--type", "process", cwd=clone, env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    from bertplat.serve import deploy_args

    # what make deploy and bertplat serve deploy: every deployment on the local pool (the GPU pool's need a cluster)
    deployed = prefect("--no-prompt", "deploy", *deploy_args(clone / "prefect.yaml"), cwd=clone, env=env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
    assert {"ingest", "vocab", "examples", "pretrain", "demo", "pipeline", "ingest-drop", "promote"} <= set(deployments)
    assert "pipeline-gpu" not in deployments
    ingest = deployments["ingest"]
    assert ingest.entrypoint == "flows/ingest.py:ingest_flow"
    # the worker's directory, read when the run starts (not the temporary directory a process worker
    # runs each flow in, and not the directory deploy ran in: env templates are filled in at deploy)
    assert ingest.pull_steps == [{"flows.common.enter_worker_directory": {}}]
    assert str(tmp_path) not in str(ingest.model_dump()), "no absolute path of the clone may be baked in"
    assert ingest.work_pool_name == "bertplat"
    assert "params" in ingest.parameter_openapi_schema["properties"]
