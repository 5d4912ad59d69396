"""The corpus and rejects tables: Arrow schemas for writing, a pandera model for the gate."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pyarrow

SCHEMA_VERSION = 1
# Bumped whenever the same inputs and config would give different documents (a reader or text rule
# changed), so old versions are not reused for new code. Part of the fingerprint.
ALGORITHM_VERSION = 1

CORPUS_SCHEMA = pyarrow.schema([
    pyarrow.field("doc_id", pyarrow.string(), nullable=False),   # blake2b-128 of the normalised text, hex
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


class CorpusDocument(pa.DataFrameModel):
    """One row of a corpus shard."""

    doc_id: str = pa.Field(unique=True, str_matches=r"^[0-9a-f]{32}$")
    text: str = pa.Field(str_length={"min_value": 1})
    sentences: pl.List(pl.Utf8) = pa.Field()
    n_chars: pl.Int32 = pa.Field(ge=1)
    n_sentences: pl.Int32 = pa.Field(ge=1)
    title: str | None = pa.Field(nullable=True)
    label: str | None = pa.Field(nullable=True)
    source_id: str | None = pa.Field(nullable=True)
    source: str = pa.Field(str_length={"min_value": 1})
    source_file: str = pa.Field(str_length={"min_value": 1})
    source_record: pl.Int64 = pa.Field(ge=1)
    source_line: pl.Int64 | None = pa.Field(nullable=True, ge=1)

    @pa.dataframe_check
    def n_sentences_is_list_length(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("sentences").list.len() == pl.col("n_sentences"))

    @pa.dataframe_check
    def n_chars_is_text_length(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("text").str.len_chars() == pl.col("n_chars"))

    @pa.dataframe_check
    def sentences_are_non_empty(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("sentences").list.eval(pl.element().str.len_chars() > 0).list.all())

    class Config:
        strict = True   # no unexpected columns
        ordered = True
