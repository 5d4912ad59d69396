"""The task gate: a pandera schema per task type on the whole table, then dataset-level checks
(every split has examples, ids unique per split, QA spans re-checked against their contexts, the
reject ratio) and the statistics the report shows (label counts per split, text lengths in
characters and whitespace words, and with a tokenizer the share of examples the model's maximum
length truncates)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandera.errors
import pandera.polars as pa
import polars as pl
import pyarrow

from bertplat.tasks.spec import TasksOptions, TaskSpec
from bertplat.validation import Check, GateReport

CHAR_BINS = [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
WORD_BINS = [0, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


def _non_empty(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().str.len_chars().fill_null(0) > 0


def _when_labelled(expr: pl.Expr) -> pl.Expr:
    return (~pl.col("labelled") | expr).fill_null(False)


def _check(expr: pl.Expr, name: str) -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(expr), name=name)


def task_schema(spec: TaskSpec, splits: list[str]) -> pa.DataFrameSchema:
    """The pandera schema a task's rows satisfy (named ``TaskExample`` plus the task type)."""
    columns: dict[str, pa.Column] = {
        "id": pa.Column(pl.Utf8, pa.Check.str_length(min_value=1), nullable=False),
        "split": pa.Column(pl.Utf8, pa.Check.isin(splits), nullable=False),
        "labelled": pa.Column(pl.Boolean, nullable=False),
        "source_file": pa.Column(pl.Utf8, nullable=False),
        "source_record": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
    }
    checks: list[pa.Check] = []
    kind = spec.task_type
    if kind in ("classification", "pair_classification", "regression"):
        checks.append(_check(_non_empty("text"), "text is not empty"))
    if kind == "pair_classification":
        checks.append(_check(_non_empty("text_pair"), "text_pair is not empty"))
    if kind in ("classification", "pair_classification"):
        labels = spec.label_list() or []
        columns["label_id"] = pa.Column(pl.Int32, pa.Check.in_range(0, len(labels) - 1), nullable=True)
        checks.append(_check(_when_labelled(pl.col("label").is_in(labels)), "label in the declared labels"))
        checks.append(_check(_when_labelled(pl.col("label").replace_strict(labels, list(range(len(labels))),
                                                                           default=-1) == pl.col("label_id")),
                             "label_id is the label's index"))
    if kind == "regression":
        finite = pl.col("target").is_finite()
        if spec.target_range is not None:
            finite = finite & pl.col("target").is_between(*spec.target_range)
        checks.append(_check(_when_labelled(finite), "target finite and in range"))
    if kind == "token_classification":
        checks.append(_check((pl.col("tokens").list.len() > 0).fill_null(False), "tokens not empty"))
        checks.append(_check(_when_labelled(pl.col("tags").list.len() == pl.col("tokens").list.len()),
                             "as many tags as tokens"))
        checks.append(_check(_when_labelled(pl.col("tag_ids").list.len() == pl.col("tags").list.len()),
                             "as many tag ids as tags"))
    if kind == "extractive_qa":
        checks.append(_check(_non_empty("question"), "question is not empty"))
        checks.append(_check(_non_empty("context"), "context is not empty"))
        answered = ~pl.col("is_impossible").fill_null(False)
        checks.append(_check(_when_labelled(~answered | (pl.col("answer_texts").list.len() > 0)),
                             "answerable questions have answers"))
        checks.append(_check(_when_labelled(pl.col("answer_texts").list.len() == pl.col("answer_starts").list.len()),
                             "one start per answer"))
    return pa.DataFrameSchema(columns, checks=checks, name=f"TaskExample[{kind}]")


def check_schema(table: pyarrow.Table, spec: TaskSpec, splits: list[str]) -> list[Check]:
    """The schema on every row; a failed check per broken rule, with the first bad ids."""
    df = pl.from_arrow(table)
    try:
        task_schema(spec, splits).validate(df, lazy=True)
        return [Check(name="schema", passed=True, observed=f"{df.height} rows", expected=f"TaskExample[{spec.task_type}]",
                      detail="types, non-empty text, labels, tags, answers on every row")]
    except pandera.errors.SchemaErrors as exc:
        failures = []
        cases = exc.failure_cases
        for (check, column), group in cases.group_by(["check", "column"], maintain_order=True):
            rows = [r for r in group.get_column("index").to_list() if r is not None][:5]
            ids = [df.get_column("id")[r] for r in rows if r < df.height]
            failures.append(Check(name=f"schema: {column or 'rows'} {check}", passed=False,
                                  observed=f"{group.height} rows", expected="0 rows",
                                  detail=f"first bad ids: {ids}"))
        return failures


def gate_tasks(table: pyarrow.Table, rejects: list[dict[str, Any]], records: int, spec: TaskSpec,
               options: TasksOptions, splits: list[str], dataset: str) -> GateReport:
    report = GateReport(stage="tasks", dataset=dataset)
    report.checks += check_schema(table, spec, splits)
    per_split = Counter(table.column("split").to_pylist())
    for split in splits:
        report.add(f"split {split} has examples", per_split[split] > 0, observed=per_split[split], expected="> 0",
                   detail="" if per_split[split] else "nothing was accepted from this split; see the rejects")
    ids = pl.from_arrow(table.select(["split", "id"]))
    dup = ids.height - ids.unique().height
    report.add("ids unique within each split", dup == 0, observed=dup, expected=0)
    if spec.task_type == "extractive_qa":
        bad = _span_mismatches(table)
        report.add("answer spans match their contexts", not bad, observed=len(bad), expected=0,
                   detail=f"first ids: {bad[:5]}" if bad else "every answer's text equals context[start:start+len]")
    ratio = len(rejects) / records if records else 0.0
    reasons = Counter(r["reason"] for r in rejects)
    detail = ""
    if ratio > options.max_reject_ratio:
        first = "; ".join(f"{r['source_file']} line {r['line'] or '-'} record {r['record']}: {r['reason']} "
                          f"{r['value'] or ''}".strip() for r in rejects[:3])
        detail = (f"{len(rejects)} of {records} records rejected ({dict(reasons.most_common(5))}); first: {first}. "
                  "The rejects table next to this report lists each with its reason; fix the data or the spec "
                  "(labels, columns), or raise --max-reject-ratio")
    report.add("reject ratio", ratio <= options.max_reject_ratio, observed=round(ratio, 6),
               expected=f"<= {options.max_reject_ratio}", detail=detail)
    report.stats = task_statistics(table, spec, splits)
    report.stats["reject_reasons"] = dict(reasons)
    return report


def _span_mismatches(table: pyarrow.Table) -> list[str]:
    bad = []
    cols = table.select(["id", "context", "answer_texts", "answer_starts"]).to_pylist()
    for row in cols:
        for text, start in zip(row["answer_texts"] or [], row["answer_starts"] or []):
            if row["context"][start:start + len(text)] != text:
                bad.append(row["id"])
                break
    return bad


def example_lengths(table: pyarrow.Table, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """Characters and whitespace words per example (both texts of a pair; question and context)."""
    if spec.task_type == "extractive_qa":
        texts = [f"{q} {c}" for q, c in zip(table.column("question").to_pylist(), table.column("context").to_pylist())]
    else:
        pairs = table.column("text_pair").to_pylist()
        texts = [t if p is None else f"{t} {p}" for t, p in zip(table.column("text").to_pylist(), pairs)]
    chars = np.array([len(t) for t in texts], dtype=np.int64)
    words = np.array([len(t.split()) for t in texts], dtype=np.int64)
    return chars, words


def histogram(values: np.ndarray, bins: list[int]) -> list[int]:
    return np.histogram(values, bins=[*bins, 1 << 40])[0].tolist()


def task_statistics(table: pyarrow.Table, spec: TaskSpec, splits: list[str]) -> dict[str, Any]:
    split_col = table.column("split").to_pylist()
    labelled = table.column("labelled").to_pylist()
    chars, words = example_lengths(table, spec)
    stats: dict[str, Any] = {
        "rows_per_split": {s: split_col.count(s) for s in splits},
        "labelled_per_split": {s: sum(1 for x, lab in zip(split_col, labelled) if x == s and lab) for s in splits},
        "char_bins": CHAR_BINS, "char_histogram": histogram(chars, CHAR_BINS),
        "word_bins": WORD_BINS, "word_histogram": histogram(words, WORD_BINS),
        "length_per_split": {},
    }
    for s in splits:
        mask = np.array([x == s for x in split_col], dtype=bool)
        if mask.any():
            stats["length_per_split"][s] = {
                "chars_mean": round(float(chars[mask].mean()), 2), "chars_max": int(chars[mask].max()),
                "words_mean": round(float(words[mask].mean()), 2), "words_max": int(words[mask].max())}
    stats["label_counts"] = _label_counts(table, spec, splits)
    return stats


def _label_counts(table: pyarrow.Table, spec: TaskSpec, splits: list[str]) -> dict[str, dict[str, Any]]:
    split_col = table.column("split").to_pylist()
    out: dict[str, Counter] = {s: Counter() for s in splits}
    if spec.task_type in ("classification", "pair_classification"):
        for s, label in zip(split_col, table.column("label").to_pylist()):
            if label is not None:
                out[s][label] += 1
    elif spec.task_type == "token_classification":
        from bertplat.tasks.tagging import tags_to_spans

        for s, tags in zip(split_col, table.column("tags").to_pylist()):
            if tags is not None:
                out[s].update(span.label for span in tags_to_spans(tags, spec.tagging_scheme))
    elif spec.task_type == "extractive_qa":
        for s, imp, lab in zip(split_col, table.column("is_impossible").to_pylist(),
                               table.column("labelled").to_pylist()):
            if lab:
                out[s]["unanswerable" if imp else "answerable"] += 1
    else:
        targets = table.column("target").to_pylist()
        result: dict[str, dict[str, Any]] = {}
        for s in splits:
            vals = np.array([t for x, t in zip(split_col, targets) if x == s and t is not None])
            if len(vals):
                result[s] = {"n": len(vals), "mean": round(float(vals.mean()), 4), "min": float(vals.min()),
                             "max": float(vals.max())}
        return result
    return {s: dict(sorted(c.items())) for s, c in out.items()}


def truncation_share(table: pyarrow.Table, spec: TaskSpec, splits: list[str], tokenizer_dir: str,
                     max_length: int, sample: int) -> dict[str, Any]:
    """Per split: the share of (the first ``sample``) examples longer than ``max_length`` tokens with
    the model's own tokenizer and its special tokens (pairs and QA encoded as pairs, NER pre-tokenised)."""
    from tokenizers import Tokenizer

    path = Path(tokenizer_dir)
    path = path / "tokenizer.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {tokenizer_dir}: no tokenizer.json there; pass a vocab dataset "
                                "directory or a model directory")
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    split_col = np.array(table.column("split").to_pylist(), dtype=object)
    result: dict[str, Any] = {"max_length": max_length, "tokenizer": str(tokenizer_dir), "per_split": {}}
    for s in splits:
        rows = np.flatnonzero(split_col == s)[:sample]
        if not len(rows):
            continue
        part = table.take(pyarrow.array(rows))
        if spec.task_type == "token_classification":
            encs = tok.encode_batch(part.column("tokens").to_pylist(), is_pretokenized=True)
        elif spec.task_type == "extractive_qa":
            encs = tok.encode_batch(list(zip(part.column("question").to_pylist(), part.column("context").to_pylist())))
        elif spec.task_type == "pair_classification" or part.column("text_pair").null_count < part.num_rows:
            encs = tok.encode_batch(list(zip(part.column("text").to_pylist(), part.column("text_pair").to_pylist())))
        else:
            encs = tok.encode_batch(part.column("text").to_pylist())
        lengths = np.array([len(e.ids) for e in encs])
        result["per_split"][s] = {"examples": int(len(rows)), "truncated": int((lengths > max_length).sum()),
                                  "share": round(float((lengths > max_length).mean()), 6),
                                  "tokens_mean": round(float(lengths.mean()), 2), "tokens_max": int(lengths.max())}
    return result
