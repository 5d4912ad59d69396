"""What a finished run leaves for people: the metric history, the loss-curve PNG, the gate, the model card.

Lightning's CSV logger writes one ``metrics.csv`` per launch (a *segment*: the first run and each
resumption). :func:`read_history` merges them by step, later segments winning, so a run killed after
its last checkpoint and resumed shows each step once, as trained by the run that kept it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from bertplat.plots import plot_curves  # noqa: F401  (selects matplotlib's Agg backend before pyplot)
from bertplat.pretrain.config import PretrainConfig
from bertplat.validation import GateReport


def read_history(csv_root: Path) -> list[dict[str, float]]:
    """One row per optimizer step (steps completed) with every metric logged at it, steps ascending."""
    by_step: dict[int, dict[str, float]] = {}
    for segment in sorted(csv_root.glob("segment-*")):
        path = segment / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        seen: set[int] = set()
        for row in rows:
            # Lightning logs with the 0-based index of the step in progress: +1 is the steps completed.
            step = int(float(row.pop("step"))) + 1
            if step not in seen:  # a later segment replaces what an earlier one logged at this step
                by_step[step] = {}
                seen.add(step)
            by_step[step].update({k: float(v) for k, v in row.items() if v not in ("", None) and k != "epoch"})
    return [{"step": float(s), **by_step[s]} for s in sorted(by_step)]


def series(history: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    points = [(row["step"], row[key]) for row in history if key in row]
    return [p[0] for p in points], [p[1] for p in points]


def final_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """The last value of every metric (the last validation, the last logged training step)."""
    out: dict[str, float] = {}
    for row in history:
        out.update({k: v for k, v in row.items() if k != "step"})
    out["steps"] = history[-1]["step"] if history else 0.0
    return out


def write_metrics(history: list[dict[str, float]], run_dir: Path) -> tuple[Path, Path]:
    keys = sorted({k for row in history for k in row if k != "step"})
    csv_path, json_path = run_dir / "metrics.csv", run_dir / "metrics.json"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["step", *keys])
        writer.writeheader()
        writer.writerows(history)
    json_path.write_text(json.dumps({"final": final_metrics(history), "history": history}, indent=1) + "\n",
                         encoding="utf-8")
    return csv_path, json_path


def plot_run(history: list[dict[str, float]], path: Path, title: str) -> Path:
    """Left: train and validation loss against steps; right: validation MLM and NSP/SOP accuracy."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for key, label in (("train/loss", "train loss"), ("val/loss", "validation loss"), ("val/mlm_loss", "validation MLM loss")):
        x, y = series(history, key)
        if x:
            left.plot(x, y, label=label, marker="o" if len(x) < 30 else None, markersize=3)
    left.set_xlabel("optimizer step")
    left.set_ylabel("loss")
    for key, label in (("val/mlm_acc", "validation MLM accuracy"), ("val/nsp_acc", "validation NSP/SOP accuracy")):
        x, y = series(history, key)
        if x:
            right.plot(x, y, label=label, marker="o", markersize=3)
    right.set_xlabel("optimizer step")
    right.set_ylabel("accuracy")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def gate(history: list[dict[str, float]], cfg: PretrainConfig, dataset: str) -> GateReport:
    """Loss finite and falling; validation MLM accuracy at or above the floor."""
    report = GateReport(stage="pretrain", dataset=dataset)
    _, train = series(history, "train/loss")
    _, val_loss = series(history, "val/loss")
    _, val_acc = series(history, "val/mlm_acc")
    bad = [v for v in train + val_loss[-1:] if not math.isfinite(v)]
    report.add("losses finite", bool(train) and not bad, observed=f"{len(bad)} non-finite of {len(train)} train "
               "+ last validation" if train else "no training loss logged", expected="all finite",
               detail="" if not bad else "lower lr, keep grad_clip on, or check the examples for broken ids")
    if cfg.require_loss_decrease:
        n = max(1, len(train) // 10)
        first, last = (sum(train[:n]) / n, sum(train[-n:]) / n) if len(train) >= 2 else (math.nan, math.nan)
        falling = len(train) >= 2 and last < first
        report.add("training loss falling", falling, observed=f"{last:.4g} (last {n} logged)",
                   expected=f"< {first:.4g} (first {n} logged)",
                   detail="" if falling else ("log more often than the run is long (log_every_n_steps)"
                                              if len(train) < 2 else "the model is not learning: check lr and data"))
    acc = val_acc[-1] if val_acc else math.nan
    report.add("validation MLM accuracy", bool(val_acc) and acc >= cfg.min_val_mlm_accuracy,
               observed=round(acc, 4) if val_acc else "no validation ran", expected=f">= {cfg.min_val_mlm_accuracy}",
               detail="" if val_acc and acc >= cfg.min_val_mlm_accuracy else
               "train longer, or lower min_val_mlm_accuracy for a smoke run")
    if cfg.min_val_mlm_accuracy_over_baseline:
        _, baselines = series(history, "val/mlm_baseline_acc")
        report.add(*_over_baseline(acc if val_acc else math.nan, baselines[-1] if baselines else math.nan,
                                   cfg.min_val_mlm_accuracy_over_baseline))
    report.stats = {"final": final_metrics(history)}
    return report


def _over_baseline(acc: float, baseline: float, ratio: float) -> tuple:
    """The accuracy check against always predicting the validation set's most frequent masked token."""
    name = "validation MLM accuracy over the most-frequent-token baseline"
    if not (math.isfinite(acc) and math.isfinite(baseline)):
        return name, False, "no validation ran" if not math.isfinite(acc) else "no baseline logged", f">= {ratio}x"
    passed = acc >= ratio * baseline
    return (name, passed, f"{acc:.4f} = {acc / max(baseline, 1e-12):.2f}x the baseline {baseline:.4f}",
            f">= {ratio}x the baseline ({ratio * baseline:.4f})",
            "" if passed else "train longer (the model has learned little beyond word frequencies), or lower "
            "min_val_mlm_accuracy_over_baseline for a smoke run")


def model_card(name: str, version: str, location: str, lineage: dict[str, str], cfg: PretrainConfig,
               model_config: dict[str, Any], metrics: dict[str, float], report: GateReport, has_plot: bool) -> str:
    """README.md of an exported model: what it is, where it came from, how well it did, how to load it."""
    import yaml

    rows = [f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items()) if isinstance(v, float) and math.isfinite(v)]
    head = "BertForPreTraining" if model_config.get("arch", "bert") == "bert" else "AlbertForPreTraining"
    lines = [
        "---", "library_name: transformers", "tags: [bert, pretraining, bertplat]", "---", "",
        f"# {name} ({version})", "",
        f"A {f'`{cfg.model}`' if cfg.init_from is None else f'model continued from `{cfg.init_from}`, a'} "
        f"{model_config.get('arch', 'bert').upper()} ({model_config['num_layers']} layers, hidden "
        f"{model_config['hidden_size']}, vocabulary {model_config['vocab_size']:,}) pretrained by bertplat with "
        "masked language modelling" + (" and next-sentence / sentence-order prediction." if model_config.get(
            "sop_or_nsp_head", True) else "."), "",
        "## Lineage", "", *[f"- {k}: `{v}`" for k, v in lineage.items()], "",
        "## Use", "", "```python", *([f"from transformers import AutoTokenizer, {head}",
        f"tokenizer = AutoTokenizer.from_pretrained('{location}')", f"model = {head}.from_pretrained('{location}')"]
        if not model_config.get("pre_ln") else [
        "# pre-LN: kept in bertplat's format (Hugging Face BERT is post-LN and would compute something else)",
        "from transformers import AutoTokenizer", "from bertplat.model import load_checkpoint",
        f"tokenizer = AutoTokenizer.from_pretrained('{location}')", f"model = load_checkpoint('{location}')"]),
        "```", "",
        "## Metrics (last validation and last logged step)", "", "| metric | value |", "|---|---:|", *rows, "",
    ]
    if has_plot:
        lines += ["![loss curve](loss_curve.png)", ""]
    lines += [report.to_markdown(), "", "## Pretraining config", "", "```yaml",
              yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=True).rstrip(), "```", "",
              "## Model config (bertplat ModelConfig)", "", "```json", json.dumps(model_config, indent=2, sort_keys=True),
              "```", ""]
    return "\n".join(lines)
