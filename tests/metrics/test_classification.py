"""Classification and correlation metrics against scikit-learn and scipy, random and edge cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics as skm

from bertplat.metrics import accuracy, f1_binary, f1_macro, matthews_corrcoef, pearson, rank_average, spearman


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def _random_pairs(seed: int, n_cases: int = 120):
    rng = np.random.default_rng(seed)
    for _ in range(n_cases):
        n = int(rng.integers(1, 40))
        k = int(rng.integers(1, 5))
        gold = rng.integers(0, k, n)
        # predictions: mostly right, sometimes noise, so all confusion shapes appear
        pred = np.where(rng.random(n) < rng.random(), gold, rng.integers(0, k, n))
        yield gold.tolist(), pred.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_macro_f1_and_mcc_match_sklearn_on_random_labels(seed):
    for gold, pred in _random_pairs(seed):
        assert accuracy(gold, pred) == pytest.approx(skm.accuracy_score(gold, pred), abs=1e-12)
        assert f1_macro(gold, pred) == pytest.approx(_quiet(skm.f1_score, gold, pred, average="macro"), abs=1e-12)
        assert matthews_corrcoef(gold, pred) == pytest.approx(_quiet(skm.matthews_corrcoef, gold, pred), abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_binary_f1_matches_sklearn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        n = int(rng.integers(1, 30))
        gold = (rng.random(n) < rng.random()).astype(int).tolist()
        pred = (rng.random(n) < rng.random()).astype(int).tolist()
        assert f1_binary(gold, pred) == pytest.approx(_quiet(skm.f1_score, gold, pred), abs=1e-12)
        assert f1_binary(gold, pred, positive=0) == pytest.approx(
            _quiet(skm.f1_score, gold, pred, pos_label=0), abs=1e-12)


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ([1, 1, 1], [1, 1, 1]),  # all one class, all right
        ([0, 0, 0], [0, 0, 0]),  # no positive anywhere: F1 0/0 -> 0
        ([0, 0, 0], [1, 1, 1]),
        ([1, 0, 1, 0], [1, 1, 1, 1]),  # prediction constant: MCC undefined -> 0
        ([1, 1, 1, 1], [1, 0, 1, 0]),  # gold constant
        (["pos", "neg", "pos"], ["pos", "pos", "neg"]),
        ([2, 2, 0], [0, 2, 2]),
    ],
)
def test_edge_cases_follow_sklearn_zero_division(gold, pred):
    positive = "pos" if isinstance(gold[0], str) else (2 if 2 in gold else 1)
    assert f1_binary(gold, pred, positive) == _quiet(skm.f1_score, gold, pred, pos_label=positive)
    assert f1_macro(gold, pred) == pytest.approx(_quiet(skm.f1_score, gold, pred, average="macro"))
    assert matthews_corrcoef(gold, pred) == pytest.approx(_quiet(skm.matthews_corrcoef, gold, pred))
    assert accuracy(gold, pred) == skm.accuracy_score(gold, pred)


def test_mcc_is_zero_when_undefined_and_exact_on_a_hand_worked_case():
    assert matthews_corrcoef([1, 0, 1, 0], [1, 1, 1, 1]) == 0.0
    assert matthews_corrcoef([0, 0], [0, 0]) == 0.0
    # tp=2 tn=1 fp=1 fn=0: (2*1 - 1*0) / sqrt(3*2*2*1)
    assert matthews_corrcoef([1, 1, 0, 0], [1, 1, 1, 0]) == pytest.approx(2 / math.sqrt(12))


def test_f1_binary_refuses_multiclass_and_a_missing_positive_label():
    with pytest.raises(ValueError, match="f1_macro"):
        f1_binary([0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="positive"):
        f1_binary(["a", "b"], ["a", "b"])  # positive=1 is not a label


def test_misaligned_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="align"):
        accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="same label type"):
        accuracy(["1", "0"], [1, 0])


@pytest.mark.parametrize("seed", [5, 6])
def test_pearson_and_spearman_match_scipy_on_random_values(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(2, 50))
        gold = rng.normal(size=n) * 5
        pred = gold * rng.normal() + rng.normal(size=n)
        assert pearson(gold, pred) == pytest.approx(scipy.stats.pearsonr(gold, pred)[0], abs=1e-10)
        assert spearman(gold, pred) == pytest.approx(scipy.stats.spearmanr(gold, pred)[0], abs=1e-10)


def test_spearman_averages_the_ranks_of_ties_as_scipy_does():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(3, 40))
        gold = rng.integers(0, 4, n).astype(float)  # STS-B-like scores with many ties
        pred = gold + rng.integers(-1, 2, n)
        if len(set(gold)) == 1 or len(set(pred)) == 1:
            continue
        assert np.array_equal(rank_average(gold), scipy.stats.rankdata(gold))
        assert spearman(gold, pred) == pytest.approx(scipy.stats.spearmanr(gold, pred)[0], abs=1e-10)
    assert rank_average(np.array([10.0, 20.0, 10.0, 30.0])).tolist() == [1.5, 3.0, 1.5, 4.0]


def test_correlation_of_a_constant_side_is_nan_like_scipy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(scipy.stats.pearsonr([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])[0])
    assert math.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(pearson([1.0, 2.0, 3.0], [2.5, 2.5, 2.5]))
    assert math.isnan(spearman([3, 3, 3, 3], [1, 2, 3, 4]))


def test_correlations_hand_worked_and_refusals():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone, not linear
    with pytest.raises(ValueError, match="at least two"):
        pearson([1.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        pearson([1.0, float("nan")], [1.0, 2.0])
