"""``bertplat models``: the model registry (mounted by ``bertplat/cli.py``)."""

from __future__ import annotations

import typer

models_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="The model registry: list, show, promote, compare, verify and trace models.")


@models_app.callback()
def models_main() -> None:
    """The model registry (a group of commands)."""
