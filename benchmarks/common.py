"""Helpers shared by the benchmarks: the shared data path, peak memory of a process tree, machine info."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BERTPLAT_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_shared_data() -> Path:
    if not (SHARED_DATA / "MANIFEST.tsv").is_file():
        raise SystemExit(f"this benchmark reads the shared data folder, not found at {SHARED_DATA}")
    return SHARED_DATA


class PeakRSS:
    """Samples the resident memory of this process plus all its children every ``interval`` s;
    ``peak`` is the largest sum seen (bytes)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def mb(n: float) -> float:
    return n / 1e6
