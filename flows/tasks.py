"""The tasks flow: a task YAML to a validated tasks dataset, with its report in the Prefect UI."""

from __future__ import annotations

from prefect import flow, task
from pydantic import BaseModel, Field

from bertplat.lake import DatasetHandle
from bertplat.plots import text_histogram
from bertplat.tasks.spec import TasksOptions, TaskSpec
from bertplat.tasks.stage import TasksResult, run_tasks
from flows.common import (
    artifact_key,
    context,
    gate_report_on_failure,
    png_markdown,
    publish_table,
    retry_on_io_error,
    run_progress,
)


class TasksParams(BaseModel):
    """Which task to import; the Prefect UI shows this as the run form."""

    spec: str = Field(description="Task YAML file (e.g. configs/tasks/sst2.yaml), relative to the working directory.")
    root: str | None = Field(None, description="Directory the YAML's relative paths resolve against "
                                               "(default: the YAML's root, else the working directory).")
    name: str | None = Field(None, description="Dataset name (default: the YAML's); DuckDB view task_<name>.")
    options: TasksOptions = Field(default_factory=TasksOptions, description="Import options (limit, reject ratio, "
                                                                            "tokenizer for the truncation share).")


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io_error,
      task_run_name="tasks-{params.spec}")
def import_task(params: TasksParams) -> TasksResult:
    _, lake, catalog = context()
    spec = TaskSpec.from_yaml(params.spec)
    with gate_report_on_failure("tasks", params.name or spec.name):
        return run_tasks(spec, lake, catalog, run_progress(), root=params.root, options=params.options,
                         name=params.name)


def publish_tasks_summary(result: TasksResult) -> None:
    from prefect.artifacts import create_markdown_artifact

    name, s = result.dataset.name, result.stats
    lines = [f"## task `{name}`", "", result.summary().split("\n")[0], "",
             f"- version: `{result.dataset.uri}`",
             f"- query: `SELECT * FROM task_{name}` and `SELECT * FROM rejects_{name}`",
             f"- labels: {result.labels}", "", "### characters per example", "",
             text_histogram(s["char_bins"], s["char_histogram"])]
    plot = result.dataset.path / "_report" / "length_chars.png"
    if plot.exists():
        lines += ["", png_markdown(plot, "characters per example")]
    lines += ["", "### whitespace words per example", "", text_histogram(s["word_bins"], s["word_histogram"])]
    if "truncation" in s:
        lines += ["", f"### truncated at {s['truncation']['max_length']} tokens", ""]
        lines += [f"- {split}: {v['share']:.2%} of {v['examples']:,}" for split, v in s["truncation"]["per_split"].items()]
    lines += ["", result.report.to_markdown()]
    create_markdown_artifact("\n".join(lines), key=artifact_key("tasks", name), description=f"task {name}")
    publish_table([{"split": split, **counts} for split, counts in s["label_counts"].items()
                   if isinstance(counts, dict)], key=artifact_key("tasks", name, "labels"),
                  description=f"task {name}: label counts per split")


@flow(name="tasks", description="Import downstream task data (GLUE, CoNLL, SQuAD, Chinese NER, any CSV/JSONL) "
                                "from a task YAML.")
def tasks_flow(params: TasksParams) -> DatasetHandle:
    result = import_task(params)
    publish_tasks_summary(result)
    return result.dataset
