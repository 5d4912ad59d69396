"""Smoke test of benchmarks/pretraining_value.py --quick: the whole chain (ingest -> vocab -> examples ->
pretrain -> random-init export -> task import -> fine-tune both arms) on a sliver of the shared data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.data]


@pytest.mark.parametrize("objective", ["nsp", "mlm"])
def test_quick_run_pairs_both_arms_on_the_same_architecture(shared_data: Path, tmp_path: Path, objective: str):
    env = {**os.environ, "BERTPLAT_DATA_DIR": str(tmp_path / "data"), "BERTPLAT_SHARED_DATA": str(shared_data)}
    cmd = [sys.executable, "-m", "benchmarks.pretraining_value", "--suite", "en", "--quick", "--out",
           str(tmp_path / "out"), "--objective", objective, "--pretrain-set", "lr=1e-3", "warmup_steps=4"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "out" / "en-quick.json").read_text(encoding="utf-8"))

    # One pair per task, both arms with the same seed, data and config; scores are real metrics in [0, 1].
    assert {(r["task"], r["arm"], r["seed"]) for r in doc["runs"]} == {
        (t, a, 0) for t in ("sst2", "conll2003") for a in ("pretrained", "random")}
    for r in doc["runs"]:
        assert 0.0 <= r["score"] <= 1.0 and r["steps"] > 0
        assert r["split"] in r["metrics"]
    assert doc["threads"] == 1
    assert doc["pretrain"]["objective"] == objective and doc["pretrain"]["lr"] == pytest.approx(1e-3)
    assert (doc["pretrain"]["val_nsp_acc"] is None) == (objective == "mlm")  # MLM alone has no NSP head
    assert "sst2" in proc.stdout and "random init" in proc.stdout  # the table was printed

    # The random arm is the pretraining run's own architecture and tokenizer, with other (untrained) weights.
    pretrained, random = Path(doc["pretrain"]["model_dir"]), Path(doc["pretrain"]["random_dir"])
    assert json.loads((pretrained / "config.json").read_text()) == json.loads((random / "config.json").read_text())
    assert (pretrained / "vocab.txt").read_bytes() == (random / "vocab.txt").read_bytes()
    a, b = load_file(pretrained / "model.safetensors"), load_file(random / "model.safetensors")
    assert a.keys() == b.keys()
    assert any(not a[k].equal(b[k]) for k in a)


def test_pretrain_overrides_parse_numbers_before_yaml():
    from benchmarks.pretraining_value import parse_overrides

    # YAML 1.1 reads "5e-4" as a string; the override must be the number.
    assert parse_overrides(["lr=5e-4", "warmup_steps=100", "model=mini", "grad_clip=1.0"]) == {
        "lr": 0.0005, "warmup_steps": 100, "model": "mini", "grad_clip": 1.0}
    with pytest.raises(SystemExit, match="not KEY=VALUE"):
        parse_overrides(["lr"])
