"""``bertplat tasks``: import downstream task data from a task YAML (mounted by ``bertplat/cli.py``).

    bertplat tasks import configs/tasks/sst2.yaml --root ../shared/data/tasks
    bertplat tasks import my_task.yaml --limit 1000 --tokenizer data/lake/vocab/base/<fp> --max-length 128
"""

from __future__ import annotations

from pathlib import Path

import typer

tasks_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Downstream task data: import GLUE, CoNLL, SQuAD, Chinese NER or any CSV/TSV/JSONL/"
                             "Parquet task described by a small YAML (see configs/tasks/).")


@tasks_app.callback()
def tasks_main() -> None:
    """Downstream task data (a group, so ``import`` keeps its name even while it is the only command)."""


@tasks_app.command("import")
def import_tasks(
    specs: list[Path] = typer.Argument(..., help="Task YAML files (configs/tasks/*.yaml or your own)."),
    root: str | None = typer.Option(None, "--root", "-r", help="Directory the YAML's relative paths resolve "
                                     "against (default: the YAML's root, else the working directory)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Dataset name (default: the YAML's name); views "
                                    "task_<name> and rejects_<name>. Only with a single YAML."),
    limit: int | None = typer.Option(None, help="Read at most this many records per source split (quick runs)."),
    max_reject_ratio: float | None = typer.Option(None, help="Fail when more than this share of records is "
                                                  "rejected (default 0.01)."),
    tokenizer: str | None = typer.Option(None, help="Tokenizer directory (a vocab dataset or model directory): "
                                         "report the share of examples --max-length truncates."),
    max_length: int | None = typer.Option(None, help="The model's maximum sequence length (default 128)."),
) -> None:
    """Import task data as validated tasks datasets (one per YAML), registered in the catalog."""
    from bertplat.cli import _context, _fail, _progress, _run
    from bertplat.tasks.spec import TasksOptions, TaskSpec
    from bertplat.tasks.stage import run_tasks

    if name is not None and len(specs) > 1:
        _fail("--name names one dataset; give a single YAML with it", code=2)
    _, lake, catalog = _context()
    options = _run(TasksOptions.build, {}, dict(limit=limit, max_reject_ratio=max_reject_ratio,
                                                tokenizer=tokenizer, max_length=max_length))
    for path in specs:
        spec = _run(TaskSpec.from_yaml, path)
        result = _run(run_tasks, spec, lake, catalog, _progress(), root=root, options=options, name=name)
        typer.echo(result.summary())
        reasons = result.stats.get("reject_reasons") or {}
        if reasons:
            typer.echo("  rejects by reason: " + ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())))
        trunc = result.stats.get("truncation")
        if trunc:
            typer.echo(f"  truncated at {trunc['max_length']} tokens: " + ", ".join(
                f"{s} {v['share']:.1%}" for s, v in trunc["per_split"].items()))
