"""The finetune flow: a base model and a tasks dataset to a gated fine-tuned model, with its metrics, learning
curve, confusion matrix (classification) or per-entity table (NER) and the most confident errors in the UI.

An optional grid (lr x epochs x seeds) runs every cell as a parallel task and picks the winner by the dev
metric only; the test split never chooses. The cells run one at a time in this process, or with ``cluster``
(or ``$BERTPLAT_DASK_ADDRESS``) in parallel, as Prefect tasks on a Dask cluster through prefect-dask's task
runner. They run in a ``finetune-grid`` subflow, since a flow's task runner is fixed when it starts and the
choice is made in the run's form.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from bertplat.catalog import sql_name
from bertplat.executor import ClusterError, cluster_address, connect
from bertplat.finetune.config import FinetuneConfig
from bertplat.finetune.stage import FinetuneResult, run_finetune
from flows.common import (
    artifact_key,
    context,
    gate_report_on_failure,
    png_markdown,
    publish_table,
    resolve_input,
    retry_on_io_error,
    run_progress,
)


class FinetuneParams(BaseModel):
    """What to fine-tune on what; the Prefect UI shows this as the run form."""

    model: str = Field(description="Base model directory (HF layout or a bertplat export).")
    task: str = Field(description="Tasks dataset: NAME (newest version) or NAME@FINGERPRINT.")
    name: str = Field(description="Model name; export to DATA_DIR/models/NAME/FINGERPRINT/, view predictions_NAME.")
    options: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Fine-tuning options.")
    resume: bool = Field(default=True, description="Continue this run from its last checkpoint when it has one.")
    grid_lr: list[float] = Field(default_factory=list, description="Grid: learning rates (empty: options.lr only).")
    grid_epochs: list[int] = Field(default_factory=list, description="Grid: epochs (empty: options.epochs only).")
    grid_seeds: list[int] = Field(default_factory=list, description="Grid: seeds (empty: options.seed only).")
    register: bool = Field(default=True, description="Register the exported model (the grid's winner) in the model "
                           "registry, with its evaluations, lineage and model card.")
    cluster: str | None = Field(default=None, description="Dask scheduler (tcp://host:8786) that runs the grid's "
                                "cells, one Prefect task each, through prefect-dask's DaskTaskRunner; empty: "
                                "$BERTPLAT_DASK_ADDRESS, else one at a time in this flow's process. Its workers need this "
                                "data directory, PREFECT_API_URL and bertplat (see the README's Scaling out).")


@task(retries=1, retry_delay_seconds=[30], retry_condition_fn=retry_on_io_error,
      task_run_name="finetune-{name}")
def finetune_model(model: str, task_ref: str, name: str, options: FinetuneConfig, resume: bool) -> FinetuneResult:
    _, lake, catalog = context()
    with gate_report_on_failure("model", name):
        handle = resolve_input(lake, "tasks", task_ref, "task", "tasks")
        return run_finetune(model, handle, name, options, lake, catalog, progress=run_progress(), resume=resume)


@task(task_run_name="register-model")
def register_export(model_dir: str) -> dict:
    """Register an export in the model registry; returns the version's name, number, id and card path."""
    from bertplat.registry.store import register_model

    _, lake, catalog = context()
    version = register_model(model_dir, lake, catalog)
    get_run_logger().info(version.summary())
    return {"ref": version.ref, "version_id": version.version_id, "card": str(version.path / "README.md")}


def publish_card_link(version: dict) -> None:
    """A link artifact to the registered version's model card."""
    from prefect.artifacts import create_link_artifact

    name = version["ref"].split("@")[0]
    create_link_artifact(link=Path(version["card"]).resolve().as_uri(), link_text=f"model card of {version['ref']}",
                         key=artifact_key("model-card", name),
                         description=f"{version['ref']} ({version['version_id']}) in the model registry")


def confusion_rows(result: FinetuneResult, labels: list[str]) -> list[dict]:
    _, lake, catalog = context()
    _, rows = catalog.fetch(f"SELECT gold, predicted, count(*) FROM {sql_name('predictions_' + result.name)} "
                            "WHERE split = ? AND gold IS NOT NULL GROUP BY ALL", [result.dev_split])
    counts = {(g, p): n for g, p, n in rows}
    return [{"gold \\ predicted": g, **{p: counts.get((g, p), 0) for p in labels}} for g in labels]


def _only(tags: list[str], entity: str) -> list[str]:
    """The tags of one entity type; every other tag becomes O."""
    return [x if x.endswith("-" + entity) else "O" for x in tags]


def entity_rows(result: FinetuneResult, scheme: str) -> list[dict]:
    from bertplat.metrics.entities import entity_scores

    _, lake, catalog = context()
    _, rows = catalog.fetch(f"SELECT gold_tags, pred_tags FROM {sql_name('predictions_' + result.name)} WHERE split = ? "
                            "AND gold_tags IS NOT NULL", [result.dev_split])
    gold, pred = [list(g) for g, _ in rows], [list(p) for _, p in rows]
    types = sorted({t.split("-", 1)[1] for s in gold for t in s if "-" in t})
    out = []
    for t in types:
        s = entity_scores([_only(g, t) for g in gold], [_only(p, t) for p in pred], scheme)
        out.append({"entity": t, "precision": round(s["precision"], 4), "recall": round(s["recall"], 4),
                    "f1": round(s["f1"], 4)})
    return out


def confident_errors(result: FinetuneResult) -> list[dict]:
    _, _, catalog = context()
    cols, rows = catalog.fetch(f"SELECT id, text, gold, predicted, confidence, score FROM {sql_name('predictions_' + result.name)} "
                               "WHERE split = ? AND correct = false ORDER BY coalesce(confidence, score) DESC "
                               "NULLS LAST LIMIT 10", [result.dev_split])
    return [{c: (v[:200] if isinstance(v, str) else v) for c, v in zip(cols, r)} for r in rows]


def publish_finetune_summary(result: FinetuneResult) -> None:
    import json

    from prefect.artifacts import create_markdown_artifact

    manifest = json.loads((Path(result.model_dir) / "_manifest.json").read_text(encoding="utf-8"))
    head = manifest.get("head", {})
    lines = [f"## fine-tuned model `{result.name}`", "", result.summary().split("\n")[0], "",
             f"- export: `{result.model_dir}`", f"- run directory: `{result.run_dir}`", f"- task: `{result.task.ref()}`"]
    plot = Path(result.model_dir) / "learning_curve.png"
    if plot.exists():
        lines += ["", png_markdown(plot, "learning curve")]
    lines += ["", result.report.to_markdown()]
    create_markdown_artifact("\n".join(lines), key=artifact_key("finetune", result.name),
                             description=f"fine-tuned model {result.name}")
    publish_table([{"split": s, **{k: round(v, 5) for k, v in m.items()}} for s, m in result.metrics.items()],
                  key=artifact_key("finetune", result.name, "metrics"), description=f"{result.name}: metrics by split")
    if result.predictions is None:
        return
    if head.get("task") == "sequence_classification" and head.get("num_labels", 1) > 1:
        publish_table(confusion_rows(result, list(head.get("labels") or [])),
                      key=artifact_key("finetune", result.name, "confusion"),
                      description=f"{result.name}: confusion matrix on {result.dev_split}")
    if head.get("task") == "token_classification":
        from bertplat.lake import read_manifest

        scheme = read_manifest(result.task).get("tagging_scheme") or "iob2"
        publish_table(entity_rows(result, scheme), key=artifact_key("finetune", result.name, "entities"),
                      description=f"{result.name}: per-entity scores on {result.dev_split}")
    publish_table(confident_errors(result), key=artifact_key("finetune", result.name, "errors"),
                  description=f"{result.name}: the ten most confident errors on {result.dev_split}")


def grid_cells(params: FinetuneParams) -> list[tuple[str, FinetuneConfig]]:
    """(cell name, config) of every grid point; a single cell when no grid is given."""
    o = params.options
    lrs, epochs, seeds = params.grid_lr or [o.lr], params.grid_epochs or [o.epochs], params.grid_seeds or [o.seed]
    if len(lrs) * len(epochs) * len(seeds) == 1:
        return [(params.name, o.model_copy(update={"lr": lrs[0], "epochs": epochs[0], "seed": seeds[0]}))]
    # a model name is a dataset name (letters, digits, '_' and '-'): 0.005 -> 0p005, 2e-05 stays
    return [(f"{params.name}-lr{lr:g}-e{e}-s{s}".replace("+", "").replace(".", "p")[:64],
             o.model_copy(update={"lr": lr, "epochs": e, "seed": s}))
            for lr, e, s in itertools.product(lrs, epochs, seeds)]


# Here the cells run one at a time: cells in threads of one process would share its global RNG (the head's
# initialisation, dropout, the batch order) and its CPU threads, so a cell's result would depend on the timing
# of the others. On a Dask cluster each cell is a task of its own worker process, and they run in parallel.
@flow(name="finetune-grid", description="The grid's cells as tasks: one at a time here, in parallel on a Dask cluster.",
      task_runner=ThreadPoolTaskRunner(max_workers=1))
def run_grid(model: str, task_ref: str, cells: list[tuple[str, FinetuneConfig]], resume: bool) -> list:
    """Every cell's FinetuneResult, or its exception for a cell that failed."""
    futures = [finetune_model.submit(model, task_ref, name, cfg, resume) for name, cfg in cells]
    return [f.result(raise_on_failure=False) for f in futures]


def _dask_runner(address: str):
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:   # the cluster extra installs it
        raise ClusterError(f"a grid on the Dask cluster {address} needs prefect-dask: pip install "
                           f"'bertplat[cluster]'") from exc
    with connect(address):   # an unreachable scheduler is a clear error before any cell starts
        pass
    return DaskTaskRunner(address=address)


@flow(name="finetune", description="Fine-tune a BERT-family model on a tasks dataset (optionally a small grid); "
                                   "export it if the gate passes.")
def finetune_flow(params: FinetuneParams) -> str:
    cells = grid_cells(params)
    if len(cells) == 1:
        pairs = [(finetune_model(params.model, params.task, cells[0][0], cells[0][1], params.resume), cells[0][1])]
    else:  # a cell whose gate fails is a row of the table, not the end of the grid
        address = cluster_address(params.cluster)
        run = run_grid if address is None else run_grid.with_options(task_runner=_dask_runner(address))
        outcomes = run(params.model, params.task, cells, params.resume)
        pairs = [(r, c) for r, (_, c) in zip(outcomes, cells) if isinstance(r, FinetuneResult)]
        if not pairs:
            raise RuntimeError(f"every cell of the {params.name} grid failed; see the task runs' logs")
    best = max((r for r, _ in pairs), key=lambda r: r.dev_metric)  # the dev metric only: never the test split
    if len(cells) > 1:
        publish_table([{"cell": r.name, "lr": c.lr, "epochs": c.epochs, "seed": c.seed,
                        f"dev {r.metric}": round(r.dev_metric, 5), "winner": r is best} for r, c in pairs],
                      key=artifact_key("finetune", params.name, "grid"),
                      description=f"{params.name}: the grid's dev scores ({len(pairs)} of {len(cells)} cells "
                                  f"passed their gate); winner by dev {best.metric}")
    publish_finetune_summary(best)
    if params.register:
        publish_card_link(register_export(str(best.model_dir)))
    return str(best.model_dir)
