"""The texts an embeddings dataset is made of, read from a corpus or task dataset in fixed-size chunks.

A corpus gives its documents (key ``doc_id``) or its sentences (keys ``doc_id``, ``sentence``: the
sentence's index in the document); a task dataset gives one text column of its rows (keys
``task_id``, the task's ``id``, and ``split``). Chunks are ``shard_rows`` rows each (the last one
shorter), always in the same order, so shard i of a resumed run holds the same rows as shard i of the killed one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bertplat.embed.config import EmbedConfig
from bertplat.lake import DatasetHandle


@dataclass(frozen=True)
class SourceSpec:
    """Which rows of which dataset, and which of its columns identify a row."""

    handle: DatasetHandle
    keys: tuple[str, ...]
    unit: str  # documents, sentences or rows

    @classmethod
    def of(cls, handle: DatasetHandle, config: EmbedConfig) -> SourceSpec:
        if handle.kind == "corpus":
            return cls(handle, ("doc_id",) if config.unit == "documents" else ("doc_id", "sentence"), config.unit)
        if handle.kind == "tasks":
            return cls(handle, ("task_id", "split"), "rows")  # "id" is the embeddings' own row number
        raise ValueError(f"{handle.ref()}: embeddings are made from corpus or tasks datasets, not {handle.kind}")


def _files(handle: DatasetHandle) -> list:
    files = sorted(handle.path.glob("part-*.parquet"))
    if not files:
        raise ValueError(f"{handle.ref()} has no part-*.parquet files in {handle.path}")
    return files


def _groups(spec: SourceSpec, config: EmbedConfig) -> Iterator[pa.Table]:
    """Row groups as tables with the key columns, ``text`` and ``label`` (string, may be null)."""
    for path in _files(spec.handle):
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        for i in range(pf.num_row_groups):
            if spec.handle.kind == "corpus":
                yield _corpus_group(pf.read_row_group(i, columns=["doc_id", "text", "sentences", "label"]
                                                      if "label" in names else ["doc_id", "text", "sentences"]),
                                    spec.unit)
            else:
                yield _task_group(pf, i, names, config, path)


def _corpus_group(group: pa.Table, unit: str) -> pa.Table:
    label = group.column("label") if "label" in group.column_names else pa.nulls(len(group), pa.string())
    if unit == "documents":
        return pa.table({"doc_id": group.column("doc_id"), "text": group.column("text"), "label": label})
    sentences = group.column("sentences").combine_chunks()
    parents = pc.list_parent_indices(sentences)
    offsets = sentences.offsets.to_numpy()
    within = pa.array(range(len(parents)), pa.int64()).to_numpy() - offsets[parents.to_numpy()] + offsets[0]
    return pa.table({"doc_id": group.column("doc_id").take(parents), "sentence": pa.array(within, pa.int32()),
                     "text": pc.list_flatten(sentences), "label": label.take(parents)})


def _task_group(pf: pq.ParquetFile, i: int, names: set[str], config: EmbedConfig, path) -> pa.Table:
    col = config.text_column
    if col not in names:
        raise ValueError(f"{path}: the task dataset has no column {col!r}; set text_column to one of "
                         f"{sorted(n for n in names if n in ('text', 'text_pair', 'question', 'context'))}")
    group = pf.read_row_group(i, columns=["id", "split", col, "label"])
    if config.splits:
        group = group.filter(pc.is_in(group.column("split"), pa.array(list(config.splits))))
    texts = group.column(col)
    if texts.null_count:
        first = group.column("id").filter(pc.is_null(texts))[0].as_py()
        raise ValueError(f"{path}: {texts.null_count} row(s) have no {col!r} (first: id {first!r}); choose "
                         "another text_column or select splits that have it")
    return pa.table({"task_id": group.column("id"), "split": group.column("split"), "text": texts,
                     "label": group.column("label").cast(pa.string())})


def iter_chunks(spec: SourceSpec, config: EmbedConfig) -> Iterator[pa.Table]:
    """Tables of exactly ``shard_rows`` rows (the last may be shorter), in a stable order."""
    size = config.shard_rows
    pending: list[pa.Table] = []
    held = 0
    for group in _groups(spec, config):
        pending.append(group)
        held += len(group)
        while held >= size:
            table = pa.concat_tables(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, held = [rest], len(rest)
    if held:
        yield pa.concat_tables(pending)


def count_rows(spec: SourceSpec, config: EmbedConfig) -> int:
    """Rows the embeddings must have, from the smallest columns only."""
    total = 0
    for path in _files(spec.handle):
        pf = pq.ParquetFile(path)
        if spec.handle.kind == "corpus" and spec.unit == "documents":
            total += pf.metadata.num_rows
        elif spec.handle.kind == "corpus":
            total += sum(pc.sum(pf.read_row_group(i, columns=["n_sentences"]).column(0)).as_py() or 0
                         for i in range(pf.num_row_groups))
        else:
            split = pf.read(columns=["split"]).column(0)
            total += len(split) if not config.splits else pc.sum(pc.is_in(split, pa.array(list(config.splits)))).as_py()
    return int(total)
