"""IngestConfig: everything that decides what a corpus dataset contains."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from bertplat.config import StageConfig
from bertplat.ingest.neardup import NEAR_DEDUP_ALGORITHM, NearDedup
from bertplat.ingest.quality import LANGUAGE_MODEL, QualityFilters

Format = Literal["auto", "text", "jsonl", "json", "csv", "tsv", "parquet", "wikiextractor", "gutenberg"]
FORMATS: tuple[str, ...] = Format.__args__  # type: ignore[attr-defined]

MiB = 1 << 20


class IngestConfig(StageConfig):
    """How raw files become corpus documents. Every field except ``workers`` is part of the
    dataset's fingerprint."""

    format: Format = Field(
        default="auto",
        description="Input format. 'auto' decides per file from its extension and first bytes: "
        ".jsonl/.ndjson, .json, .csv, .tsv, .parquet; .txt/.text is plain text (or a Gutenberg book); "
        "otherwise '<doc ' starts WikiExtractor output, '{' JSON Lines, a Project Gutenberg licence "
        "header makes a Gutenberg book, and anything else is plain text.",
    )
    text_mode: Literal["file", "paragraphs", "lines"] = Field(
        default="file",
        description="Plain text only: one document per file, documents separated by blank lines "
        "('paragraphs'), or one document per line.",
    )
    text_field: str = Field(
        default="text", description="JSON/JSONL field, CSV/TSV column or Parquet column holding the text "
        "(dotted paths reach into nested JSON objects; a CSV column may also be a 0-based index).",
    )
    id_field: str | None = Field(default=None, description="Optional field or column with the source's own id.")
    title_field: str | None = Field(default=None, description="Optional field or column with a title.")
    label_field: str | None = Field(default=None, description="Optional field or column with a label (kept as text).")
    csv_header: bool = Field(default=True, description="CSV/TSV: the first row names the columns.")
    csv_quoting: Literal["auto", "minimal", "none"] = Field(
        default="auto",
        description="CSV/TSV quoting: 'minimal' honours double quotes, 'none' treats them as text. "
        "'auto' is 'minimal' for CSV and 'none' for TSV (GLUE-style TSVs contain bare quotes).",
    )
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of the inputs. A byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE) at "
        "the start of a file decides that file's encoding instead; UTF-16 and UTF-32 are read as text.",
    )
    include: tuple[str, ...] = Field(
        default=("*",), description="Glob patterns a file in a directory must match (on its name) to be read.",
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="Glob patterns (on the name) of files in directories to skip. Hidden files "
        "(starting with '.') are always skipped.",
    )
    normalization: Literal["NFC", "NFKC", "none"] = Field(
        default="NFC", description="Unicode normalisation form applied to every text.",
    )
    unwrap_lines: bool | None = Field(
        default=None,
        description="Join hard-wrapped lines inside a paragraph (a single newline becomes a space; blank "
        "lines still separate paragraphs). Default: on for Gutenberg books, off otherwise.",
    )
    segment_sentences: bool = Field(
        default=True,
        description="Split documents into sentences (English .!? rules with common abbreviations, and "
        "Chinese 。！？ rules); every newline is also a boundary. Off: one sentence per line.",
    )
    wikiextractor_title_line: Literal["keep", "drop"] = Field(
        default="keep",
        description="WikiExtractor repeats the title as the first line of each article; keep it in "
        "the text (as the original BERT data did) or drop it.",
    )
    markup_cleanup: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Remove WikiExtractor leftovers (bertplat.ingest.cleanup): HTML entities unescaped, "
        "markup-only lines and inline tags removed, formula_N/codice_N placeholders removed (or replaced by "
        "placeholder_token), empty parentheses and dangling punctuation tidied. 'auto': on for WikiExtractor "
        "input (both forms), off for the others; 'on': every input; 'off': none.",
    )
    placeholder_token: str = Field(
        default="", max_length=32,
        description="What formula_N and codice_N become when markup clean-up is on ('' removes them).",
    )
    quality: QualityFilters = Field(
        default_factory=QualityFilters,
        description="Quality filter thresholds (bertplat.ingest.quality); each is off unless set, except that "
        "garbled (mojibake) lines are dropped. Filtered documents go to the rejects table with the measured "
        "value; they are reported but, like duplicates, do not count towards max_reject_ratio.",
    )
    near_dedup: NearDedup = Field(
        default_factory=NearDedup,
        description="Near-duplicate removal with MinHash + LSH over word shingles, after exact dedup "
        "(bertplat.ingest.neardup); off unless near_dedup.threshold is set.",
    )
    min_chars: int = Field(default=1, ge=1, description="Documents shorter than this (after normalisation) are rejected.")
    max_record_bytes: int = Field(
        default=16 * MiB, ge=1024,
        description="A record (a line, a JSON object, a whole-file document) larger than this is rejected "
        "rather than read into memory.",
    )
    max_json_bytes: int = Field(
        default=512 * MiB, ge=1024,
        description="A .json file (not JSONL) is parsed whole; larger files are rejected with advice to use JSONL.",
    )
    max_reject_ratio: float = Field(
        default=0.05, ge=0.0, le=1.0,
        description="Fail the run when rejected records / (accepted + rejected) exceeds this. Duplicates "
        "are reported in the rejects table but do not count as rejects.",
    )
    dedup: bool = Field(
        default=True,
        description="Drop exact duplicate documents (same normalised text), keeping the first in input order. "
        "Off: every copy is kept, and each copy after the first gets its own doc_id.",
    )
    batch_bytes: int = Field(
        default=8 * MiB, ge=64 * 1024,
        description="Text per processing batch; each batch becomes one Parquet row group (sized for streaming).",
    )
    shard_bytes: int = Field(default=256 * MiB, ge=MiB, description="Start a new Parquet shard after this much text.")
    task_bytes: int = Field(
        default=64 * MiB, ge=MiB,
        description="Consecutive small files are grouped into tasks of at most this much input, the unit of "
        "parallel work (smaller for small corpora, so that every core gets work).",
    )
    cluster: str | None = Field(
        default=None, description="Dask scheduler to run the tasks on (tcp://host:8786; default "
        "$BERTPLAT_DASK_ADDRESS, else local worker processes). Not part of the fingerprint: the output is the same.")
    workers: int | None = Field(
        default=None, ge=1,
        description="Worker processes (default: all cores). Does not change the output, so it is not "
        "part of the fingerprint.",
    )

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _tuple(cls, value):
        return (value,) if isinstance(value, str) else tuple(value)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None

    @model_validator(mode="after")
    def _limits_agree(self):
        if self.batch_bytes > self.shard_bytes:
            raise ValueError("batch_bytes must not exceed shard_bytes")
        return self

    def fingerprint_json(self) -> str:
        """Canonical JSON without the fields that do not change the output."""
        import json

        data = self.model_dump(mode="json", exclude={"workers", "cluster"})
        if self.near_dedup.threshold is None:
            data["near_dedup"].pop("exact_shingles")    # added later: configs without near-dedup keep their versions
        else:
            data["near_dedup"]["algorithm"] = NEAR_DEDUP_ALGORITHM
        if self.quality.languages is None:  # added later: configs without language identification keep their versions
            for key in ("languages", "min_language_score", "language_sample_chars"):
                data["quality"].pop(key)
        else:
            data["quality"]["language_model"] = LANGUAGE_MODEL
        return json.dumps(data, sort_keys=True, separators=(",", ":"))
