"""The model card (``README.md`` of a version), generated from the registry: what the model is, its
intended use and limits, the metrics table, the lineage as a short tree, the training config, and
Hugging Face front matter (``model-index`` with the evaluation results, ``datasets``, ``license``), as
the Hub's model card spec describes it."""

from __future__ import annotations

import json
from typing import Any

import yaml

from bertplat.registry.lineage import Edge, Node, lineage_tree
from bertplat.registry.refs import VersionRow

# Hub pipeline tags by bertplat task type (model-index `task.type`).
PIPELINE_TAGS = {
    "classification": "text-classification", "pair_classification": "text-classification",
    "regression": "text-classification", "token_classification": "token-classification",
    "extractive_qa": "question-answering", None: "fill-mask",
}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def front_matter(v: VersionRow, evaluations: list[dict[str, Any]], edges: list[Edge], license: str) -> dict:
    tag = PIPELINE_TAGS.get(v.task_type, "feature-extraction" if v.origin == "import" else "fill-mask")
    datasets = sorted({e.parent.name for e in edges if e.parent.kind in ("tasks", "corpus")})
    results: dict[tuple[str, str, str], list[dict]] = {}
    for ev in evaluations:
        key = (ev["task_name"], ev["task_fingerprint"], ev["split"])
        results.setdefault(key, []).append({"type": ev["metric"], "value": round(float(ev["value"]), 6),
                                            "name": f"{ev['split']} {ev['metric']}"})
    index = [{"name": v.name, "results": [
        {"task": {"type": tag}, "dataset": {"name": task, "type": task, "split": split, "revision": fp},
         "metrics": metrics} for (task, fp, split), metrics in sorted(results.items())]}] if results else []
    meta: dict[str, Any] = {"license": license, "library_name": "transformers", "pipeline_tag": tag,
                            "tags": ["bertplat", "bert", v.origin]}
    if datasets:
        meta["datasets"] = datasets
    if index:
        meta["model-index"] = index
    return meta


def model_card(v: VersionRow, evaluations: list[dict[str, Any]], edges: list[Edge], license: str = "other") -> str:
    """The whole README.md of version ``v``."""
    meta = yaml.safe_dump(front_matter(v, evaluations, edges, license), sort_keys=False, allow_unicode=True)
    prov = _json(v.provenance) or {}
    config = _json(v.config) or {}
    what = {"finetune": f"a {v.task_type or 'task'} model fine-tuned by bertplat",
            "pretrain": "a BERT-family encoder pretrained by bertplat (masked language modelling)",
            "import": f"a model imported into the bertplat registry from `{v.source_path}`"}.get(v.origin, v.origin)
    rows = [f"| {e['task_name']}@{e['task_fingerprint']} | {e['split']} | {e['metric']} | {float(e['value']):.4f} |"
            for e in evaluations]
    metrics = "\n".join(["| task dataset | split | metric | value |", "|---|---|---|---|", *rows]) if rows else \
        "No evaluations recorded yet: this version cannot be promoted to an alias until it has some."
    tree = "\n".join(lineage_tree(Node(kind="model", name=v.name, ref=v.version_id), edges))
    code = prov.get("git_commit") or "unknown"
    dirty = " (working tree had uncommitted changes)" if prov.get("git_dirty") else ""
    libs = ", ".join(f"{k} {prov[k]}" for k in ("bertplat", "torch", "tokenizers", "transformers") if prov.get(k))
    cfg = yaml.safe_dump(config, sort_keys=True).rstrip() if config else "(none recorded)"
    return f"""---
{meta.rstrip()}
---

# {v.name} v{v.number}

`{v.label}` (version id `{v.version_id}`) is {what}. It is registered in the bertplat model registry;
refer to it as `{v.name}@v{v.number}`, `{v.name}@{v.version_id}` or through an alias
(`bertplat models show {v.name}@v{v.number}`).

## Intended use and limits

{_use(v)}

The numbers below were measured on the task dataset versions named beside them and say nothing about
other data. Check the lineage for what the model has seen; a model trained on a small corpus (such as
the demo's) is for testing the pipeline, not for use.

## Evaluation

{metrics}

## Lineage

```
{tree}
```

Code: git commit `{code}`{dirty}; {libs}.

## Training config

```yaml
{cfg}
```

## Use

```python
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained("{v.path}")
tokenizer = AutoTokenizer.from_pretrained("{v.path}")
```

Every file's sha256 is in the registry (`registry_files`); `bertplat models verify` re-hashes them.
"""


def _use(v: VersionRow) -> str:
    if v.origin == "finetune":
        return (f"Predicting the labels of its {v.task_type} task (`bertplat evaluate --model {v.name}@v{v.number}`), "
                "on text like its task dataset's.")
    if v.origin == "pretrain":
        return "A base for fine-tuning (`bertplat finetune --model " + f"{v.name}@v{v.number}`) or masked-token filling."
    return "As its source describes; bertplat can embed with it, fine-tune it or evaluate it."
