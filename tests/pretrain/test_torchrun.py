"""Issue 16: pretraining across nodes. Two torchrun agents on loopback (node ranks 0 and 1, rendezvous
on 127.0.0.1, gloo on CPU), started through scripts/pretrain-torchrun.sh, train the same weights as one
process on the same global batches: the same weights after the last step (to 1e-5) and the same
validation loss. (The logged ``train/loss`` is the closing micro batch's on rank 0, a different
sample in the two runs, so it is not compared.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bertplat.pretrain import PretrainConfig, run_pretrain
from bertplat.pretrain.report import read_history, series
from tests.pretrain.test_ddp import CONFIG, last_state

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pretrain-torchrun.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_match_one_process(lake, examples, tmp_path):
    one = run_pretrain(examples, "one", PretrainConfig(**CONFIG, micro_batch_size=8, devices=1), lake,
                       run_dir=tmp_path / "one")
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "micro_batch_size": 4}), encoding="utf-8")
    env = {**os.environ, "NNODES": "2", "NPROC_PER_NODE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "BERTPLAT_DATA_DIR": str(lake.root.parent),
           "BERTPLAT_VENV": str(Path(sys.executable).parent.parent), "OMP_NUM_THREADS": "1"}
    agents = []
    try:
        for rank in (0, 1):
            log = open(tmp_path / f"node{rank}.log", "wb")
            agents.append(subprocess.Popen(
                ["bash", str(SCRIPT), "--examples", f"demo@{examples.fingerprint}", "--name", "two",
                 "--config", str(config), "--accelerator", "cpu", "--run-dir", str(tmp_path / "two")],
                env={**env, "NODE_RANK": str(rank)}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        codes = [a.wait(timeout=600) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
                a.wait()
    logs = [(tmp_path / f"node{r}.log").read_text(errors="replace") for r in (0, 1)]
    assert codes == [0, 0], "\n\n".join(f"node {r}:\n{log[-3000:]}" for r, log in enumerate(logs))
    assert "rank 1 of pretraining two@" in logs[1] and "rank 0 reports and exports" in logs[1]
    assert "rank 1 of" not in logs[0]
    a, b = last_state(one.run_dir), last_state(tmp_path / "two")
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved < 1e-5, f"largest weight difference {moved}"
    val = lambda d: series(read_history(d / "logs" / "csv"), "val/mlm_loss")[1]  # noqa: E731
    assert val(tmp_path / "two") == pytest.approx(val(one.run_dir), rel=1e-5)
