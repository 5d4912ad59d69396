"""DDP on CPU: two processes (gloo, ddp_spawn) with micro batch 4 train the same weights as one process
with micro batch 8 on the same global batches (two fixed data streams), with accumulation over 2 micro
batches, so the token-count normalisation of the MLM loss across ranks and micro batches is exercised."""

from __future__ import annotations

import pytest
import torch

from bertplat.model import BertPretrainingModel, ModelConfig
from bertplat.pretrain import PretrainConfig, run_pretrain
from bertplat.pretrain.report import read_history, series

pytestmark = pytest.mark.slow

CONFIG = dict(model="tiny", model_overrides={"hidden_dropout": 0.0, "attention_dropout": 0.0},  # dropout differs
              accumulate_grad_batches=2, lr=2e-3, warmup_steps=1, max_steps=4, data_streams=2, accelerator="cpu",
              val_every_n_steps=4, val_examples=64, log_every_n_steps=1, checkpoint_every_n_steps=100,
              min_val_mlm_accuracy=0.0, require_loss_decrease=False)


def last_state(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_two_ddp_processes_match_one_process_on_the_same_global_batch(lake, examples, tmp_path):
    one = run_pretrain(examples, "one", PretrainConfig(**CONFIG, micro_batch_size=8, devices=1), lake,
                       run_dir=tmp_path / "one")
    two = run_pretrain(examples, "two", PretrainConfig(**CONFIG, micro_batch_size=4, devices=2, strategy="ddp_spawn"),
                       lake, run_dir=tmp_path / "two")
    assert one.steps == two.steps == 4  # read from the run's logs: ddp_spawn leaves the parent's global_step at 0
    a, b = last_state(one.run_dir), last_state(two.run_dir)
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved < 1e-5, f"largest weight difference {moved}"
    # and training moved them far more than that: the runs did not just both keep their initial weights
    torch.manual_seed(CONFIG["seed"] if "seed" in CONFIG else 0)
    initial = BertPretrainingModel(ModelConfig.from_file(one.run_dir / "model_config.json")).state_dict()
    assert max(float((a["model." + k] - v).abs().max()) for k, v in initial.items()) > 1e-3
    val = lambda r: series(read_history(r.run_dir / "logs" / "csv"), "val/mlm_loss")[1]  # noqa: E731
    assert val(two) == pytest.approx(val(one), rel=1e-5)
