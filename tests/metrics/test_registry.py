"""compute_metrics: metrics by the names task YAMLs use, and what bertplat.metrics imports."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from bertplat.metrics import METRICS, check_metric_names, compute_metrics


def test_task_yaml_names_report_under_the_name_asked_for():
    out = compute_metrics(["accuracy", "f1", "macro_f1", "matthews"], gold=[0, 1, 1, 0], pred=[0, 1, 0, 0])
    assert out == pytest.approx({"accuracy": 0.75, "f1": 2 / 3, "macro_f1": (2 / 3 + 0.8) / 2,
                                 "matthews": 1 / math.sqrt(3)})
    assert compute_metrics(["MCC"], gold=[0, 1], pred=[0, 1]) == {"mcc": 1.0}


def test_composites_report_their_parts_and_the_mean():
    out = compute_metrics(["accuracy_f1"], gold=[0, 1, 1, 0], pred=[0, 1, 0, 0])
    assert out["accuracy_f1"] == pytest.approx((0.75 + 2 / 3) / 2)
    out = compute_metrics(["pearson_spearman", "pearson"], gold=[1.0, 2.0, 3.0], pred=[1.0, 2.0, 4.0])
    assert set(out) == {"pearson", "spearman", "pearson_spearman"} and out["spearman"] == pytest.approx(1.0)


def test_nan_from_two_metrics_is_not_a_collision():
    out = compute_metrics(["pearson", "pearson_spearman"], gold=[1.0, 1.0, 1.0], pred=[1.0, 2.0, 3.0])
    assert math.isnan(out["pearson"]) and math.isnan(out["pearson_spearman"])


def test_entity_and_token_accuracy_from_tags():
    gold = [["B-PER", "I-PER", "O"], ["S-LOC"]]
    pred = [["B-PER", "E-PER", "O"], ["O"]]
    out = compute_metrics(["entity_f1", "accuracy"], gold_tags=gold, pred_tags=pred, scheme="bioes")
    # gold's unclosed 'B-PER I-PER' still decodes (leniently) to the PER that pred closes with E-
    assert out == pytest.approx({"entity_precision": 1.0, "entity_recall": 0.5, "entity_f1": 2 / 3,
                                 "accuracy": 0.5})


def test_squad_names_and_version():
    preds, golds = {"q1": "the cat", "q2": ""}, {"q1": ["Cat"], "q2": ["dog", "."]}
    assert compute_metrics(["exact_match", "squad_f1"], predictions=preds, golds=golds) == \
        {"exact_match": 100.0, "squad_f1": 50.0}  # v1.1 rules: q2's '.' matches '' exactly
    assert compute_metrics(["squad"], predictions=preds, golds=golds, squad_version="2.0") == \
        {"exact_match": 50.0, "squad_f1": 50.0}


def test_unknown_names_missing_inputs_and_clashes_are_refused():
    with pytest.raises(ValueError, match="unknown metric 'bleu': use one of .*accuracy"):
        check_metric_names(["bleu"])
    with pytest.raises(ValueError, match="needs gold_tags=, pred_tags="):
        compute_metrics(["entity_f1"], gold=[1], pred=[1])
    with pytest.raises(ValueError, match="metric .accuracy. needs gold=, pred="):
        compute_metrics(["accuracy"], predictions={}, golds={})
    # the same key from two metrics (same inputs, same value) is merged, not refused
    assert compute_metrics(["f1", "accuracy_f1"], gold=[0, 1, 1, 0], pred=[0, 1, 0, 0])["f1"] == pytest.approx(2 / 3)
    assert set(METRICS) >= {"accuracy", "f1", "f1_macro", "mcc", "pearson", "spearman", "entity_f1", "squad"}


def test_metrics_import_only_numpy_and_the_standard_library():
    code = ("import sys, bertplat.metrics, bertplat.tasks.tagging; "
            "bad = [m for m in ('sklearn', 'scipy', 'seqeval', 'torch', 'prefect') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
