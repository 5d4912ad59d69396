"""run_finetune / run_evaluate end to end on a tiny random BERT and small task files written here."""

from __future__ import annotations

import json
import os
import signal

import lightning.pytorch as pl
import pytest
from safetensors.torch import load_file

from bertplat.finetune import stage
from bertplat.finetune.config import FinetuneConfig
from bertplat.finetune.evaluate import predict_split, run_evaluate
from bertplat.finetune.stage import FinetuneInterrupted, run_finetune
from bertplat.lake import Lake
from bertplat.validation import GateError
from tests.finetune.conftest import import_ner, import_pairs, import_qa, import_regression, import_sentiment

FAST = dict(max_length=32, batch_size=16, log_every_n_steps=1)
LEARN = FinetuneConfig(epochs=8, lr=5e-3, weight_decay=0.0, warmup_ratio=0.0, **FAST)


def test_classification_learns_beats_the_baseline_exports_and_writes_predictions(tmp_path, tiny_base, lake, catalog):
    task = import_sentiment(tmp_path / "toy", lake, catalog)
    r = run_finetune(tiny_base, task, "toy", LEARN, lake, catalog)
    assert r.dev_metric > r.baseline + 0.2 and r.report.passed and not r.reused
    for f in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "README.md", "metrics.json",
              "_manifest.json", "learning_curve.png"):
        assert (r.model_dir / f).is_file(), f
    hf = json.loads((r.model_dir / "config.json").read_text())
    assert hf["architectures"] == ["BertForSequenceClassification"] and hf["id2label"] == {"0": "neg", "1": "pos"}
    metrics = json.loads((r.model_dir / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "validation"} and set(metrics["splits"]["validation"]) == {"accuracy", "f1"}
    manifest = json.loads((r.model_dir / "_manifest.json").read_text())
    assert manifest["parents"][0] == {"kind": "tasks", "name": "toy", "fingerprint": task.fingerprint}
    assert manifest["parents"][1]["path"] == str(tiny_base.resolve())
    _, rows = catalog.fetch("SELECT split, count(*), count(gold), avg(confidence) > 0.5 FROM predictions_toy "
                            "GROUP BY split ORDER BY split")
    assert rows == [("test", 2, 0, True), ("train", 96, 96, True), ("validation", 32, 32, True)]
    _, acc = catalog.fetch("SELECT avg(correct::INT) FROM predictions_toy WHERE split = 'validation'")
    assert acc[0][0] == pytest.approx(r.metrics["validation"]["accuracy"])

    # the same inputs again: reused, nothing trained
    again = run_finetune(tiny_base, task, "toy", LEARN, lake, catalog)
    assert again.reused and again.fingerprint == r.fingerprint and again.dev_metric == r.dev_metric

    # evaluate the exported model: the dev metrics of metrics.json, exactly
    ev = run_evaluate(r.model_dir, task, "validation", lake, catalog)
    assert ev.metrics == metrics["splits"]["validation"]
    assert catalog.fetch(f"SELECT count(*) FROM predictions_{ev.predictions.name}")[1] == [(32,)]


def test_gate_floor_too_high_refuses_and_exports_nothing(tmp_path, tiny_base, lake, catalog):
    task = import_sentiment(tmp_path / "toy", lake, catalog, n_train=32, n_dev=16)
    cfg = FinetuneConfig(epochs=1, min_dev_metric=1.01, **FAST)
    with pytest.raises(GateError, match="dev metric floor"):
        run_finetune(tiny_base, task, "toy", cfg, lake, catalog)
    assert not (lake.data_dir / "models" / "toy").exists() or not any((lake.data_dir / "models" / "toy").iterdir())
    assert lake.names("predictions") == []


@pytest.mark.parametrize("kind", ["pairs", "regression", "ner", "qa"])
def test_every_task_type_fine_tunes_end_to_end(kind, tmp_path, tiny_base, lake, catalog, monkeypatch):
    importer = {"pairs": import_pairs, "regression": import_regression, "ner": import_ner, "qa": import_qa}[kind]
    task = importer(tmp_path / kind, lake, catalog)
    cfg = FinetuneConfig(epochs=2, lr=5e-3, require_beats_baseline=False, min_dev_metric=-1.0, **FAST)
    predicted = []

    def spy(model, split, cfg, device=None):
        predicted.append(split.name)
        return predict_split(model, split, cfg, device)

    monkeypatch.setattr(stage, "predict_split", spy)
    r = run_finetune(tiny_base, task, kind, cfg, lake, catalog)
    assert r.report.passed and (r.model_dir / "model.safetensors").is_file()
    # dev is scored with the outputs of the best checkpoint's own evaluation, not run through it again...
    assert "validation" not in predicted and "train" in predicted
    # ...and those give exactly what a fresh pass over the exported model gives
    assert run_evaluate(r.model_dir, task, "validation", lake, catalog).metrics == r.metrics["validation"]
    expected = {"pairs": {"accuracy", "f1"}, "regression": {"pearson", "spearman"},
                "ner": {"entity_precision", "entity_recall", "entity_f1"}, "qa": {"exact_match", "squad_f1"}}[kind]
    assert set(r.metrics["validation"]) == expected
    _, rows = catalog.fetch(f"SELECT count(*), count(predicted) FROM predictions_{kind} WHERE split = 'validation'")
    assert rows[0][0] > 0 and rows[0][0] == rows[0][1]
    if kind == "ner":
        _, tags = catalog.fetch("SELECT len(tokens) = len(pred_tags) FROM predictions_ner")
        assert all(t for (t,) in tags)


class _KillAt(pl.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step and pl_module.micro_batches % trainer.accumulate_grad_batches == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_resume_after_an_interruption_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_base):
    cfg = FinetuneConfig(epochs=2, lr=1e-3, accumulate_grad_batches=2, batch_size=8, max_length=32,
                         require_beats_baseline=False, eval_every_n_steps=2)
    weights = []
    for run, kill in (("whole", None), ("killed", 3)):
        lake = Lake(str(tmp_path / run / "data"))
        task = import_sentiment(tmp_path / run / "toy", lake, None, n_train=40, n_dev=16)
        if kill:
            with pytest.raises(FinetuneInterrupted, match="resume"):
                run_finetune(tiny_base, task, "toy", cfg, lake, callbacks=[_KillAt(kill)])
            r = run_finetune(tiny_base, task, "toy", cfg, lake, resume=True)
            assert r.resumed_from_step == kill + 1  # RunCheckpoints sees the signal at the next step boundary
        else:
            r = run_finetune(tiny_base, task, "toy", cfg, lake)
        weights.append(load_file(str(r.model_dir / "model.safetensors")))
    a, b = weights
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k


def test_a_model_directory_that_is_not_bert_family_is_refused_before_training(tmp_path, tiny_base, lake, catalog):
    task = import_sentiment(tmp_path / "toy", lake, catalog, n_train=16, n_dev=8)
    gpt = tmp_path / "gpt2"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    with pytest.raises(ValueError, match="cannot fine-tune .*gpt2.*only 'bert' and 'albert'"):
        run_finetune(gpt, task, "toy", FinetuneConfig(**FAST), lake, catalog)
    assert not (lake.data_dir / "runs").exists()


@pytest.mark.slow
def test_all_minilm_l6_v2_learns_a_tiny_sentiment_set(tmp_path, lake, catalog):
    from tests.finetune.conftest import minilm_dir

    task = import_sentiment(tmp_path / "toy", lake, catalog, n_train=64, n_dev=32)
    cfg = FinetuneConfig(epochs=6, lr=1e-4, warmup_ratio=0.1, batch_size=16, max_length=32)
    r = run_finetune(minilm_dir(), task, "minilm-toy", cfg, lake, catalog)
    assert r.steps >= 24 and r.dev_metric >= 0.8 > r.baseline


def test_score_splits_limits_the_splits_scored_after_training_and_names_unknown_ones(tmp_path, tiny_base, lake):
    task = import_sentiment(tmp_path / "toy", lake, None, n_train=32, n_dev=16)
    cfg = FinetuneConfig(epochs=1, require_beats_baseline=False, score_splits=["test"], **FAST)
    assert cfg.fingerprint_json() != FinetuneConfig(epochs=1, **FAST).fingerprint_json()
    assert "score_splits" not in FinetuneConfig(**FAST).fingerprint_json()  # fingerprints from before the field
    r = run_finetune(tiny_base, task, "toy", cfg, lake)
    assert set(r.metrics) == {"validation"}  # test is scored but unlabelled: predictions only, no metrics
    metrics = json.loads((r.model_dir / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"validation"}
    with pytest.raises(ValueError, match=r"score_splits names \['dev2'\].*its splits are"):
        run_finetune(tiny_base, task, "toy2", FinetuneConfig(epochs=1, score_splits=["dev2"], **FAST), lake)
