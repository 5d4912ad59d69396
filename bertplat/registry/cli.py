"""``bertplat models``: the model registry (mounted by ``bertplat/cli.py``).

A model reference is ``NAME`` (newest version), ``NAME@vN``, ``NAME@ALIAS`` or ``NAME@VERSION_ID``.
"""

from __future__ import annotations

from pathlib import Path

import typer

models_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="The model registry: list, show, promote, compare, verify and trace models.")

REF_HELP = "A model: NAME (newest version), NAME@vN, NAME@ALIAS or NAME@VERSION_ID."


@models_app.callback()
def models_main() -> None:
    """The model registry (a group of commands)."""


def _ctx():
    from bertplat.cli import _context

    return _context()


def _run(fn, *args, **kwargs):
    from bertplat.cli import _run as run_cli

    return run_cli(fn, *args, **kwargs)  # ModelNotFound and PromotionRefused are ValueErrors: one clear line


@models_app.command("list")
def list_command(name: str | None = typer.Argument(None, help="Only this model's versions.")) -> None:
    """List every registered model version, newest first, with its aliases and headline metrics."""
    from bertplat.registry.report import models_table

    _, _, catalog = _ctx()
    typer.echo(_run(models_table, catalog, name))


@models_app.command("show")
def show_command(ref: str = typer.Argument(..., help=REF_HELP)) -> None:
    """Show one version: where it is, its aliases, metrics, lineage, code version and file hashes."""
    from bertplat.registry.report import show_text

    _, _, catalog = _ctx()
    typer.echo(_run(show_text, catalog, ref))


@models_app.command("register")
def register_command(
    model: str = typer.Argument(..., help="An exported model directory (DATA_DIR/models/NAME/FP), or a Hugging Face "
                                "/ sentence-transformers directory or package: path to import."),
    name: str | None = typer.Option(None, "--name", "-n", help="Name to import an outside directory under "
                                    "(an export keeps its own name)."),
    license: str = typer.Option("other", help="License for the card's front matter (an import keeps its own)."),
) -> None:
    """Register a model directory: hash its files, record its lineage and evaluations, write its card."""
    from bertplat.cli import _progress
    from bertplat.registry.store import register_model

    _, lake, catalog = _ctx()
    typer.echo(_run(register_model, model, lake, catalog, name, license=license, progress=_progress()).summary())


@models_app.command("promote")
def promote_command(
    ref: str = typer.Argument(..., help="The candidate: NAME@vN, NAME@VERSION_ID (or NAME@ALIAS / NAME)."),
    alias: str = typer.Argument(..., help="The alias to point at it: staging, production or any name."),
    policy: Path | None = typer.Option(None, "--policy", help="Policy YAML (default configs/registry/ALIAS.yaml)."),
    force: bool = typer.Option(False, "--force", help="Promote even though the gate fails (never over changed "
                               "files); needs --reason."),
    reason: str | None = typer.Option(None, "--reason", help="Why (required with --force; kept in the alias history)."),
) -> None:
    """Move an alias to a version through the alias's gate; the report and any forced reason go to its history."""
    from bertplat.registry.promotion import promote

    settings, lake, catalog = _ctx()
    result = _run(promote, ref, alias, catalog, policy, force=force, reason=reason,
                  reports_dir=lake.data_dir / "reports")
    typer.echo(result.report.to_markdown())
    typer.echo(result.summary())


@models_app.command("compare")
def compare_command(a: str = typer.Argument(..., help="Version A. " + REF_HELP),
                    b: str = typer.Argument(..., help="Version B. " + REF_HELP)) -> None:
    """Metrics of two versions side by side with B - A (same task versions only), then their config differences."""
    from bertplat.registry.report import compare_text

    _, _, catalog = _ctx()
    typer.echo(_run(compare_text, catalog, a, b))


@models_app.command("verify")
def verify_command() -> None:
    """Re-hash every file of every registered version; exit 1 and list the drift when any differs."""
    from bertplat.cli import _progress
    from bertplat.registry.report import verify

    _, _, catalog = _ctx()
    result = _run(verify, catalog, progress=_progress())
    typer.echo(result.summary())
    if not result.ok:
        raise typer.Exit(1)


@models_app.command("lineage")
def lineage_command(ref: str = typer.Argument(..., help=REF_HELP)) -> None:
    """The version's lineage as a tree: run, base model, examples, vocab, corpus, task, raw files with sha256."""
    from bertplat.registry.report import lineage_text

    _, _, catalog = _ctx()
    typer.echo(_run(lineage_text, catalog, ref))


@models_app.command("history")
def history_command(name: str = typer.Argument(..., help="Model name.")) -> None:
    """Every alias change of a model: who moved which alias to which version when, and why when forced."""
    from bertplat.cli import print_table
    from bertplat.registry.promotion import alias_history

    _, _, catalog = _ctx()
    rows = _run(alias_history, catalog, name)
    print_table(["alias", "version", "previous", "action", "at", "by", "reason"],
                [tuple(r.values()) for r in rows], max_rows=1000)
