"""The corpus and rejects tables as Arrow schemas (the pandera model of a row is in ``gate.py``)."""

from __future__ import annotations

import pyarrow

SCHEMA_VERSION = 1
# Bumped whenever the same inputs and config would give different documents (a reader or text rule
# changed), so old versions are not reused for new code. Part of the fingerprint.
ALGORITHM_VERSION = 3   # 2: BOMs and UTF-16/32, damaged streams kept up to the damage, ids of kept copies
# 3: segmentation (lower-case abbreviations, full-width stops, nested quotes), markup clean-up, mojibake lines

CORPUS_SCHEMA = pyarrow.schema([
    pyarrow.field("doc_id", pyarrow.string(), nullable=False),   # blake2b-128 of the normalised text, hex
    # (with dedup off, a later copy of a text gets stage.copy_id(id, n) instead, n = 2, 3, ...)
    pyarrow.field("text", pyarrow.string(), nullable=False),     # normalised text, paragraphs kept
    pyarrow.field("sentences", pyarrow.list_(pyarrow.string()), nullable=False),
    pyarrow.field("n_chars", pyarrow.int32(), nullable=False),
    pyarrow.field("n_sentences", pyarrow.int32(), nullable=False),
    pyarrow.field("title", pyarrow.string()),
    pyarrow.field("label", pyarrow.string()),
    pyarrow.field("source_id", pyarrow.string()),                # the id the source gave, if any
    pyarrow.field("source", pyarrow.string(), nullable=False),   # the source argument it came from
    pyarrow.field("source_file", pyarrow.string(), nullable=False),
    pyarrow.field("source_record", pyarrow.int64(), nullable=False),
    pyarrow.field("source_line", pyarrow.int64()),
])

REJECTS_SCHEMA = pyarrow.schema([
    pyarrow.field("source", pyarrow.string(), nullable=False),
    pyarrow.field("source_file", pyarrow.string(), nullable=False),
    pyarrow.field("record", pyarrow.int64()),      # null: the whole file
    pyarrow.field("line", pyarrow.int64()),
    pyarrow.field("reason", pyarrow.string(), nullable=False),
    pyarrow.field("detail", pyarrow.string(), nullable=False),
])
