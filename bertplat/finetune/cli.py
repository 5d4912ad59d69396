"""``bertplat finetune`` and ``bertplat evaluate`` (a typer sub-app, mounted by ``bertplat/cli.py``).

    bertplat finetune --model data/models/mini/<fp> --task sst2 --name sst2-mini --config configs/finetune/glue.yaml lr=3e-5 epochs=2
    bertplat evaluate --model sst2-mini --task sst2 --split validation
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

finetune_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Fine-tune and evaluate BERT-family models on tasks datasets.")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs, each value read as YAML (``lr=3e-5``, ``epochs=2``, ``model_overrides={unpad: false}``)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"override {pair!r} is not KEY=VALUE (e.g. lr=3e-5)")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 3e-5 (no dot) as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip()] = parsed
    return out


@finetune_app.command("finetune")
def finetune_command(
    model: str = typer.Option(..., "--model", "-m", help="Base model: a directory (HF layout, a bertplat export, an "
                              "already fine-tuned model) or NAME[@FINGERPRINT] of a model under DATA_DIR/models."),
    task: str = typer.Option(..., "--task", "-t", help="Tasks dataset: NAME (newest version) or NAME@FINGERPRINT."),
    name: str = typer.Option(..., "--name", "-n", help="Model name; the export goes to DATA_DIR/models/NAME/FP/ and "
                             "the predictions to the DuckDB view predictions_NAME."),
    config: Path | None = typer.Option(None, "--config", "-c", help="FinetuneConfig YAML (configs/finetune/*.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last checkpoint."),
    overrides: list[str] = typer.Argument(None, help="KEY=VALUE options over the YAML, e.g. lr=3e-5 epochs=2."),
) -> None:
    """Fine-tune a model on a task; export it when the dev metric passes the gate."""
    from bertplat.cli import _context, _fail, _progress, _run
    from bertplat.finetune.config import FinetuneConfig
    from bertplat.finetune.stage import FinetuneInterrupted, run_finetune

    _, lake, catalog = _context()
    extra = parse_overrides(overrides or [])
    cfg = _run(FinetuneConfig.from_yaml, config, **extra) if config else _run(FinetuneConfig.build, {}, extra)
    handle = _run(lake.resolve, "tasks", task)
    try:
        result = _run(run_finetune, model, handle, name, cfg, lake, catalog, _progress(), resume=resume)
    except FinetuneInterrupted as exc:
        _fail(str(exc), code=130)
    typer.echo(result.summary())


@finetune_app.command("evaluate")
def evaluate_command(
    model: str = typer.Option(..., "--model", "-m", help="Fine-tuned model: a directory, or NAME[@FP] under "
                              "DATA_DIR/models."),
    task: str = typer.Option(..., "--task", "-t", help="Tasks dataset: NAME or NAME@FINGERPRINT."),
    split: str = typer.Option("validation", "--split", "-s", help="The split to score (an unlabelled one gets "
                              "predictions only)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Predictions dataset name (default "
                                    "<model>_<task>_<split>)."),
) -> None:
    """Score a fine-tuned model on a task split without training; write its predictions."""
    from bertplat.cli import _context, _progress, _run
    from bertplat.finetune.evaluate import run_evaluate

    _, lake, catalog = _context()
    handle = _run(lake.resolve, "tasks", task)
    result = _run(run_evaluate, model, handle, split, lake, catalog, _progress(), name=name)
    typer.echo(result.summary())
