"""The pretraining benchmark script runs end to end and compares like with like."""

from __future__ import annotations

import json

import pytest


@pytest.mark.interop
@pytest.mark.slow
def test_benchmark_smoke(tmp_path, capsys):
    pytest.importorskip("transformers")
    from benchmarks.pretrain_model import main

    out = tmp_path / "bench.json"
    results = main(["--presets", "tiny", "--variants", "ours", "ours-padded", "hf", "--steps", "2", "--rounds", "2",
                    "--warmup", "1", "--batch-size", "3", "--seq-len", "16", "--vocab-size", "300", "--out", str(out)])
    assert [r["variant"] for r in results] == ["ours", "ours-padded", "hf"]
    assert all(len(r["ms_all"]) == 2 and r["ms_per_step"] > 0 and r["error"] is None for r in results)
    # same weights and batch: the eval losses agree, so the timings compare the same computation
    losses = [r["eval_loss"] for r in results]
    assert max(losses) - min(losses) < 1e-4, losses
    assert results[2]["ratio_vs_hf"] == 1.0
    saved = json.loads(out.read_text())
    assert saved["args"]["presets"] == ["tiny"] and len(saved["results"]) == 3
    assert "ms/step" in capsys.readouterr().out
