"""Progress reporting that knows nothing of where it is shown.

Stages take a :class:`Progress` and call ``progress.task(desc, total, unit)``, which returns a
tracker with ``advance(n)``. The CLI passes :class:`TqdmProgress` (a progress bar); the flows pass
:class:`LogProgress`, whose periodic log lines land in the Prefect run logs through the ``bertplat``
logger.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Tracker(Protocol):
    def advance(self, n: float = 1) -> None: ...


class Progress(Protocol):
    def task(self, desc: str, total: float | None = None, unit: str = "it"):  # -> ContextManager[Tracker]
        ...


class _NullTracker:
    def advance(self, n: float = 1) -> None:
        pass


class NullProgress:
    """Reports nothing (library use, tests)."""

    @contextmanager
    def task(self, desc: str, total: float | None = None, unit: str = "it") -> Iterator[Tracker]:
        yield _NullTracker()


class TqdmProgress:
    """A tqdm progress bar on stderr (the CLI)."""

    def __init__(self, disable: bool | None = None):
        self.disable = (not sys.stderr.isatty()) if disable is None else disable

    @contextmanager
    def task(self, desc: str, total: float | None = None, unit: str = "it") -> Iterator[Tracker]:
        from tqdm import tqdm

        scale = unit in ("B", "bytes")
        bar = tqdm(total=total, desc=desc, unit="B" if scale else unit, unit_scale=scale,
                   unit_divisor=1024 if scale else 1000, disable=self.disable, dynamic_ncols=True,
                   file=sys.stderr)

        class _Bar:
            def advance(self, n: float = 1) -> None:
                bar.update(n)

        try:
            yield _Bar()
        finally:
            bar.close()


class LogProgress:
    """Logs '<desc>: 42% (420/1000 it, 12.3 it/s)' at most every ``every_s`` seconds, plus the end."""

    def __init__(self, logger: logging.Logger | None = None, every_s: float = 10.0):
        self.logger = logger or logging.getLogger("bertplat.progress")
        self.every_s = every_s

    @contextmanager
    def task(self, desc: str, total: float | None = None, unit: str = "it") -> Iterator[Tracker]:
        logger, every = self.logger, self.every_s
        start = time.monotonic()
        state = {"done": 0.0, "last": start}

        def line() -> str:
            elapsed = max(time.monotonic() - start, 1e-9)
            done = state["done"]
            rate = _human(done / elapsed, unit)
            if total:
                return f"{desc}: {100 * done / total:.0f}% ({_human(done, unit)} of {_human(total, unit)}, {rate}/s)"
            return f"{desc}: {_human(done, unit)} ({rate}/s)"

        class _Log:
            def advance(self, n: float = 1) -> None:
                state["done"] += n
                now = time.monotonic()
                if now - state["last"] >= every:
                    state["last"] = now
                    logger.info(line())

        logger.info(f"{desc}: started" + (f" ({_human(total, unit)})" if total else ""))
        yield _Log()
        logger.info(line() + f", done in {time.monotonic() - start:.1f}s")


def _human(value: float, unit: str) -> str:
    if unit in ("B", "bytes"):
        for suffix in ("B", "KB", "MB", "GB", "TB"):
            if abs(value) < 1024 or suffix == "TB":
                return f"{value:.1f} {suffix}" if suffix != "B" else f"{value:.0f} B"
            value /= 1024
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"
