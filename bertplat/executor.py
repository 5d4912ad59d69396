"""Where the data stages run their parallel tasks: in this process, on a local process pool, or on a
Dask cluster.

Stages hand their tasks to ``run_tasks`` and get the results back in task order. Which executor ran
them never changes a result: tasks are planned from the inputs alone, each writes its own files under
the version's temporary directory, and the stage merges the results in task order. So the executor
and the number of workers are not part of any fingerprint.

A Dask cluster is used when one is named: the ``cluster`` argument (the CLI's ``--cluster``, a flow's
``cluster`` parameter) or ``BERTPLAT_DASK_ADDRESS``, as ``tcp://host:8786``. Its workers must see the
same data directory as this process (one machine, a shared file system, or object storage) and
run the same bertplat. A worker that dies mid-task is replaced by Dask, which reruns its tasks
elsewhere. A rerun task rewrites the same files, so the output is the same.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

ADDRESS_ENV = "BERTPLAT_DASK_ADDRESS"


class ClusterError(RuntimeError):
    """The named Dask cluster cannot be used (not reachable, or dask.distributed not installed)."""


def cluster_address(explicit: str | None = None) -> str | None:
    """The Dask scheduler to use: ``explicit``, else ``$BERTPLAT_DASK_ADDRESS``, else None (local)."""
    address = explicit or os.environ.get(ADDRESS_ENV) or None
    if address is not None and "://" not in address:
        address = f"tcp://{address}"
    return address


class _Initialised:
    """``fn`` after ``initializer(*initargs)`` has run once in the worker process (Dask has no
    per-process initializer, and workers may be replaced during a run)."""

    def __init__(self, fn: Callable, initializer: Callable | None, initargs: tuple):
        self.fn, self.initializer, self.initargs = fn, initializer, initargs

    def __call__(self, *args):
        key = (self.initializer, self.initargs)
        if self.initializer is not None and key not in _INITIALISED:
            self.initializer(*self.initargs)
            _INITIALISED.add(key)
        return self.fn(*args)


_INITIALISED: set = set()


def run_tasks(fn: Callable, calls: Iterable[tuple], *, workers: int, cluster: str | None = None,
              initializer: Callable | None = None, initargs: tuple = (),
              cluster_initargs: tuple | None = None, on_done: Callable[[int, Any], None] | None = None,
              window: int | None = None) -> list:
    """``fn(*call)`` for every call, results in call order; ``on_done(i, result)`` as each finishes.
    ``window``: at most this many calls submitted and unfinished at once (for calls that carry data).

    Local: in this process when ``workers`` is 1, else a spawn-context process pool of ``workers``
    running ``initializer(*initargs)`` in each process. Dask: the cluster's workers, each running
    ``initializer(*cluster_initargs)`` (default ``initargs``) once before its first task; ``workers`` is
    then the cluster's business."""
    address = cluster_address(cluster)
    if address is not None:
        return _run_on_dask(address, fn, calls, initializer, initargs if cluster_initargs is None else cluster_initargs,
                            on_done, window)
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        results = []
        for i, call in enumerate(calls):
            results.append(fn(*call))
            if on_done:
                on_done(i, results[i])
        return results
    ctx = mp.get_context("spawn")  # fork is unsafe under the threads of Prefect and torch
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer, initargs=initargs) as pool:
        return _gather(pool, fn, calls, on_done, window)


def _gather(executor: Any, fn: Callable, calls: Iterable[tuple], on_done: Callable[[int, Any], None] | None,
            window: int | None = None) -> list:
    """Submit the calls to a concurrent.futures-style executor, at most ``window`` unfinished at a time
    (``calls`` may then be a generator that reads its inputs as it goes); results in call order."""
    results: dict[int, Any] = {}
    pending: dict[Any, int] = {}

    def collect(done) -> None:
        for future in done:
            i = pending.pop(future)
            results[i] = future.result()
            if on_done:
                on_done(i, results[i])

    for i, call in enumerate(calls):
        pending[executor.submit(fn, *call)] = i
        if window is not None and len(pending) >= window:
            collect([next(as_completed(pending))])
    collect(as_completed(list(pending)))
    return [results[i] for i in range(len(results))]


def connect(address: str):
    """A ``distributed.Client`` of the scheduler at ``address``; a ClusterError saying what to do when it
    cannot be reached or dask.distributed is missing."""
    try:
        from distributed import Client
    except ImportError as exc:   # pragma: no cover - the cluster extra is installed by setup
        raise ClusterError("a Dask cluster was named but dask.distributed is not installed: "
                           "pip install 'bertplat[cluster]'") from exc
    try:
        return Client(address, timeout="30s", set_as_default=False)
    except OSError as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({exc}); start one with "
                           f"'dask scheduler', or fix the address (--cluster, the config's cluster, or {ADDRESS_ENV})") from exc


def _run_on_dask(address: str, fn: Callable, calls: Iterable[tuple], initializer: Callable | None,
                 initargs: tuple, on_done: Callable[[int, Any], None] | None, window: int | None) -> list:
    client = connect(address)
    with client:
        # Client.get_executor speaks concurrent.futures; retries cover a task whose worker died
        return _gather(client.get_executor(pure=False, retries=2), _Initialised(fn, initializer, initargs), calls,
                       on_done, window)
