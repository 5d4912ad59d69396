"""`bertplat tasks import` (the typer sub-app) and the tasks flow under a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flows  # noqa: F401  (sets Prefect's defaults before Prefect is imported)
from bertplat.tasks.cli import tasks_app


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def task_yaml(tmp_path: Path, rows: list[str]) -> Path:
    write(tmp_path / "d" / "train.tsv", "sentence\tlabel\n" + "\n".join(rows) + "\n")
    return write(tmp_path / "t.yaml", "name: clitask\ntask_type: classification\nformat: tsv\n"
                                      "splits: {train: train.tsv}\ncolumns: {text: sentence, label: label}\n"
                                      "labels: [a, b]\n")


@pytest.fixture()
def data_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(path))
    return path


def test_cli_imports_then_reuses(tmp_path, data_dir):
    spec = task_yaml(tmp_path, ["one\ta", "two\tb"])
    runner = CliRunner()
    first = runner.invoke(tasks_app, ["import", str(spec), "--root", str(tmp_path / "d")])
    assert first.exit_code == 0, first.output
    assert "task clitask@" in first.output and "train 2" in first.output and "imported" in first.output
    again = runner.invoke(tasks_app, ["import", str(spec), "--root", str(tmp_path / "d"), "--name", "other"])
    assert again.exit_code == 0 and "task other@" in again.output


def test_cli_errors_are_messages_not_tracebacks(tmp_path, data_dir):
    spec = task_yaml(tmp_path, ["one\ta", "two\tc"])
    runner = CliRunner()
    failed = runner.invoke(tasks_app, ["import", str(spec), "--root", str(tmp_path / "d")])
    assert failed.exit_code == 1 and "reject ratio" in failed.output and "Traceback" not in failed.output
    bad = write(tmp_path / "bad.yaml", "name: x\ntask_type: classification\nformat: tsv\nsplits: {train: a.tsv}\n")
    out = runner.invoke(tasks_app, ["import", str(bad)])
    assert out.exit_code == 2 and "needs a non-empty labels list" in out.output
    missing = runner.invoke(tasks_app, ["import", str(spec), "--root", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


@pytest.mark.server
@pytest.mark.slow
def test_tasks_flow_writes_the_dataset_and_publishes_its_report(tmp_path, data_dir):
    from prefect.artifacts import Artifact
    from prefect.testing.utilities import prefect_test_harness

    from flows.tasks import TasksParams, tasks_flow

    rows = [json.dumps({"q": "Where?", "c": f"In Rome {i}.", "a": [{"text": "Rome", "answer_start": 3}], "i": i})
            for i in range(10)]
    write(tmp_path / "qa.jsonl", "\n".join(rows) + "\n")
    spec = write(tmp_path / "qa.yaml", "name: flowqa\ntask_type: extractive_qa\nformat: jsonl\n"
                                       "splits: {validation: qa.jsonl}\n"
                                       "columns: {id: i, question: q, context: c, answers: a}\n")
    with prefect_test_harness(server_startup_timeout=180):
        handle = tasks_flow(TasksParams(spec=str(spec), root=str(tmp_path)))
        assert handle.kind == "tasks" and handle.path.is_relative_to(data_dir)
        summary = Artifact.get("tasks-flowqa")
        assert summary is not None and "10 examples" in summary.data and "data:image/png;base64," in summary.data


def test_import_keeps_its_name_when_it_is_the_only_command():
    """typer runs a one-command app's command without its name; the group callback keeps
    `bertplat tasks import ...` working, both standalone and once mounted."""
    import typer

    parent = typer.Typer()
    parent.add_typer(tasks_app, name="tasks")
    for app, args in ((tasks_app, ["import", "--help"]), (parent, ["tasks", "import", "--help"])):
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 0 and "--max-reject-ratio" in out.output
