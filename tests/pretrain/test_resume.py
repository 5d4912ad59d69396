"""Exact resumption: a run stopped (SIGINT in-process, an exception, a real SIGTERM to a subprocess) and
resumed ends with the same losses and weights as the same run left alone. Dropout is on, so the test
also covers the random state; gradient accumulation is on, so it covers the data position mid-window."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import bertplat.pretrain.stage as stage
from bertplat.pretrain import PretrainConfig, PretrainInterrupted, run_pretrain
from bertplat.pretrain.report import read_history, series

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CONFIG = dict(model="tiny", micro_batch_size=16, accumulate_grad_batches=2, lr=2e-3, warmup_steps=2, max_steps=24,
              val_every_n_steps=12, val_examples=64, log_every_n_steps=1, checkpoint_every_n_steps=4,
              shuffle_buffer=1024, min_val_mlm_accuracy=0.0, require_loss_decrease=False)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def train_losses(run_dir: Path) -> list[float]:
    return series(read_history(run_dir / "logs" / "csv"), "train/loss")[1]


def assert_same_run(a: Path, b: Path) -> None:
    la, lb = train_losses(a), train_losses(b)
    assert len(la) == len(lb) == CONFIG["max_steps"]
    assert lb == pytest.approx(la, rel=1e-6, abs=1e-6)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-6, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def straight(demo_lake, tmp_path_factory) -> Path:
    """The reference: the same run, never stopped."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    run_pretrain(demo_lake.latest("examples", "demo"), "straight", PretrainConfig(**CONFIG), demo_lake, run_dir=run_dir)
    return run_dir


class Act(pl.Callback):
    """Test-only: in the middle of the accumulation window after optimizer step ``step``, send ``sig`` to
    this process, or raise (a crash)."""

    def __init__(self, step: int, sig: int | None):
        self.step, self.sig, self.done = step, sig, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        mid_window = pl_module.micro_batches % trainer.accumulate_grad_batches == 1
        if trainer.global_step == self.step and mid_window and not self.done:
            self.done = True
            if self.sig is None:
                raise RuntimeError("simulated crash")
            os.kill(os.getpid(), self.sig)


def with_callback(monkeypatch, callback: pl.Callback) -> None:
    original = stage.build_trainer
    monkeypatch.setattr(stage, "build_trainer", lambda cfg, run_dir, callbacks, *a: original(
        cfg, run_dir, [*callbacks, callback], *a))


def test_sigint_saves_at_a_step_boundary_and_resuming_is_exact(lake, examples, straight, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    # the signal lands half-way through step 8: the checkpoint waits for the step to end
    with_callback(monkeypatch, Act(step=7, sig=signal.SIGINT))
    with pytest.raises(PretrainInterrupted, match="stopped on SIGINT at step 8 of 24"):
        run_pretrain(examples, "stopped", PretrainConfig(**CONFIG), lake, run_dir=run_dir)
    assert json.loads((run_dir / "checkpoints" / "state.json").read_text())["status"] == "interrupted"
    assert not (lake.data_dir / "models").exists()
    monkeypatch.undo()
    with pytest.raises(ValueError, match="pass resume=True"):
        run_pretrain(examples, "stopped", PretrainConfig(**CONFIG), lake, run_dir=run_dir)
    result = run_pretrain(examples, "stopped", PretrainConfig(**CONFIG), lake, run_dir=run_dir, resume=True)
    assert result.resumed_from_step == 8 and result.model_dir is not None
    assert_same_run(straight, run_dir)
    # a finished run resumed again finds its model: nothing is trained or written
    again = run_pretrain(examples, "stopped", PretrainConfig(**CONFIG), lake, run_dir=run_dir, resume=True)
    assert again.reused and again.model_dir == result.model_dir and again.steps == 24
    assert_same_run(straight, run_dir)


def test_a_crash_resumes_from_the_last_periodic_checkpoint_exactly(lake, examples, straight, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with_callback(monkeypatch, Act(step=10, sig=None))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pretrain(examples, "crashed", PretrainConfig(**CONFIG), lake, run_dir=run_dir)
    monkeypatch.undo()
    # steps 9-10 and half of 11 were trained and logged after the step-8 checkpoint; they are trained again
    result = run_pretrain(examples, "crashed", PretrainConfig(**CONFIG), lake, run_dir=run_dir, resume=True)
    assert result.resumed_from_step == 8
    assert_same_run(straight, run_dir)


def test_resuming_with_a_different_config_is_refused(lake, examples, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with_callback(monkeypatch, Act(step=2, sig=signal.SIGINT))
    with pytest.raises(PretrainInterrupted):
        run_pretrain(examples, "changed", PretrainConfig(**CONFIG), lake, run_dir=run_dir)
    with pytest.raises(ValueError, match=r"config differs in \['lr'\]"):
        run_pretrain(examples, "changed", PretrainConfig(**{**CONFIG, "lr": 1e-3}), lake, run_dir=run_dir, resume=True)


SCRIPT = textwrap.dedent("""
    import sys
    from bertplat.lake import Lake
    from bertplat.pretrain import PretrainConfig, PretrainInterrupted, run_pretrain
    lake = Lake(sys.argv[1])
    try:
        run_pretrain(lake.latest("examples", "demo"), "sigterm", PretrainConfig(**{config}), lake, run_dir=sys.argv[2])
    except PretrainInterrupted as exc:
        print(exc, flush=True)
        sys.exit(3)
""")


def test_a_real_sigterm_to_a_training_process_then_resume_is_exact(lake, examples, straight, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(config=repr(CONFIG)), str(lake.data_dir),
                             str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "step=0000004.ckpt").exists():  # mid-run: 4 of 24 steps done
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 3, out
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["status"] == "interrupted" and state["signal"] == "SIGTERM" and 4 <= state["global_step"] < 24
    assert f"at step {state['global_step']} of 24" in out

    result = run_pretrain(examples, "sigterm", PretrainConfig(**CONFIG), lake, run_dir=run_dir, resume=True)
    assert result.resumed_from_step == state["global_step"]
    assert_same_run(straight, run_dir)
