"""FinetuneConfig presets, overrides, and the finetune / evaluate commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertplat.config import ConfigError
from bertplat.finetune.cli import finetune_app, parse_overrides
from bertplat.finetune.config import FinetuneConfig
from bertplat.lake import Lake
from tests.finetune.conftest import import_sentiment

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "finetune").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_preset_is_a_valid_config(path):
    assert isinstance(FinetuneConfig.from_yaml(path), FinetuneConfig)


def test_overrides_are_yaml_values_and_operational_fields_stay_out_of_the_fingerprint():
    assert parse_overrides(["lr=3e-5", "epochs=2", "model_overrides={unpad: false}"]) == {
        "lr": 3e-5, "epochs": 2, "model_overrides": {"unpad": False}}
    a, b = FinetuneConfig(), FinetuneConfig(min_dev_metric=0.9, log_every_n_steps=1)
    assert a.fingerprint_json() == b.fingerprint_json() != FinetuneConfig(lr=1e-4).fingerprint_json()
    with pytest.raises(ConfigError, match="max_tokens"):
        FinetuneConfig.build({"max_tokens": 64, "max_length": 128})


def test_finetune_and_evaluate_commands_print_what_was_made(tmp_path, tiny_base, monkeypatch):
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(tmp_path / "data"))
    lake = Lake(str(tmp_path / "data"))
    import_sentiment(tmp_path / "toy", lake, None, n_train=32, n_dev=16)
    runner = CliRunner()
    res = runner.invoke(finetune_app, ["finetune", "--model", str(tiny_base), "--task", "toy", "--name", "toycli",
                                       "epochs=1", "max_length=32", "require_beats_baseline=false"])
    assert res.exit_code == 0, res.output
    assert "model toycli@" in res.output and "validation: accuracy" in res.output and "predictions_toycli" in res.output
    res = runner.invoke(finetune_app, ["evaluate", "--model", "toycli", "--task", "toy", "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "no labels: predictions only" in res.output and "predictions_toycli_toy_test" in res.output
