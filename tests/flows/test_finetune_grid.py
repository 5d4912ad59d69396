"""The finetune flow's grid against a real Prefect server: every cell a task, the table of dev scores, the
winner by the dev metric; on threads, and on a real Dask cluster (a scheduler and two worker processes on
loopback) through prefect-dask's task runner, which must give the same cells the same scores."""

from __future__ import annotations

import asyncio
import json

import pytest

from bertplat.finetune.config import FinetuneConfig
from flows.common import context
from flows.finetune import FinetuneParams, finetune_flow, grid_cells
from tests.finetune.conftest import import_sentiment, tiny_base  # noqa: F401  (tiny_base: a fixture)

pytestmark = pytest.mark.slow

OPTIONS = FinetuneConfig(epochs=8, lr=5e-3, weight_decay=0.0, warmup_ratio=0.0, max_length=32, batch_size=16,
                         log_every_n_steps=1, require_beats_baseline=False)


def grid_params(base, name: str, **extra) -> FinetuneParams:
    return FinetuneParams(model=str(base), task="toy", name=name, options=OPTIONS, grid_lr=[5e-3, 1e-5],
                          register=False, **extra)


def grid_table(key: str) -> list[dict]:
    from prefect.artifacts import Artifact

    artifact = Artifact.get(key)
    assert artifact is not None, key
    return json.loads(artifact.data)


def cell_metrics(table: list[dict]) -> dict[str, float]:
    return {row["cell"]: row["dev accuracy"] for row in table}


def test_the_grid_runs_every_cell_and_the_dev_metric_picks_the_winner(data_dir, tiny_base, tmp_path):  # noqa: F811
    _, lake, catalog = context()
    import_sentiment(tmp_path / "toy", lake, catalog)
    params = grid_params(tiny_base, "grid")
    cells = [name for name, _ in grid_cells(params)]
    assert cells == ["grid-lr0p005-e8-s42", "grid-lr1e-05-e8-s42"]
    winner = finetune_flow(params)

    table = grid_table("finetune-grid-grid")
    assert [row["cell"] for row in table] == cells and [row["lr"] for row in table] == [5e-3, 1e-5]
    best = max(table, key=lambda row: row["dev accuracy"])
    assert [row["winner"] for row in table].count(True) == 1 and best["winner"]
    assert winner.endswith(f"/models/{best['cell']}/" + winner.rsplit("/", 1)[1])
    metrics = json.loads((data_dir / "models" / best["cell"]).joinpath(winner.rsplit("/", 1)[1],
                                                                        "metrics.json").read_text())
    assert metrics["splits"]["validation"]["accuracy"] == pytest.approx(best["dev accuracy"], abs=1e-5)
    # the two learning rates end apart, so the choice is the dev metric's and not the table's order
    assert table[0]["dev accuracy"] != table[1]["dev accuracy"], table


def test_the_grid_on_a_dask_cluster_gives_the_same_cells_the_same_scores(data_dir, tiny_base, tmp_path,  # noqa: F811
                                                                         monkeypatch):
    pytest.importorskip("prefect_dask", reason="prefect-dask is not installed (make setup installs it)")
    import torch
    from prefect.settings import PREFECT_API_URL

    from tests.scale.test_dask import Cluster

    _, lake, catalog = context()
    import_sentiment(tmp_path / "toy", lake, catalog)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as on the workers (OMP_NUM_THREADS=1): the same sums in the same order
    try:
        local = finetune_flow(grid_params(tiny_base, "here"))
    finally:
        torch.set_num_threads(threads)
    # the workers report their task runs to this test's Prefect server and read this data directory
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    cluster = Cluster(tmp_path)
    try:
        cluster.start(workers=2)
        remote = finetune_flow(grid_params(tiny_base, "there", cluster=cluster.address))
        logs = "".join((tmp_path / f"w{i}.log").read_text(errors="replace") for i in range(2))
    finally:
        cluster.stop()
    here, there = grid_table("finetune-here-grid"), grid_table("finetune-there-grid")
    # the same configs (the cells' names differ by the grid's name) give the same dev scores
    assert [(r["lr"], r["dev accuracy"], r["winner"]) for r in here] == \
        [(r["lr"], r["dev accuracy"], r["winner"]) for r in there]
    assert local.split("/models/")[1].split("/")[0] == "here-lr0p005-e8-s42"
    assert remote.split("/models/")[1].split("/")[0] == "there-lr0p005-e8-s42"
    # each cell ran on a Dask worker, as a Prefect task run reported from there
    for row in there:
        assert f"finetune-{row['cell']}" in logs, row["cell"]
    asyncio.run(_assert_task_runs_completed([row["cell"] for row in there]))


async def _assert_task_runs_completed(cells: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    async with get_client() as client:
        runs = await client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(any_=[f"finetune-{c}" for c in cells])))
    assert sorted(r.name for r in runs) == sorted(f"finetune-{c}" for c in cells)
    assert all(r.state is not None and r.state.is_completed() for r in runs)


def test_an_unreachable_scheduler_stops_the_grid_before_any_cell(data_dir, tiny_base, tmp_path):  # noqa: F811
    import socket

    from bertplat.executor import ClusterError

    _, lake, catalog = context()
    import_sentiment(tmp_path / "toy", lake, catalog)
    with socket.socket() as s:   # a free port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        finetune_flow(grid_params(tiny_base, "nowhere", cluster=f"127.0.0.1:{port}"))
    assert not (data_dir / "models" / "nowhere-lr0p005-e8-s42").exists()
