"""Evaluation metrics exactly as the benchmarks define them (numpy and the standard library only).

- :mod:`~bertplat.metrics.classification`: accuracy, F1 (binary, macro), Matthews correlation,
  Pearson, Spearman (GLUE; scikit-learn's and scipy's conventions).
- :mod:`~bertplat.metrics.entities`: entity-level P/R/F1 with conlleval semantics (CoNLL, MSRA).
- :mod:`~bertplat.metrics.squad`: SQuAD v1.1/v2.0 exact match and F1 with the official normalisation.

:func:`compute_metrics` looks metrics up by the names a task YAML uses. Each metric reads keyword
arguments by kind: ``gold``/``pred`` (labels or numbers, one per example), ``gold_tags``/``pred_tags``
(one tag list per sentence, with ``scheme``), ``predictions``/``golds`` (SQuAD: question id ->
answer text / gold answer texts; ``squad_version`` "1.1" or "2.0", default: 2.0 when some question
has no gold answer). A one-value metric reports under the name it was asked by
(``macro_f1`` -> ``{"macro_f1": ...}``); a composite reports the keys listed in :data:`METRICS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bertplat.metrics.classification import (
    accuracy,
    f1_binary,
    f1_macro,
    matthews_corrcoef,
    pearson,
    rank_average,
    spearman,
)
from bertplat.metrics.entities import entity_scores
from bertplat.metrics.squad import squad_exact, squad_f1, squad_normalize, squad_scores

__all__ = [
    "METRICS", "Metric", "accuracy", "check_metric_names", "compute_metrics", "entity_scores", "f1_binary",
    "f1_macro", "matthews_corrcoef", "pearson", "rank_average", "spearman", "squad_exact", "squad_f1",
    "squad_normalize", "squad_scores",
]


def _tokens_or_labels(kw: dict[str, Any]) -> tuple[Any, Any]:
    """gold/pred, or the flattened tag lists (token accuracy, as conlleval reports it)."""
    if "gold" in kw and "pred" in kw:
        return kw["gold"], kw["pred"]
    if "gold_tags" in kw and "pred_tags" in kw:
        return [t for s in kw["gold_tags"] for t in s], [t for s in kw["pred_tags"] for t in s]
    raise ValueError("accuracy needs gold= and pred= (or gold_tags= and pred_tags= for token accuracy)")


def _entity(kw: dict[str, Any]) -> dict[str, float]:
    s = entity_scores(kw["gold_tags"], kw["pred_tags"], kw.get("scheme", "iob2"))
    return {"entity_precision": s["precision"], "entity_recall": s["recall"], "entity_f1": s["f1"]}


def _squad(kw: dict[str, Any]) -> dict[str, float]:
    s = squad_scores(kw["predictions"], kw["golds"], kw.get("squad_version"))
    return {"exact_match": s["exact_match"], "squad_f1": s["f1"]}


def _accuracy_f1(kw: dict[str, Any]) -> dict[str, float]:
    acc, f1 = accuracy(kw["gold"], kw["pred"]), f1_binary(kw["gold"], kw["pred"], kw.get("positive", 1))
    return {"accuracy": acc, "f1": f1, "accuracy_f1": (acc + f1) / 2}


def _pearson_spearman(kw: dict[str, Any]) -> dict[str, float]:
    p, s = pearson(kw["gold"], kw["pred"]), spearman(kw["gold"], kw["pred"])
    return {"pearson": p, "spearman": s, "pearson_spearman": (p + s) / 2}


@dataclass(frozen=True)
class Metric:
    """A metric by name: the keyword arguments it needs, what it reports, and how it computes."""

    name: str
    needs: tuple[str, ...]
    reports: tuple[str, ...] | None  # None: one value, under the name it was asked by
    compute: Callable[[dict[str, Any]], Any]
    aliases: tuple[str, ...] = ()
    description: str = ""


_ALL = [
    Metric("accuracy", ("gold", "pred"), None, lambda kw: accuracy(*_tokens_or_labels(kw)), ("acc",),
           "share of exact label matches (with tag lists: token accuracy)"),
    Metric("f1", ("gold", "pred"), None, lambda kw: f1_binary(kw["gold"], kw["pred"], kw.get("positive", 1)),
           ("f1_binary", "binary_f1"), "F1 of the positive class (positive=, default 1)"),
    Metric("f1_macro", ("gold", "pred"), None, lambda kw: f1_macro(kw["gold"], kw["pred"]), ("macro_f1",),
           "mean F1 over labels"),
    Metric("mcc", ("gold", "pred"), None, lambda kw: matthews_corrcoef(kw["gold"], kw["pred"]),
           ("matthews", "matthews_corrcoef"), "Matthews correlation (CoLA)"),
    Metric("pearson", ("gold", "pred"), None, lambda kw: pearson(kw["gold"], kw["pred"]), ("pearsonr",),
           "Pearson's r (STS-B)"),
    Metric("spearman", ("gold", "pred"), None, lambda kw: spearman(kw["gold"], kw["pred"]), ("spearmanr",),
           "Spearman's rho (STS-B)"),
    Metric("accuracy_f1", ("gold", "pred"), ("accuracy", "f1", "accuracy_f1"), _accuracy_f1, ("acc_and_f1",),
           "accuracy, F1 and their mean (MRPC, QQP)"),
    Metric("pearson_spearman", ("gold", "pred"), ("pearson", "spearman", "pearson_spearman"), _pearson_spearman,
           ("pearson_and_spearman", "corr"), "both correlations and their mean (STS-B)"),
    Metric("entity_f1", ("gold_tags", "pred_tags"), ("entity_precision", "entity_recall", "entity_f1"), _entity,
           ("seqeval", "conlleval"), "entity-level micro P/R/F1, conlleval semantics (scheme=, default iob2)"),
    Metric("squad", ("predictions", "golds"), ("exact_match", "squad_f1"), _squad, ("squad_v1", "squad_v2"),
           "SQuAD exact match and F1 in percent"),
    Metric("exact_match", ("predictions", "golds"), None, lambda kw: _squad(kw)["exact_match"], ("em",), "SQuAD exact match in percent"),
    Metric("squad_f1", ("predictions", "golds"), None, lambda kw: _squad(kw)["squad_f1"],
           (), "SQuAD token F1 in percent"),
]
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
_BY_NAME: dict[str, Metric] = {n: m for m in _ALL for n in (m.name, *m.aliases)}


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def check_metric_names(metric_names: list[str]) -> list[Metric]:
    """The metrics for these names (case-insensitive), or an error listing the known ones."""
    found = []
    for name in metric_names:
        metric = _BY_NAME.get(str(name).strip().lower())
        if metric is None:
            raise ValueError(f"unknown metric {name!r}: use one of {', '.join(sorted(_BY_NAME))}")
        found.append(metric)
    return found


def compute_metrics(metric_names: list[str], **kwargs: Any) -> dict[str, float]:
    """Compute each named metric from the keyword arguments and merge the results into one dict."""
    results: dict[str, float] = {}
    for name, metric in zip(metric_names, check_metric_names(metric_names)):
        missing = [k for k in metric.needs if k not in kwargs]
        if missing and not (metric.name == "accuracy" and {"gold_tags", "pred_tags"} <= kwargs.keys()):
            raise ValueError(f"metric {name!r} needs {', '.join(f'{k}=' for k in missing)} "
                             f"({metric.description})")
        value = metric.compute(kwargs)
        out = value if metric.reports is not None else {str(name).strip().lower(): value}
        for key, v in out.items():
            if key in results and not _same(results[key], float(v)):
                raise ValueError(f"metrics {metric_names} both report {key!r} with different values; "
                                 "ask for one of them")
            results[key] = float(v)
    return results
