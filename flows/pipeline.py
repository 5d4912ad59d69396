"""The pipeline flow: raw text to a registered, fine-tuned model, every stage a subflow.

ingest -> vocab -> examples -> pretrain -> tasks -> finetune -> evaluate -> register (-> embed), from one
``PipelineConfig`` (bertplat/pipeline.py): a preset of configs/pipelines/ with any field overridden in the run
form, validated as a whole, the stages' agreement included, before any stage starts.

- Caching is the lake's content addressing: each stage's version (or model export) is named by the fingerprint
  of its inputs and config, and a stage whose version exists returns it without work. The pipeline tells
  which ones did (``cached``) by whether the version existed before the stage ran; it uses no Prefect result
  store. A changed examples config makes new examples and so a new pretraining fingerprint, and so on
  downstream; upstream stays cached.
- Gates: a failed gate fails its stage's subflow, which publishes the validation report; the pipeline
  publishes it again on its own run (key ``pipeline-<name>-gate-failed``) with the overview, and fails.
  Nothing downstream runs, so nothing is written or registered.
- Retries and resume: the stage tasks retry transient I/O errors; pretraining and fine-tuning run with
  ``resume`` on, so a retried or re-triggered run continues from the last checkpoint of the same run directory.
- The overview artifact (key ``pipeline-<name>``): every stage, ran or cached, its fingerprint, time and
  headline figure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from bertplat.lake import DatasetHandle, Lake, read_manifest
from bertplat.pipeline import PipelineConfig
from bertplat.validation import GateError
from flows.common import artifact_key, context, publish_gate_report, retry_on_io_error
from flows.examples import ExamplesParams, examples_flow
from flows.finetune import FinetuneParams, finetune_flow
from flows.ingest import IngestParams, ingest_flow
from flows.pretrain import PretrainParams, pretrain_flow
from flows.tasks import TasksParams, tasks_flow
from flows.vocab import VocabParams, vocab_flow


class StageRow(BaseModel):
    """One line of the overview: a stage, what it did, the version it made or found."""

    stage: str
    status: str  # ran, cached, failed, skipped
    fingerprint: str = ""
    seconds: float = 0.0
    headline: str = ""
    ref: str = ""


class PipelineResult(BaseModel):
    name: str
    stages: list[StageRow]
    model_dir: str
    finetuned_dir: str
    registered: str
    elapsed_s: float

    def summary(self) -> str:
        ran = [r.stage for r in self.stages if r.status == "ran"]
        cached = [r.stage for r in self.stages if r.status == "cached"]
        return (f"pipeline {self.name}: {len(ran)} stages ran ({', '.join(ran) or 'none'}), {len(cached)} cached "
                f"({', '.join(cached) or 'none'}) in {self.elapsed_s:.0f}s; fine-tuned model {self.finetuned_dir}")


# ---- what existed before a stage ran: the cache check ------------------------------------------------
def dataset_fingerprints(lake: Lake, kind: str, name: str) -> set[str]:
    return {h.fingerprint for h in lake.versions(kind, name)}


def model_fingerprints(lake: Lake, name: str) -> set[str]:
    from bertplat.registry.store import models_root

    root = models_root(lake) / name
    return {p.parent.name for p in root.glob("*/_manifest.json")} if root.is_dir() else set()


def _counts(handle: DatasetHandle) -> dict[str, Any]:
    return read_manifest(handle).get("counts", {})


def corpus_headline(h: DatasetHandle) -> str:
    c = _counts(h)
    return f"{c.get('documents', 0):,} documents, {c.get('sentences', 0):,} sentences"


def vocab_headline(h: DatasetHandle) -> str:
    c = _counts(h)
    return f"{c.get('tokens', 0):,} tokens ({c.get('learned_tokens', 0):,} learned)"


def examples_headline(h: DatasetHandle) -> str:
    c = _counts(h)
    train, val = c.get("train", {}), c.get("validation", {})
    n = lambda d: d.get("instances", d.get("examples", 0)) if isinstance(d, dict) else 0  # noqa: E731
    return f"{n(train):,} train / {n(val):,} validation examples, {c.get('tokens', 0):,} tokens"


def tasks_headline(h: DatasetHandle) -> str:
    m = read_manifest(h)
    c = m.get("counts", {})
    splits = {k: v for k, v in c.items() if isinstance(v, int)} or {
        k: v.get("examples", v.get("rows")) for k, v in c.items() if isinstance(v, dict)}
    labels = m.get("labels") or []
    shown = ", ".join(f"{k} {v:,}" for k, v in splits.items() if isinstance(v, int))
    return f"{shown or 'imported'}; {len(labels)} labels"


def pretrain_headline(model_dir: Path) -> str:
    metrics = json.loads((model_dir / "_manifest.json").read_text())["metrics"]
    acc, base = metrics.get("val/mlm_acc"), metrics.get("val/mlm_baseline_acc")
    out = f"{metrics.get('steps', 0):,.0f} steps"
    if acc is not None:
        out += f", validation MLM accuracy {acc:.3f}" + (f" (baseline {base:.3f})" if base is not None else "")
    return out


def finetune_metrics(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "metrics.json").read_text())


def finetune_headline(model_dir: Path) -> str:
    m = finetune_metrics(model_dir)
    dev = m["splits"].get(m["dev_split"], {})
    return f"dev {m['metric']} {dev.get(m['metric'], float('nan')):.3f} (majority baseline {m['baseline']:.3f})"


# ---- the steps that are not another flow -------------------------------------------------------------
@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io_error, task_run_name="evaluate-{name}")
def evaluate_model(finetuned_dir: str, name: str) -> dict[str, Any]:
    """The held-out test split's figures of the fine-tuned model (scored by the finetune stage, which wrote them
    to metrics.json and its predictions to predictions_NAME), against the majority baseline."""
    m = finetune_metrics(Path(finetuned_dir))
    split = "test" if "test" in m["splits"] else m["dev_split"]
    figures = m["splits"][split]
    return {"split": split, "metric": m["metric"], "value": figures.get(m["metric"]), "baseline": m["baseline"],
            "figures": figures}


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io_error, task_run_name="register-{name}")
def register_model(finetuned_dir: str, name: str, promote_to: str | None) -> str:
    """The fine-tuned export's registry version (the finetune subflow registered it; registering again finds
    it), then, when asked, its promotion to ``promote_to`` through the alias's gate (the promote flow)."""
    from bertplat.registry import register_model as register

    _, lake, catalog = context()
    version = register(finetuned_dir, lake, catalog)
    ref = f"{version.name}@v{version.number}"
    if promote_to:
        from flows.promote import PromoteParams, promote_flow

        promote_flow.with_options(flow_run_name=f"promote-{name}-{promote_to}")(
            PromoteParams(model=ref, alias=promote_to))
    return ref


# ---- the flow ----------------------------------------------------------------------------------------
class _Stages:
    """Runs stages in order, recording each one's row; a failure records the row and publishes the overview."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg, self.rows, self.start = cfg, [], time.monotonic()
        self.logger = get_run_logger()

    def run(self, stage: str, call: Callable[[], Any], existed: Callable[[], set[str]],
            fingerprint_of: Callable[[Any], str], headline: Callable[[Any], str], ref_of: Callable[[Any], str]) -> Any:
        before = existed()
        start = time.monotonic()
        self.logger.info("pipeline %s: stage %s starts", self.cfg.name, stage)
        try:
            out = call()
        except BaseException as exc:
            self.rows.append(StageRow(stage=stage, status="failed", seconds=round(time.monotonic() - start, 1),
                                      headline=str(exc).split("\n")[0][:200]))
            self.skip_rest(stage)
            self.publish()
            if isinstance(exc, GateError):
                publish_gate_report(exc.report, artifact_key("pipeline", self.cfg.name, "gate-failed"))
            raise
        fp = fingerprint_of(out)
        row = StageRow(stage=stage, status="cached" if fp in before else "ran", fingerprint=fp,
                       seconds=round(time.monotonic() - start, 1), headline=headline(out), ref=ref_of(out))
        self.rows.append(row)
        self.logger.info("pipeline %s: stage %s %s (%s) in %.1fs: %s", self.cfg.name, stage, row.status, fp,
                         row.seconds, row.headline)
        return out

    def add(self, row: StageRow) -> None:
        self.rows.append(row)
        self.logger.info("pipeline %s: stage %s %s in %.1fs: %s", self.cfg.name, row.stage, row.status,
                         row.seconds, row.headline)

    def skip_rest(self, failed: str) -> None:
        stages = [s for s in ("ingest", "vocab", "examples", "pretrain", "tasks", "finetune", "evaluate", "register")
                  + (("embed",) if self.cfg.embed is not None else ())]
        done = {r.stage for r in self.rows}
        self.rows += [StageRow(stage=s, status="skipped", headline=f"not run: {failed} failed")
                      for s in stages if s not in done]

    def publish(self) -> None:
        publish_overview(self.cfg, self.rows, time.monotonic() - self.start)


def publish_overview(cfg: PipelineConfig, rows: list[StageRow], elapsed_s: float) -> None:
    table = [{"stage": r.stage, "status": r.status, "fingerprint": r.fingerprint, "seconds": r.seconds,
              "headline": r.headline, "version": r.ref} for r in rows]
    ran = sum(r.status == "ran" for r in rows)
    cached = sum(r.status == "cached" for r in rows)
    failed = [r.stage for r in rows if r.status == "failed"]
    verdict = f"failed at {failed[0]}" if failed else "completed"
    description = (f"pipeline {cfg.name} (preset {cfg.preset}) {verdict}: {ran} stages ran, {cached} cached, "
                   f"{elapsed_s:.0f}s")
    create_table_artifact(table, key=artifact_key("pipeline", cfg.name), description=description)
    lines = [f"## pipeline `{cfg.name}` (preset `{cfg.preset}`)", "", description, "",
             "| stage | status | fingerprint | seconds | headline |", "|---|---|---|---|---|"]
    lines += [f"| {r.stage} | **{r.status}** | `{r.fingerprint}` | {r.seconds:.1f} | {r.headline} |" for r in rows]
    create_markdown_artifact("\n".join(lines), key=artifact_key("pipeline", cfg.name, "overview"),
                             description=description)


@flow(name="pipeline", description="Raw text to a registered fine-tuned model: ingest, vocab, examples, pretrain, "
      "tasks, finetune, evaluate, register (and optionally embed), each cached by its fingerprint.")
def pipeline_flow(config: PipelineConfig) -> PipelineResult:
    """``config``: a preset of configs/pipelines/ (``preset``) and any fields over it; checked whole before any
    stage starts."""
    cfg = config
    _, lake, _ = context()
    stages = _Stages(cfg)
    name, model_name, ft_name = cfg.name, cfg.model_name, cfg.finetuned_name
    stages.logger.info("pipeline %s (preset %s): config checked; stages ingest -> vocab -> examples -> pretrain -> "
                       "tasks -> finetune -> evaluate -> register%s", name, cfg.preset,
                       " -> embed" if cfg.embed is not None else "")

    def ds(h: DatasetHandle) -> str:  # NAME@FINGERPRINT, as the stage flows' forms take it
        return f"{h.name}@{h.fingerprint}"

    corpus = stages.run("ingest", lambda: ingest_flow.with_options(flow_run_name=f"ingest-{name}")(
        IngestParams(paths=cfg.corpus, name=name, options=cfg.ingest)),
        lambda: dataset_fingerprints(lake, "corpus", name), lambda h: h.fingerprint, corpus_headline, ds)
    vocab = stages.run("vocab", lambda: vocab_flow.with_options(flow_run_name=f"vocab-{name}")(
        VocabParams(corpus=ds(corpus), name=name, options=cfg.vocab)),
        lambda: dataset_fingerprints(lake, "vocab", name), lambda h: h.fingerprint, vocab_headline, ds)
    examples = stages.run("examples", lambda: examples_flow.with_options(flow_run_name=f"examples-{name}")(
        ExamplesParams(corpus=ds(corpus), vocab=ds(vocab), name=name, options=cfg.examples)),
        lambda: dataset_fingerprints(lake, "examples", name), lambda h: h.fingerprint, examples_headline, ds)
    model_dir = stages.run("pretrain", lambda: pretrain_flow.with_options(flow_run_name=f"pretrain-{model_name}")(
        PretrainParams(examples=ds(examples), name=model_name, options=cfg.pretrain, resume=True)),
        lambda: model_fingerprints(lake, model_name), lambda d: Path(d).name, lambda d: pretrain_headline(Path(d)),
        lambda d: f"{model_name}@{Path(d).name}")
    task_ds = stages.run("tasks", lambda: tasks_flow.with_options(flow_run_name=f"tasks-{ft_name}")(
        TasksParams(spec=cfg.task, name=ft_name, options=cfg.tasks)),
        lambda: dataset_fingerprints(lake, "tasks", ft_name), lambda h: h.fingerprint, tasks_headline, ds)
    finetuned = stages.run("finetune", lambda: finetune_flow.with_options(flow_run_name=f"finetune-{ft_name}")(
        FinetuneParams(model=str(model_dir), task=ds(task_ds), name=ft_name, options=cfg.finetune, resume=True)),
        lambda: model_fingerprints(lake, ft_name), lambda d: Path(d).name, lambda d: finetune_headline(Path(d)),
        lambda d: f"{ft_name}@{Path(d).name}")
    fine_cached = stages.rows[-1].status == "cached"

    start = time.monotonic()
    evaluation = evaluate_model(str(finetuned), ft_name)
    stages.add(StageRow(stage="evaluate", status="cached" if fine_cached else "ran", fingerprint=Path(finetuned).name,
                        seconds=round(time.monotonic() - start, 1), ref=f"{ft_name}@{Path(finetuned).name}",
                        headline=f"{evaluation['split']} {evaluation['metric']} {evaluation['value'] or 0.0:.3f} "
                                 f"(majority baseline {evaluation['baseline']:.3f})"))

    start = time.monotonic()
    registered = register_model(str(finetuned), ft_name, cfg.promote_to)
    stages.add(StageRow(stage="register", status="cached" if fine_cached and not cfg.promote_to else "ran",
                        fingerprint=Path(finetuned).name, seconds=round(time.monotonic() - start, 1), ref=registered,
                        headline=f"registered {registered}" + (f", promoted to {cfg.promote_to}" if cfg.promote_to
                                                               else "")))

    if cfg.embed is not None:
        from flows.embed import EmbedParams, embed_flow

        stages.run("embed", lambda: embed_flow.with_options(flow_run_name=f"embed-{ft_name}")(
            EmbedParams(model=str(finetuned), source_kind="corpus", source=ds(corpus), name=ft_name,
                        options=cfg.embed)),
            lambda: dataset_fingerprints(lake, "embeddings", ft_name), lambda h: h.fingerprint,
            lambda h: f"{_counts(h).get('rows', '?')} vectors", ds)

    stages.publish()
    result = PipelineResult(name=name, stages=stages.rows, model_dir=str(model_dir), finetuned_dir=str(finetuned),
                            registered=registered, elapsed_s=round(time.monotonic() - stages.start, 1))
    stages.logger.info(result.summary())
    return result


def main() -> None:
    import sys

    preset = sys.argv[1] if len(sys.argv) > 1 else "demo"
    result = pipeline_flow(PipelineConfig.from_preset(preset))
    for row in result.stages:
        print(f"  {row.stage:9s} {row.status:7s} {row.fingerprint:17s} {row.seconds:7.1f}s  {row.headline}")
    print(result.summary())


if __name__ == "__main__":
    main()
