"""Regression: forked children of a flow-run process (DataLoader workers) exit cleanly.

Prefect 3.8 leaves its log and event services' exit hooks in forked children, where they fail an
assertion, so every forked child exited with code 1 and torch raised "DataLoader worker exited
unexpectedly" when a loader shut down. ``flows`` drops those hooks in the child.
"""

from __future__ import annotations

import logging
import multiprocessing as mp

import pytest
import torch
from prefect import flow, get_run_logger
from torch.utils.data import DataLoader, IterableDataset

pytestmark = pytest.mark.server


def _child() -> None:
    logging.getLogger("bertplat.test").info("hello from a forked child")


class _Numbers(IterableDataset):
    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        yield from (torch.tensor([info.id, i]) for i in range(20))


@flow
def forking_flow() -> tuple[int, int]:
    get_run_logger().info("the API log service is running in this process now")
    child = mp.get_context("fork").Process(target=_child)
    child.start()
    child.join()
    # an exhausted loader shuts its workers down; a worker that exits with 1 raises here
    batches = list(DataLoader(_Numbers(), batch_size=None, num_workers=2))
    return child.exitcode, len(batches)


def test_forked_children_of_a_flow_run_exit_with_code_0():
    exitcode, batches = forking_flow()
    assert exitcode == 0
    assert batches == 40
