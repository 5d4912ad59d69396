"""The fine-tuning gate: the dev metric reaches a floor and beats a model that learnt nothing.

The baseline is the train split's most frequent label predicted for every dev example (regression: the
train mean; a constant has no correlation, so 0), scored by the same metric; for NER and QA it is 0 (no
entity found, no answer given). A model that only learnt the label prior does not pass.
"""

from __future__ import annotations

import math

from bertplat.finetune.config import FinetuneConfig
from bertplat.finetune.data import TaskData
from bertplat.metrics import check_metric_names
from bertplat.validation import GateReport


def selection_metric(data: TaskData, cfg: FinetuneConfig) -> str:
    """The dev metric that selects, stops and gates: the config's, else the task's first one."""
    reported: list[str] = []
    for name, m in zip(data.metrics, check_metric_names(data.metrics)):
        reported.extend(m.reports if m.reports is not None else [str(name).strip().lower()])
    if not reported:
        raise ValueError(f"task {data.handle.ref()} declares no metrics; set metric in the finetune config")
    if cfg.metric is None:
        return reported[0] if data.metrics[0].lower() not in reported else data.metrics[0].lower()
    metric = cfg.metric.strip().lower()
    if metric not in reported:
        raise ValueError(f"metric {cfg.metric!r} is not one the task {data.handle.ref()} reports ({reported}); "
                         "choose one of those, or add it to the task spec's metrics")
    return metric


def gate_finetune(dev_metrics: dict[str, float], metric: str, baseline: float, cfg: FinetuneConfig,
                  dataset: str) -> GateReport:
    report = GateReport(stage="finetune", dataset=dataset)
    value = dev_metrics.get(metric, float("nan"))
    finite = math.isfinite(value)
    report.add("dev metric is finite", finite, observed=value, expected="a number", detail=metric)
    report.add("dev metric floor", finite and value >= cfg.min_dev_metric, observed=value,
               expected=f">= {cfg.min_dev_metric}", detail=f"{metric} (min_dev_metric)")
    if cfg.require_beats_baseline:
        report.add("beats the majority baseline", finite and value > baseline, observed=value,
                   expected=f"> {baseline:.4g}", detail=f"{metric}: predicting the train split's majority label "
                   "(regression: its mean; NER/QA: 0) scores the baseline")
    report.stats.update({"dev_metrics": dev_metrics, "baseline": baseline, "metric": metric})
    return report
