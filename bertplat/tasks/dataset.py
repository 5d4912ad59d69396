"""Reading a tasks dataset back: what the task is (type, labels, scheme, metrics) and a split's rows.

What the later stages (features, fine-tuning, evaluation) read, so none of them parses the manifest
or the Parquet layout itself.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from bertplat.lake import DatasetHandle, read_manifest


class TaskInfo(BaseModel):
    """A tasks dataset's description, from its manifest."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The dataset name.")
    task_type: str = Field(description="classification, pair_classification, regression, token_classification "
                                       "or extractive_qa.")
    labels: list[str] | None = Field(description="Labels (token classification: tags) in label_id order.")
    tagging_scheme: str | None = Field(description="The scheme of the tags column (token classification).")
    metrics: list[str] = Field(description="The metrics the benchmark reports.")
    language: str = Field(description="Language code.")
    splits: list[str] = Field(description="Split names, in order.")
    per_split: dict[str, int] = Field(description="Rows per split.")
    labelled_per_split: dict[str, int] = Field(description="Labelled rows per split (0: prediction only).")


def task_info(handle: DatasetHandle) -> TaskInfo:
    m = read_manifest(handle)
    if m.get("kind") != "tasks":
        raise ValueError(f"{handle.ref()} is a {m.get('kind')} dataset, not a tasks dataset")
    return TaskInfo(name=m["name"], task_type=m["task_type"], labels=m["labels"], tagging_scheme=m["tagging_scheme"],
                    metrics=m["metrics"], language=m["language"], splits=m["splits"],
                    per_split=m["counts"]["per_split"], labelled_per_split=m["counts"]["labelled_per_split"])


def read_split(handle: DatasetHandle, split: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of one split, in file order."""
    info = task_info(handle)
    if split not in info.splits:
        raise ValueError(f"task {info.name} has no split {split!r}; its splits are {info.splits}")
    parts = sorted(handle.path.glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(p, filters=[("split", "=", split)]) for p in parts])
    table = table.filter(pc.equal(table.column("split"), split))
    return table.select(columns) if columns else table
