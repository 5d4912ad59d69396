"""The task spec: a task is a small YAML file, not code.

A spec names the task type, the file format, the files of each split, which column (or field, or
0-based index) holds what, the label list (or a regression range), the tagging scheme and the
metrics. ``configs/tasks/*.yaml`` are the specs of the shared tasks; a task bertplat has never seen
needs only a new YAML. :class:`TasksOptions` are the import-time knobs (a record limit for quick
runs, the reject ratio, a tokenizer for the truncation statistics).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bertplat.config import StageConfig
from bertplat.lake import check_name

TaskType = Literal["classification", "pair_classification", "regression", "token_classification", "extractive_qa"]
Format = Literal["tsv", "csv", "jsonl", "json", "parquet", "conll", "char_ner", "tagged_lines", "squad"]
Metric = Literal["accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman", "entity_f1", "exact_match",
                 "squad_f1"]
Column = str | int  # a header name / field name, or a 0-based column index (headerless files)

TASK_TYPES: tuple[str, ...] = TaskType.__args__  # type: ignore[attr-defined]
# The formats whose readers fill tokens and tags (or question/context/answers) themselves.
TOKEN_FORMATS = ("conll", "char_ner", "tagged_lines")
METRICS_FOR: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "macro_f1", "matthews"),
    "pair_classification": ("accuracy", "f1", "macro_f1", "matthews"),
    "regression": ("pearson", "spearman"),
    "token_classification": ("entity_f1", "accuracy"),
    "extractive_qa": ("exact_match", "squad_f1"),
}
DEFAULT_METRICS = {"classification": ["accuracy"], "pair_classification": ["accuracy", "f1"],
                   "regression": ["pearson", "spearman"], "token_classification": ["entity_f1"],
                   "extractive_qa": ["exact_match", "squad_f1"]}
_SPLIT_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ColumnMap(StageConfig):
    """Where each field of an example comes from: a header/field name or a 0-based column index."""

    id: Column | None = Field(None, description="The source's own example id (generated as <split>-<n> if absent).")
    text: Column | None = Field(None, description="The text (first sentence of a pair).")
    text_pair: Column | None = Field(None, description="The second sentence of a pair.")
    label: Column | None = Field(None, description="The label (classification) or target value (regression).")
    tokens: Column | None = Field(None, description="Tokens: a list, or a whitespace-separated string.")
    tags: Column | None = Field(None, description="One tag per token: a list, or a whitespace-separated string.")
    question: Column | None = Field(None, description="QA: the question.")
    context: Column | None = Field(None, description="QA: the context the answer is a span of.")
    answers: Column | None = Field(None, description="QA: SQuAD-style answers, a list of {text, answer_start} "
                                                     "or {text: [...], answer_start: [...]}.")
    answer_texts: Column | None = Field(None, description="QA: answer texts, a list (instead of answers).")
    answer_starts: Column | None = Field(None, description="QA: answer character offsets, a list (with answer_texts).")
    is_impossible: Column | None = Field(None, description="QA (v2.0): true when the question has no answer.")
    title: Column | None = Field(None, description="A group title (QA: the article), used by split-by-article.")

    def mapped(self) -> dict[str, Column]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ReadOptions(StageConfig):
    """How to read the files; every option has a default that suits its format."""

    header: bool | None = Field(None, description="CSV/TSV: the first line names the columns (default true).")
    delimiter: str | None = Field(None, description="CSV/TSV field separator (default ',' for csv, tab for tsv); "
                                                    "tagged_lines: the separator between tokens and tags (tab).")
    quoting: Literal["none", "minimal"] | None = Field(
        None, description="CSV/TSV quoting: 'none' (quotes are text, GLUE's TSVs; default for tsv) or 'minimal' "
                          "(RFC 4180 quotes; default for csv).")
    encoding: str = Field("utf-8", description="Text encoding; a UTF-8 byte-order mark is always removed.")
    token_column: int = Field(0, description="CoNLL: 0-based column of the token.")
    tag_column: int = Field(-1, description="CoNLL: 0-based column of the tag (-1: the last).")
    column_separator: str | None = Field(None, description="CoNLL: the column separator (default: any whitespace).")
    docstart: str = Field("-DOCSTART-", description="CoNLL: lines starting with this are document separators.")
    token_join: str | None = Field(None, description="Token classification: how tokens join into the text column "
                                                     "(default '' for zh/ja, ' ' otherwise).")

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError("a delimiter is one character (write a tab as \"\\t\" in YAML)")
        return v


class SplitSource(StageConfig):
    """The files of one split, and what differs from the task-level settings for them."""

    paths: list[str] = Field(description="Files or glob patterns, relative to the root (read in this order).")
    labelled: bool = Field(True, description="False for a test split without labels: kept, marked unlabelled, "
                                             "for prediction only.")
    columns: ColumnMap | None = Field(None, description="Column mapping for this split only (merged over the "
                                                        "task's; e.g. GLUE test files have other columns).")
    options: ReadOptions | None = Field(None, description="Read options for this split only (merged over the task's).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"paths": [data]}
        if isinstance(data, list):
            return {"paths": data}
        if isinstance(data, dict) and isinstance(data.get("paths"), str):
            return {**data, "paths": [data["paths"]]}
        return data

    @field_validator("paths")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a split needs at least one path")
        return v


class DeriveSplits(StageConfig):
    """Split one source split into several, deterministically (when the source has no such split)."""

    from_split: str = Field(description="The split to divide; it is replaced by the derived ones.")
    by: Literal["hash", "article"] = Field(
        "hash", description="'hash': each example by a hash of its id (or content); 'article': whole articles "
                            "(the title column, SQuAD's article) go to one side, so no context leaks across.")
    fractions: dict[str, float] = Field(description="Derived split name -> share (in order; they sum to 1).")
    salt: str = Field("bertplat", description="Changes the assignment while keeping it deterministic.")

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, v: dict[str, float]) -> dict[str, float]:
        if len(v) < 2 or any(f <= 0 for f in v.values()) or abs(sum(v.values()) - 1) > 1e-6:
            raise ValueError(f"fractions must be two or more positive shares summing to 1, got {v}")
        return v


class TaskSpec(StageConfig):
    """One downstream task: what its data looks like and how it is evaluated."""

    name: str = Field(description="Dataset name; DuckDB views task_<name> and rejects_<name>.")
    description: str = Field("", description="Free text (not part of the fingerprint).")
    task_type: TaskType = Field(description="classification, pair_classification, regression, "
                                            "token_classification or extractive_qa.")
    format: Format = Field(description="tsv, csv, jsonl, json (one document of records), parquet, conll, char_ner ('char tag' per line), "
                                       "tagged_lines ('c c c<TAB>T T T' per line) or squad.")
    splits: dict[str, SplitSource] = Field(description="Split name (train, validation, test, ...) -> its files.")
    columns: ColumnMap = Field(default_factory=ColumnMap, description="Where each field comes from.")
    options: ReadOptions = Field(default_factory=ReadOptions, description="How to read the files.")
    labels: list[str] | None = Field(None, description="The label list; its order defines label_id (token "
                                                       "classification: the tag list, or derived from entity_types).")
    label_map: dict[str, str] = Field(default_factory=dict, description="Raw value -> label, applied before the "
                                                                        "label check (e.g. pos: positive).")
    target_range: tuple[float, float] | None = Field(None, description="Regression: the [low, high] range targets "
                                                                       "must lie in.")
    tagging_scheme: str | None = Field(None, description="Token classification: iob1, iob2, bioes (iobes), "
                                                         "bios or bmes.")
    entity_types: list[str] | None = Field(None, description="Token classification: entity types (PER, LOC, ...); "
                                                             "the tag list is then every scheme prefix x type, and O.")
    metrics: list[Metric] | None = Field(None, description="Metrics the benchmark reports (default by task type).")
    language: str = Field("en", description="Language code (en, zh, ...).")
    derive: DeriveSplits | None = Field(None, description="Derive splits from one source split (hash or article).")
    root: str | None = Field(None, description="Directory relative paths resolve against (relative to the YAML "
                                               "file, or package:PACKAGE/DIR inside an installed package); the "
                                               "caller's root wins. Not part of the fingerprint.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_strings(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_as_strings(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("tagging_scheme")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from bertplat.tasks.tagging import normalize_scheme

        return normalize_scheme(v)

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        for split in self.splits:
            if not _SPLIT_RE.match(split):
                raise ValueError(f"split name {split!r}: use lower-case letters, digits and '_'")
        if not self.splits:
            raise ValueError("splits: name at least one split and its files")
        check = _CHECKS[self.task_type]
        check(self)
        for metric in self.metrics or []:
            if metric not in METRICS_FOR[self.task_type]:
                raise ValueError(f"metric {metric!r} does not apply to {self.task_type}; "
                                 f"use {', '.join(METRICS_FOR[self.task_type])}")
        if self.format == "squad" and self.task_type != "extractive_qa":
            raise ValueError("format squad holds extractive_qa tasks")
        if self.format in TOKEN_FORMATS and self.task_type != "token_classification":
            raise ValueError(f"format {self.format} holds token_classification tasks")
        if self.derive is not None:
            d = self.derive
            if d.from_split not in self.splits:
                raise ValueError(f"derive.from_split {d.from_split!r} is not one of the splits {list(self.splits)}")
            clash = set(d.fractions) & (set(self.splits) - {d.from_split})
            if clash:
                raise ValueError(f"derived splits {sorted(clash)} already exist as source splits")
            for split in d.fractions:
                if not _SPLIT_RE.match(split):
                    raise ValueError(f"derived split name {split!r}: use lower-case letters, digits and '_'")
        return self

    # -- derived views --------------------------------------------------------------------------
    def effective_metrics(self) -> list[str]:
        return list(self.metrics or DEFAULT_METRICS[self.task_type])

    def label_list(self) -> list[str] | None:
        """The labels in label_id order (token classification: tags, derived from the entity types)."""
        if self.labels is not None:
            return list(self.labels)
        if self.task_type == "token_classification" and self.entity_types:
            return tag_list(self.tagging_scheme or "iob2", self.entity_types)
        return None

    def split_columns(self, split: str) -> ColumnMap:
        override = self.splits[split].columns
        if override is None:
            return self.columns
        return self.columns.model_copy(update=override.model_dump(exclude_unset=True))

    def split_options(self, split: str) -> ReadOptions:
        override = self.splits[split].options
        if override is None:
            return self.options
        return self.options.model_copy(update=override.model_dump(exclude_unset=True))

    def token_join(self) -> str:
        if self.options.token_join is not None:
            return self.options.token_join
        return "" if self.language.split("-")[0].lower() in ("zh", "ja") or self.format == "char_ner" else " "

    def fingerprint_json(self) -> str:
        """The spec's part of the fingerprint: everything but the name, description and root."""
        import json

        body = self.model_dump(mode="json", exclude={"name", "description", "root"})
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TaskSpec:
        """Load a spec; a relative ``root`` in it is taken relative to the YAML file's directory."""
        spec = super().from_yaml(path, **overrides)
        if spec.root is not None and not Path(spec.root).is_absolute() and not spec.root.startswith("package:"):
            spec = spec.model_copy(update={"root": str((Path(path).parent / spec.root).resolve())})
        return spec


def tag_list(scheme: str, entity_types: list[str]) -> list[str]:
    """O, then every tag of each type in the scheme's prefix order (B-PER, I-PER, B-LOC, ...)."""
    from bertplat.tasks.tagging import tag_vocabulary

    return tag_vocabulary(entity_types, scheme)


def _needs(spec: TaskSpec, fields: tuple[str, ...], unless_format: tuple[str, ...] = ()) -> None:
    if spec.format in unless_format:
        return
    for split in spec.splits:
        cols = spec.split_columns(split).mapped()
        for f in fields:
            if f == "label" and not spec.splits[split].labelled:
                continue
            if f not in cols:
                raise ValueError(f"{spec.task_type} needs columns.{f} (split {split!r}): name the column or field "
                                 "that holds it")


def _check_classification(spec: TaskSpec) -> None:
    if not spec.labels:
        raise ValueError(f"{spec.task_type} needs a non-empty labels list (it defines label_id order)")
    if len(set(spec.labels)) != len(spec.labels):
        raise ValueError(f"labels has duplicates: {spec.labels}")
    fields = ("text", "label") if spec.task_type == "classification" else ("text", "text_pair", "label")
    _needs(spec, fields)


def _check_regression(spec: TaskSpec) -> None:
    if spec.target_range is not None and not spec.target_range[0] < spec.target_range[1]:
        raise ValueError(f"target_range must be [low, high] with low < high, got {list(spec.target_range)}")
    _needs(spec, ("text", "label"))


def _check_tokens(spec: TaskSpec) -> None:
    if spec.tagging_scheme is None:
        raise ValueError("token_classification needs tagging_scheme (iob1, iob2, bioes, bios or bmes)")
    if not spec.labels and not spec.entity_types:
        raise ValueError("token_classification needs entity_types (e.g. [PER, LOC, ORG, MISC]) or the full "
                         "labels (tag) list")
    if spec.labels and "O" not in spec.labels:
        raise ValueError("the tag list (labels) must contain 'O'")
    for split, source in spec.splits.items():
        cols = spec.split_columns(split).mapped()
        if spec.format not in TOKEN_FORMATS:
            if "tokens" not in cols or (source.labelled and "tags" not in cols):
                raise ValueError(f"token_classification in {spec.format} needs columns.tokens and columns.tags "
                                 f"(split {split!r})")


def _check_qa(spec: TaskSpec) -> None:
    if spec.format == "squad":
        return
    _needs(spec, ("question", "context"))
    for split, source in spec.splits.items():
        cols = spec.split_columns(split).mapped()
        if source.labelled and "answers" not in cols and not {"answer_texts", "answer_starts"} <= set(cols):
            raise ValueError(f"extractive_qa needs columns.answers, or columns.answer_texts and "
                             f"columns.answer_starts (split {split!r})")


_CHECKS = {"classification": _check_classification, "pair_classification": _check_classification,
           "regression": _check_regression, "token_classification": _check_tokens, "extractive_qa": _check_qa}


class TasksOptions(StageConfig):
    """Import-time options (part of the fingerprint, since they change what is written)."""

    limit: int | None = Field(None, ge=1, description="Read at most this many records per source split "
                                                      "(quick runs, CI); None reads everything.")
    max_reject_ratio: float = Field(0.01, ge=0, le=1, description="Fail the gate when more than this share of "
                                                                  "records is rejected.")
    tokenizer: str | None = Field(None, description="A tokenizer directory (tokenizer.json): the report then "
                                                    "gives the share of examples max_length truncates.")
    max_length: int = Field(128, ge=8, description="The model's maximum sequence length, for the truncation share.")
    truncation_sample: int = Field(20000, ge=1, description="Examples per split tokenised for the truncation share.")
