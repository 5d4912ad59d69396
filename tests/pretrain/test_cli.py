"""`bertplat pretrain`: options over a YAML config, a summary that says where the model is, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch  # noqa: F401  (its log handler binds sys.stderr at import: pytest's, not a CliRunner's)
import pytest
from typer.testing import CliRunner

from bertplat.cli import app

runner = CliRunner()


@pytest.fixture()
def data_dir(lake, monkeypatch):
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(lake.data_dir))
    return lake.data_dir


@pytest.mark.slow
def test_pretrain_command_trains_exports_and_summarises(data_dir, tmp_path):
    cfg = tmp_path / "pretrain.yaml"
    cfg.write_text("model: mini\nmax_steps: 100\nwarmup_steps: 1\nval_every_n_steps: 4\nval_examples: 64\n"
                   "log_every_n_steps: 1\nmin_val_mlm_accuracy: 0.0\nrequire_loss_decrease: false\n")
    # the command line wins over the file: tiny, 4 steps
    result = runner.invoke(app, ["pretrain", "--examples", "demo", "--name", "cli-tiny", "--config", str(cfg),
                                 "--model", "tiny", "--max-steps", "4", "--micro-batch-size", "8", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    model_dir = next((data_dir / "models" / "cli-tiny").iterdir())
    assert f"model cli-tiny@{model_dir.name}: 4 steps on examples demo" in result.output
    assert str(model_dir) in result.output and "BertForPreTraining.from_pretrained" in result.output
    manifest = json.loads((model_dir / "_manifest.json").read_text())
    assert manifest["config"]["model"] == "tiny" and manifest["config"]["micro_batch_size"] == 8
    assert manifest["config"]["lr"] == 1e-3 and manifest["model_config"]["num_layers"] == 2
    # the same command again finds the model (tests/pretrain/test_rerun.py covers re-runs and resumes)
    again = runner.invoke(app, ["pretrain", "--examples", "demo", "--name", "cli-tiny", "--config", str(cfg),
                                "--model", "tiny", "--max-steps", "4", "--micro-batch-size", "8", "--lr", "1e-3"])
    assert again.exit_code == 0 and "already up to date" in again.output, again.output


@pytest.mark.parametrize("args, message, code", [
    (["--model", "huge"], "unknown model preset 'huge'", 2),
    (["--devices", "two"], "--devices must be a number or 'auto'", 2),
    (["--precision", "fp8"], "precision", 2),
    (["--examples", "nothing"], "examples", 1),
])
def test_bad_options_fail_before_any_work_with_one_clear_message(data_dir, args, message, code):
    base = {"--examples": "demo", "--name": "bad"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    result = runner.invoke(app, ["pretrain", *[x for kv in base.items() for x in kv]])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (Path(data_dir) / "runs").exists()
