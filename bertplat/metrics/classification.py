"""Sentence-level metrics as GLUE reports them: accuracy, F1 (binary and macro), Matthews
correlation, Pearson and Spearman correlation. numpy only.

Conventions follow the reference implementations the benchmarks use (scikit-learn for the
classification metrics, scipy for the correlations):

- F1 is ``2 tp / (2 tp + fp + fn)``; when that is 0/0 (no positive in gold or prediction) it is 0,
  as scikit-learn's default ``zero_division`` gives. Macro F1 averages over every label seen in
  gold or prediction.
- Matthews correlation is the multiclass form (Gorodkin's R_K, as scikit-learn computes it); it is
  0 when undefined (gold or prediction is all one class).
- Pearson and Spearman are NaN when a side is constant: the correlation is undefined there, and
  scipy returns NaN too. A number such as 0 would read as "measured, no correlation"; NaN fails
  every threshold, which is the safe outcome for a model that predicts one constant value.
  Spearman ranks ties by their average rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _pair(gold: Sequence[Any], pred: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    g, p = np.asarray(gold), np.asarray(pred)
    if g.ndim != 1 or p.ndim != 1:
        raise ValueError(f"gold and pred must be flat sequences, got shapes {g.shape} and {p.shape}")
    if len(g) != len(p):
        raise ValueError(f"gold has {len(g)} values but pred has {len(p)}: they must align one to one")
    if len(g) == 0:
        raise ValueError("no examples to score: gold and pred are empty")
    if (g.dtype.kind in "US") != (p.dtype.kind in "US") and g.dtype != object and p.dtype != object:
        raise ValueError(f"gold holds {g.dtype} labels but pred holds {p.dtype}: map both to the same label type")
    return g, p


def _confusion(gold: Sequence[Any], pred: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """The confusion matrix ``C[true, predicted]`` over the sorted labels seen in either side."""
    g, p = _pair(gold, pred)
    labels, inverse = np.unique(np.concatenate([g, p]), return_inverse=True)
    inverse = inverse.reshape(-1)
    k = len(labels)
    cm = np.bincount(inverse[: len(g)] * k + inverse[len(g):], minlength=k * k).reshape(k, k)
    return cm, labels.tolist()


def _f1(tp: float, fp: float, fn: float) -> float:
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom else 0.0


def accuracy(gold: Sequence[Any], pred: Sequence[Any]) -> float:
    """The share of predictions equal to the gold label."""
    g, p = _pair(gold, pred)
    return float(np.mean(g == p))


def f1_binary(gold: Sequence[Any], pred: Sequence[Any], positive: Any = 1) -> float:
    """F1 of the ``positive`` class (MRPC, QQP). Needs at most two labels in gold and pred together."""
    cm, labels = _confusion(gold, pred)
    if len(labels) > 2:
        raise ValueError(f"f1_binary needs two classes but the labels are {labels}: use f1_macro")
    if positive not in labels:
        if len(labels) == 2:
            raise ValueError(f"positive={positive!r} is not one of the labels {labels}: name the positive class")
        return 0.0  # no positive anywhere: 0/0, scored 0 as scikit-learn does
    i = labels.index(positive)
    tp = cm[i, i]
    return _f1(tp, cm[:, i].sum() - tp, cm[i, :].sum() - tp)


def f1_macro(gold: Sequence[Any], pred: Sequence[Any]) -> float:
    """The unweighted mean of each label's F1, over the labels seen in gold or prediction."""
    cm, _ = _confusion(gold, pred)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    return float(np.mean([_f1(*x) for x in zip(tp, fp, fn)]))


def matthews_corrcoef(gold: Sequence[Any], pred: Sequence[Any]) -> float:
    """Matthews correlation (CoLA), multiclass; 0 when undefined."""
    cm, _ = _confusion(gold, pred)
    cm = cm.astype(np.float64)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    n, correct = cm.sum(), np.trace(cm)
    cov_tp = correct * n - t @ p
    cov_pp = n * n - p @ p
    cov_tt = n * n - t @ t
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def _numeric(gold: Sequence[Any], pred: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    g, p = _pair(gold, pred)
    try:
        g, p = g.astype(np.float64), p.astype(np.float64)
    except ValueError:
        raise ValueError("correlations need numbers; gold or pred holds something else") from None
    if len(g) < 2:
        raise ValueError("a correlation needs at least two values")
    if not (np.isfinite(g).all() and np.isfinite(p).all()):
        raise ValueError("gold or pred holds NaN or infinity; a correlation needs finite values")
    return g, p


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if (x == x[0]).all() or (y == y[0]).all():
        return float("nan")  # a constant side: undefined (scipy says NaN too)
    xm, ym = x - x.mean(), y - y.mean()
    r = (xm / np.linalg.norm(xm)) @ (ym / np.linalg.norm(ym))
    return float(np.clip(r, -1.0, 1.0))


def pearson(gold: Sequence[float], pred: Sequence[float]) -> float:
    """Pearson's r (STS-B); NaN when gold or pred is constant."""
    return _pearson(*_numeric(gold, pred))


def rank_average(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (scipy's ``rankdata`` 'average')."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]  # exclusive
    mean_rank = (starts + ends + 1) / 2.0  # mean of starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(gold: Sequence[float], pred: Sequence[float]) -> float:
    """Spearman's rho (STS-B): Pearson's r of the average ranks; NaN when a side is constant."""
    g, p = _numeric(gold, pred)
    return _pearson(rank_average(g), rank_average(p))
