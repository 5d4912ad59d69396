"""The pipeline operated as a person does from the UI, against `bertplat serve` (real server, pool, deployments
from prefect.yaml, process worker): REST-triggered runs, caching, a failing gate, bad form parameters, a
half-written version, a schedule, a clean stop.

Folds in the former tests/flows/test_worker.py: deployments run on a process worker started in the clone (the
pull step enters the worker's directory; no absolute path is baked in at deploy).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from tests.e2e.conftest import REPO, descendants, tiny

pytestmark = [pytest.mark.server, pytest.mark.slow]


def overview(served, run: dict) -> list[dict]:
    arts = {a["key"]: a for a in served.artifacts(run["id"]) if a.get("key")}
    table = arts.get("pipeline-tiny")
    assert table is not None, f"no overview artifact among {sorted(arts)}"
    data = table["data"]
    return json.loads(data) if isinstance(data, str) else data


@pytest.fixture(scope="module")
def first_run(served):
    start = time.monotonic()
    run = served.run("pipeline/pipeline", tiny(served))
    served.assert_completed(run)
    return run, time.monotonic() - start


def test_deployments_from_prefect_yaml_with_no_absolute_path_and_the_pipeline_completes(served, first_run):
    run, _ = first_run
    pull = served.deployment("ingest/ingest")["pull_steps"]
    assert pull == [{"flows.common.enter_worker_directory": {}}]
    assert str(REPO) not in json.dumps(served.deployment("pipeline/pipeline")), "deploy baked in the clone's path"
    rows = overview(served, run)
    assert [r["stage"] for r in rows] == ["ingest", "vocab", "examples", "pretrain", "tasks", "finetune", "evaluate",
                                          "register"]
    assert all(r["status"] == "ran" for r in rows[:7]), rows
    assert all(r["fingerprint"] for r in rows[:7]), rows
    subflows = {f["name"] for f in served.subflow_runs(run)}
    assert {"ingest-tiny", "vocab-tiny", "examples-tiny", "pretrain-tiny-tiny", "tasks-tiny_demo_topics",
            "finetune-tiny_demo_topics"} <= subflows, subflows
    # every stage's own artifacts, and the stages' progress lines in the flow-run logs
    keys = {a["key"] for a in served.client.post("/artifacts/filter", json={}).json() if a.get("key")}
    assert {"corpus-tiny", "vocab-tiny", "examples-tiny", "model-tiny-tiny", "tasks-tiny-demo-topics",
            "finetune-tiny-demo-topics", "pipeline-tiny", "pipeline-tiny-overview"} <= keys, keys
    models = list((served.data_dir / "models" / "tiny_demo_topics").glob("*/_manifest.json"))
    assert len(models) == 1 and (models[0].parent / "metrics.json").is_file()
    assert json.loads((served.data_dir / "models" / "tiny-tiny").glob("*/_manifest.json").__next__()
                      .read_text())["metrics"]["steps"] == 24


def test_unchanged_rerun_is_all_cached_and_much_faster(served, first_run):
    first, first_s = first_run
    start = time.monotonic()
    run = served.run("pipeline/pipeline", tiny(served))
    second_s = time.monotonic() - start
    served.assert_completed(run)
    rows = overview(served, run)
    assert [r["status"] for r in rows[:7]] == ["cached"] * 7, rows
    # the tiny run's wall time is mostly the worker starting a process and Prefect's subflow bookkeeping (about
    # 1 s a stage, cached or not); the training stages are what caching saves
    def training_s(stages: list[dict]) -> float:
        return sum(r["seconds"] for r in stages if r["stage"] in ("pretrain", "finetune"))

    assert training_s(rows) < 0.5 * training_s(overview(served, first)), (rows, overview(served, first))
    assert second_s < first_s, (second_s, first_s)


def test_changed_examples_config_redoes_examples_and_downstream_only(served, first_run):
    run = served.run("pipeline/pipeline", tiny(served, examples={"seed": 7}))
    served.assert_completed(run)
    status = {r["stage"]: r["status"] for r in overview(served, run)}
    assert status["ingest"] == status["vocab"] == status["tasks"] == "cached", status
    assert status["examples"] == status["pretrain"] == status["finetune"] == "ran", status


def test_half_written_version_is_ignored_and_rebuilt(served, first_run):
    """A writer killed mid-write leaves a .tmp- directory; the version it was writing is not there."""
    versions = [p.parent for p in (served.data_dir / "lake" / "vocab" / "tiny").glob("*/_manifest.json")]
    assert len(versions) == 1
    version = versions[0]
    half = version.parent / f".tmp-{version.name}-deadhost-999999-abcdef"
    shutil.copytree(version, half)
    (half / "_manifest.json").unlink()
    shutil.rmtree(version)
    run = served.run("pipeline/pipeline", tiny(served))
    served.assert_completed(run)
    status = {r["stage"]: r["status"] for r in overview(served, run)}
    assert status["ingest"] == "cached" and status["vocab"] == "ran", status
    assert (version / "_manifest.json").is_file()


def test_gate_failure_fails_the_run_with_its_report_and_registers_nothing(served, first_run):
    before = sorted(p.name for p in (served.data_dir / "models").rglob("*") if p.is_dir())
    run = served.run("pipeline/pipeline", tiny(served, vocab={"min_whole_word_share": 0.999}))
    assert run["state_type"] == "FAILED", run["state"]
    keys = {a["key"]: a for a in served.artifacts(run["id"]) if a.get("key")}
    assert "pipeline-tiny-gate-failed" in keys, sorted(keys)
    assert "whole-word share | **FAIL**" in json.dumps(keys["pipeline-tiny-gate-failed"]["data"])
    status = {r["stage"]: r["status"] for r in overview(served, run)}
    assert status["vocab"] == "failed" and status["pretrain"] == status["register"] == "skipped", status
    after = sorted(p.name for p in (served.data_dir / "models").rglob("*") if p.is_dir())
    assert after == before


@pytest.mark.parametrize("config, says", [
    ({"pretrain": {"max_steps": -5}}, "max_steps"),
    ({"preset": "no-such-preset"}, "unknown pipeline preset 'no-such-preset'"),
    ({"finetune": {"model_overrides": {"vocab_size": 5000}}}, "model_overrides must not set vocab_size"),
])
def test_bad_form_parameters_are_rejected_before_any_work(served, config, says):
    created = served.trigger("pipeline/pipeline", {"config": {"preset": "tiny", "corpus": [str(served.corpus)],
                                                              **config}})
    if created.status_code != 201:  # the server's schema check (the UI's form shows it)
        assert created.status_code in (409, 422), created.text
        return
    run = served.wait(created.json()["id"], timeout=300)
    assert run["state_type"] == "FAILED", run["state"]
    assert says in run["state"]["message"] + served.logs(run), run["state"]["message"]
    tasks = served.client.post("/task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [run["id"]]}}})
    assert tasks.json() == [], "a stage started"


def test_an_activated_cron_schedule_creates_scheduled_runs(served):
    deployment = served.deployment("ingest/ingest-drop")
    (schedule,) = deployment["schedules"]
    assert schedule["active"] is False and schedule["schedule"]["cron"] == "0 2 * * *"
    patched = served.client.patch(f"/deployments/{deployment['id']}/schedules/{schedule['id']}",
                                  json={"active": True})
    assert patched.status_code == 204, patched.text
    try:
        deadline = time.monotonic() + 120
        runs: list = []
        while time.monotonic() < deadline and not runs:
            runs = served.client.post("/flow_runs/filter", json={"flow_runs": {
                "deployment_id": {"any_": [deployment["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}).json()
            time.sleep(2.0)
        assert runs, "the scheduler made no run within 120 s"
        assert all(r["expected_start_time"][11:16] == "02:00" for r in runs), [r["expected_start_time"] for r in runs]
    finally:
        served.client.patch(f"/deployments/{deployment['id']}/schedules/{schedule['id']}", json={"active": False})


def worker_pid(served) -> int:
    for pid in descendants(served.proc.pid):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmd and b"start" in cmd and os.getpgid(pid) == pid:
            return pid
    pytest.fail(f"no worker under bertplat serve:\n{served.tail()}")


def test_drill_kill_the_worker_during_pretraining_then_rerun_resumes_to_the_same_model(served, first_run):
    """The worker (and the flow run it started) is killed after pretraining's first checkpoint; `bertplat serve`
    restarts the worker; re-running the deployment resumes from the checkpoint, and the exported model equals
    an uninterrupted run's (same examples, config and seed, CPU)."""
    import torch
    from safetensors.torch import load_file

    from bertplat.catalog import Catalog
    from bertplat.lake import Lake
    from bertplat.pipeline import PipelineConfig
    from bertplat.pretrain import run_pretrain

    # long enough (a few hundred steps run at ~30 steps/s here) that the kill lands mid-training
    drill = {"max_steps": 400, "checkpoint_every_n_steps": 40, "val_every_n_steps": 200, "seed": 3}
    params = tiny(served, pretrain=drill)
    runs = served.data_dir / "runs"
    earlier = set(runs.glob("tiny-tiny-*"))  # the other tests' runs have step checkpoints of their own
    created = served.trigger("pipeline/pipeline", params)
    assert created.status_code == 201, created.text
    killed = created.json()["id"]

    def drill_checkpoints() -> list:
        return [c for d in set(runs.glob("tiny-tiny-*")) - earlier for c in d.glob("checkpoints/*step=*")]

    deadline = time.monotonic() + 420
    while not drill_checkpoints():
        assert time.monotonic() < deadline, f"no pretraining checkpoint after 420s:\n{served.tail()}"
        assert served.client.get(f"/flow_runs/{killed}").json()["state_type"] not in ("COMPLETED", "FAILED")
        time.sleep(0.5)
    os.killpg(worker_pid(served), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while served.log.read_text().count("worker started") < 2:
        assert time.monotonic() < deadline, f"the worker was not restarted:\n{served.tail()}"
        time.sleep(1.0)
    run = served.run("pipeline/pipeline", params)
    served.assert_completed(run)
    assert "resumed at step" in served.logs(run, subflows=True), "pretraining did not resume from its checkpoint"
    pretrain_row = next(r for r in overview(served, run) if r["stage"] == "pretrain")
    resumed = served.data_dir / "models" / "tiny-tiny" / pretrain_row["fingerprint"]

    # the uninterrupted run: same examples, same config, another name
    cfg = PipelineConfig.from_preset("tiny", corpus=[str(served.corpus)], pretrain=drill)
    lake = Lake(str(served.data_dir))
    examples = lake.resolve("examples", next(r for r in overview(served, run) if r["stage"] == "examples")["version"])
    reference = run_pretrain(examples, "drill-reference", cfg.pretrain, lake,
                             Catalog(served.data_dir / "catalog.duckdb", lake))
    a, b = load_file(resumed / "model.safetensors"), load_file(reference.model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"the resumed model differs from the uninterrupted one in {different[:5]}"
