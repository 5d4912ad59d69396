"""The pretrain flow under a real Prefect server: the export, the artifacts, a failed gate, and the presets."""

from __future__ import annotations

from pathlib import Path

import pytest

import flows  # noqa: F401  (Prefect defaults before Prefect is imported)
from bertplat.pretrain import PretrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
SMOKE = dict(model="tiny", micro_batch_size=16, max_steps=6, warmup_steps=1, val_every_n_steps=6, val_examples=64,
             log_every_n_steps=1, min_val_mlm_accuracy=0.0, require_loss_decrease=False)


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):  # 20 s or more on a busy 2-core machine
        yield


@pytest.fixture()
def data_dir(lake, monkeypatch):
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(lake.data_dir))
    return lake.data_dir


@pytest.mark.slow
@pytest.mark.server
def test_the_flow_exports_the_model_and_publishes_the_curve_and_metrics(prefect_server, data_dir):
    from prefect.artifacts import Artifact

    from flows.pretrain import PretrainParams, pretrain_flow

    model_dir = Path(pretrain_flow(PretrainParams(examples="demo", name="flowtest", options=PretrainConfig(**SMOKE))))
    assert model_dir.parent == data_dir / "models" / "flowtest" and (model_dir / "model.safetensors").is_file()
    summary = Artifact.get("model-flowtest")
    assert summary is not None and "data:image/png;base64," in summary.data and "validation MLM accuracy" in summary.data
    table = Artifact.get("model-flowtest-metrics")
    assert table is not None and "val/mlm_acc" in str(table.data) and '"step": 6.0' in str(table.data)

    state = pretrain_flow(PretrainParams(examples="demo", name="flowgate", options=PretrainConfig(
        **{**SMOKE, "min_val_mlm_accuracy": 0.99})), return_state=True)
    assert state.is_failed()
    report = Artifact.get("model-flowgate-gate-failed")
    assert report is not None and "**FAIL**" in report.data
    assert not (data_dir / "models" / "flowgate").exists()


@pytest.mark.parametrize("preset", ["mini-wiki", "base-128"])
def test_presets_load(preset):
    cfg = PretrainConfig.from_yaml(CONFIGS / f"{preset}.yaml")
    assert cfg.max_steps and cfg.min_val_mlm_accuracy > 0
