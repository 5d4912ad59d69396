"""The pretrain flow: examples to a gated, exported model, with the loss curve and metrics in the Prefect UI.

The task retries transient I/O failures with ``resume`` on, so a retry continues from the last checkpoint
instead of starting over; a failed gate publishes its report and fails the run. Training progress goes
to the run log every ~10 s through the bertplat Progress protocol.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from pydantic import BaseModel, Field

from bertplat.pretrain import PretrainConfig, PretrainResult, run_pretrain
from bertplat.pretrain.report import read_history
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


class PretrainParams(BaseModel):
    """What to pretrain on and how; the Prefect UI shows this as the run form."""

    examples: str = Field(description="Examples dataset: NAME (newest version) or NAME@FINGERPRINT.")
    name: str = Field(description="Model name; the export goes to DATA_DIR/models/NAME/FINGERPRINT/.")
    options: PretrainConfig = Field(default_factory=PretrainConfig, description="Pretraining options.")
    resume: bool = Field(default=True, description="Continue this run from its last checkpoint when it has one "
                         "(a retry or a re-run after a stop picks up where it left off); a changed config under "
                         "the same name starts a new run.")
    register: bool = Field(default=True, description="Register the exported model in the model registry (lineage "
                           "to the raw files, file hashes, model card); a bertplat-format (pre-LN) export too.")


@task(retries=1, retry_delay_seconds=[30], retry_condition_fn=retry_on_io_error,
      task_run_name="pretrain-{params.name}")
def pretrain_model(params: PretrainParams) -> PretrainResult:
    _, lake, catalog = context()
    with gate_report_on_failure("model", params.name):
        examples = resolve_input(lake, "examples", params.examples, "examples", "examples")
        return run_pretrain(examples, params.name, params.options, lake, catalog,
                            progress=run_progress(), resume=params.resume, refuse_other_runs=False)


def validation_rows(result: PretrainResult) -> list[dict]:
    """One row per validation: step and every validation metric (plus the training loss at that step)."""
    keep = ("val/", "train/loss", "perf/tokens_seen")
    return [{k: round(v, 5) for k, v in row.items() if k == "step" or k.startswith(keep)}
            for row in read_history(Path(result.run_dir) / "logs" / "csv") if "val/mlm_acc" in row]


def publish_pretrain_summary(result: PretrainResult) -> None:
    from prefect.artifacts import create_markdown_artifact

    m = result.metrics
    lines = [f"## model `{result.name}`", "", result.summary().split("\n")[0], "",
             f"- export: `{result.model_dir}`", f"- run directory: `{result.run_dir}`",
             f"- examples: `{result.examples.ref()}`, vocab: `{result.vocab.ref()}`",
             f"- last throughput {m.get('perf/tokens_per_s', 0):,.0f} tokens/s"
             + (f", MFU {m['perf/mfu']:.1%}" if "perf/mfu" in m else "")]
    plot = Path(result.run_dir) / "loss_curve.png"
    if plot.exists():
        lines += ["", png_markdown(plot, "loss curve")]
    lines += ["", result.report.to_markdown()]
    create_markdown_artifact("\n".join(lines), key=artifact_key("model", result.name),
                             description=f"pretrained model {result.name}")
    publish_table(validation_rows(result), key=artifact_key("model", result.name, "metrics"),
                  description=f"model {result.name}: validation metrics by step")


@flow(name="pretrain", description="Pretrain a BERT-family model on an examples dataset; export it if the gate passes.")
def pretrain_flow(params: PretrainParams) -> str:
    result = pretrain_model(params)
    get_run_logger().info(result.summary())  # the run's logs say what was made, and whether it resumed
    publish_pretrain_summary(result)
    if params.register:
        from flows.finetune import publish_card_link, register_export

        publish_card_link(register_export(str(result.model_dir)))
    return str(result.model_dir)


if __name__ == "__main__":
    import sys

    pretrain_flow(PretrainParams(examples=sys.argv[1], name=sys.argv[2]))
