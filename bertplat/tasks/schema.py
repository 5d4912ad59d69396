"""The task and rejects tables as Arrow schemas (the pandera model of a row is in ``gate.py``).

One table holds every split of a task (column ``split``). Its columns are the union over task
types; a column a task type does not use is null:

- every task: ``id``, ``split``, ``labelled`` (false: a test split without labels, prediction only),
  ``source_file`` (relative to the import root), ``source_line`` (1-based; null for JSON documents and
  Parquet), ``source_record`` (1-based record number within the file);
- classification and pairs: ``text``, ``text_pair``, ``label`` (the label string), ``label_id`` (its index
  in the spec's label list);
- regression: ``text``, ``text_pair``, ``target``;
- token classification: ``tokens``, ``tags`` (in the spec's tagging scheme), ``tag_ids`` (indexes in the
  tag list), ``text`` (the tokens joined, for statistics);
- extractive QA: ``question``, ``context``, ``title`` (the article), ``answer_texts``, ``answer_starts``
  (character offsets into ``context``), ``is_impossible`` (SQuAD v2.0).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
# Bumped whenever the same files and spec would give different rows (a reader or rule changed).
ALGORITHM_VERSION = 1

TASK_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("labelled", pa.bool_(), nullable=False),
    pa.field("text", pa.string()),
    pa.field("text_pair", pa.string()),
    pa.field("label", pa.string()),
    pa.field("label_id", pa.int32()),
    pa.field("target", pa.float64()),
    pa.field("tokens", pa.list_(pa.string())),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("tag_ids", pa.list_(pa.int32())),
    pa.field("question", pa.string()),
    pa.field("context", pa.string()),
    pa.field("title", pa.string()),
    pa.field("answer_texts", pa.list_(pa.string())),
    pa.field("answer_starts", pa.list_(pa.int32())),
    pa.field("is_impossible", pa.bool_()),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("source_line", pa.int64()),
    pa.field("source_record", pa.int64(), nullable=False),
])

REJECTS_SCHEMA = pa.schema([
    pa.field("split", pa.string(), nullable=False),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("record", pa.int64()),      # 1-based record number within the file
    pa.field("line", pa.int64()),        # 1-based line, where the format has lines
    pa.field("value", pa.string()),      # the offending value (a label, a tag, an answer), if one
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
])
