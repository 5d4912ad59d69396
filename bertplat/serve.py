"""``bertplat serve``: a local Prefect server, the work pool, every deployment and a worker, in one command."""

from __future__ import annotations


def serve_command() -> None:
    """Start a Prefect server on 127.0.0.1, the bertplat work pool, every deployment and a worker."""
    raise SystemExit("bertplat serve: not built yet")
