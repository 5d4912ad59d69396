"""The learning curve and the model card of a fine-tuned model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertplat.finetune.config import FinetuneConfig
from bertplat.plots import _pyplot
from bertplat.pretrain.report import series


def plot_learning_curve(history: list[dict[str, float]], metric: str, path: Path, title: str) -> Path | None:
    """Training loss and the dev metric by optimizer step (two y axes)."""
    xs, loss = series(history, "train/loss")
    mx, mv = series(history, f"dev/{metric}")
    if not xs and not mx:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.plot(xs, loss, color="#3b75af", linewidth=1, label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss")
    if mx:
        ax2 = ax.twinx()
        ax2.plot(mx, mv, "o-", color="#d9541e", label=f"dev {metric}")
        ax2.set_ylabel(f"dev {metric}")
    ax.set_title(title, fontsize=9)
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def model_card(name: str, fp: str, model_dir: Path, summary: dict[str, Any], parents: list[dict[str, Any]],
               cfg: FinetuneConfig) -> str:
    rows = [f"| {split} | " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()) + " |"
            for split, m in summary["splits"].items()]
    lineage = "\n".join(f"- {p.get('kind')}: {p.get('name')}@{p.get('fingerprint')}" + (
        f" ({p['path']})" if p.get("path") else "") for p in parents)
    return f"""# {name} ({fp})

A {summary['task_type']} model fine-tuned by bertplat on `{summary['task']}`.

- dev split `{summary['dev_split']}`: {summary['metric']} **{summary['dev_metric']:.4f}** (majority baseline {summary['baseline']:.4f})
- {summary['steps']} optimizer steps; lr {cfg.lr}, {cfg.epochs} epochs, batch {cfg.batch_size} x {cfg.accumulate_grad_batches}, seed {cfg.seed}, max_length {cfg.max_length}

| split | metrics |
|---|---|
{chr(10).join(rows)}

## Lineage

{lineage}

## Use

```python
from transformers import AutoModel, AutoTokenizer  # or the task's BertFor... class
model = AutoModel.from_pretrained("{model_dir}")
```

Or `bertplat evaluate --model {model_dir} --task <task> --split validation`.
"""
