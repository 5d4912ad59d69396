"""The examples gate: layout checks on every row group of every shard (lengths, [CLS]/[SEP],
segments, labels, masks), then dataset statistics (NSP/SOP balance, mask rate and 80/10/10,
no document in both splits). A failure names the shard and row group."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandera.errors
import pandera.polars as pa
import polars as pl
import pyarrow as pyarrow
import pyarrow.parquet as pq

from bertplat.examples.config import ExamplesConfig
from bertplat.progress import NullProgress, Progress
from bertplat.validation import Check, GateReport
from bertplat.vocab.tokenizer import VocabInfo


class ExampleRow(pa.DataFrameModel):
    """Column types and value ranges of one example (list layout is checked with numpy below)."""

    segment_a_len: pl.UInt16 = pa.Field(ge=2)
    doc_id: str = pa.Field(str_matches=r"^[0-9a-f]{32}$")

    class Config:
        strict = False   # the list columns are checked by _check_layout


class NSPRow(ExampleRow):
    next_sentence_label: pl.Int8 = pa.Field(isin=[0, 1])


def _flat(column: pyarrow.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    arr = column.combine_chunks()
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    values = np.asarray(arr.values, dtype=np.int64)[offsets[0]:offsets[-1]]
    return values, offsets - offsets[0]


def _check_layout(table: pyarrow.Table, cfg: ExamplesConfig, info: VocabInfo) -> list[tuple[str, int, str]]:
    """(check, number of bad rows, example) for every broken layout rule of a row group."""
    ids, offsets = _flat(table.column("input_ids"))
    lengths = np.diff(offsets)
    n = len(lengths)
    seg = table.column("segment_a_len").to_numpy().astype(np.int64)
    row = np.repeat(np.arange(n), lengths)
    sep_count = np.bincount(row[ids == info.sep_id], minlength=n)
    cls_count = np.bincount(row[ids == info.cls_id], minlength=n)
    bad: list[tuple[str, np.ndarray]] = [
        (f"length <= max_seq_length ({cfg.max_seq_length})", lengths > cfg.max_seq_length),
        ("at least [CLS] x [SEP]", lengths < 3),
    ]
    nonempty = lengths > 0
    starts, ends = offsets[:-1][nonempty], offsets[1:][nonempty] - 1
    first_ok = np.zeros(n, dtype=bool)
    last_ok = np.zeros(n, dtype=bool)
    first_ok[nonempty] = ids[starts] == info.cls_id
    last_ok[nonempty] = ids[ends] == info.sep_id
    bad += [("[CLS] first and only there", ~first_ok | (cls_count != 1)), ("[SEP] last", ~last_ok)]
    if cfg.objective == "mlm":
        bad += [("segment_a_len covers the example (mlm)", seg != lengths)]
    else:
        a_sep = offsets[:-1] + np.clip(seg - 1, 0, None)
        a_sep_ok = (seg >= 3) & (seg <= lengths - 2) & (ids[np.minimum(a_sep, len(ids) - 1)] == info.sep_id)
        bad += [("exactly two [SEP] (nsp/sop)", sep_count != 2),
                ("[SEP] ends segment A, both segments non-empty", ~a_sep_ok)]
    if cfg.masking == "static":
        bad += _check_masks(table, ids, offsets, lengths, cfg, info)
    out = []
    for name, mask in bad:
        if mask.any():
            out.append((name, int(mask.sum()), f"first bad rows {np.flatnonzero(mask)[:5].tolist()}"))
    return out


def _check_masks(table, ids, offsets, lengths, cfg, info) -> list[tuple[str, np.ndarray]]:
    positions, m_offsets = _flat(table.column("masked_positions"))
    labels, _ = _flat(table.column("masked_label_ids"))
    counts = np.diff(m_offsets)
    row = np.repeat(np.arange(len(counts)), counts)
    inside = positions < lengths[row]
    special = np.zeros(info.size, dtype=bool)
    special[list(info.special_ids)] = True
    per_row = lambda flags: np.bincount(row[flags], minlength=len(counts)) > 0  # noqa: E731
    return [
        (f"at most max_predictions_per_seq ({cfg.max_predictions}) masks", counts > cfg.max_predictions),
        ("masked positions inside the example", per_row(~inside)),
        ("no special token masked", per_row(special[np.clip(labels, 0, info.size - 1)])),
    ]


def validate_examples(root: Path, files: list[str], cfg: ExamplesConfig, info: VocabInfo, dataset: str,
                      progress: Progress | None = None, checked: list[Check] | None = None) -> GateReport:
    """Check every row group of every shard, then the dataset.

    ``checked``: the failures the workers found when they checked each row group before writing it
    (the stage passes them, so shards are not read back); None reads and checks every row group."""
    progress = progress or NullProgress()
    report = GateReport(stage="examples", dataset=dataset)
    if checked is None:
        checked = []
        with progress.task("validating shards", total=len(files), unit="shards") as bar:
            for name in files:
                pf = pq.ParquetFile(root / name)
                for i in range(pf.num_row_groups):
                    checked += check_examples_table(pf.read_row_group(i), cfg, info, f"{name} row group {i}")
                bar.advance(1)
    report.checks += checked
    failures = len(checked)
    if cfg.objective != "mlm":
        failures += sum(_check_shard_balance(report, root / name, name, cfg) for name in files)
    if not failures:
        report.add("layout", True, observed=f"{len(files)} shards",
                   detail="lengths, [CLS]/[SEP] layout, segments, labels and masks on every row group")
    _check_dataset(report, root, files, cfg)
    return report


def check_examples_table(table: pyarrow.Table, cfg: ExamplesConfig, info: VocabInfo, where: str) -> list[Check]:
    """Column types (pandera) and the layout rules (numpy) of one row group; a failed check per rule."""
    model = NSPRow if cfg.objective != "mlm" else ExampleRow
    failures = []
    try:
        model.validate(pl.from_arrow(table.select([c for c in table.column_names
                                                   if c in model.to_schema().columns])), lazy=True)
    except pandera.errors.SchemaErrors as exc:
        for (check, column), group in exc.failure_cases.group_by(["check", "column"], maintain_order=True):
            failures.append(Check(name=f"schema: {column} {check}", passed=False, observed=f"{group.height} rows",
                                  expected="0 rows", where=where))
    for check, count, example in _check_layout(table, cfg, info):
        failures.append(Check(name=check, passed=False, observed=f"{count} rows", expected="0 rows", where=where,
                              detail=example))
    return failures


def _check_shard_balance(report: GateReport, path: Path, name: str, cfg: ExamplesConfig) -> int:
    labels = pq.read_table(path, columns=["next_sentence_label"]).column(0).to_numpy()
    # a shard's share is noisy when it is small: allow four standard deviations of a fair coin
    tolerance = max(cfg.max_label_imbalance, 4 * 0.5 / math.sqrt(max(len(labels), 1)))
    share = float(labels.mean()) if len(labels) else 0.5
    if abs(share - 0.5) <= tolerance:
        return 0
    report.add(f"{cfg.objective} label balance per shard", False, observed=round(share, 4),
               expected=f"0.5 +- {tolerance:.3f}", where=name)
    return 1


def _check_dataset(report: GateReport, root: Path, files: list[str], cfg: ExamplesConfig) -> None:
    import duckdb  # here, not at the top: worker processes import this module and never need it

    split_files = {s: [str(root / f) for f in files if f.startswith(f"split={s}/")] for s in ("train", "validation")}
    for split, paths in split_files.items():
        report.add(f"{split} split has examples", bool(paths), observed=len(paths), expected="> 0 shards",
                   detail="" if paths else "the corpus is too small for this split; raise validation_fraction "
                   "or ingest more text")
    if not all(split_files.values()):
        return
    with duckdb.connect() as con:
        (both,) = con.execute("SELECT count(*) FROM (SELECT DISTINCT doc_id FROM read_parquet(?) "
                              "INTERSECT SELECT DISTINCT doc_id FROM read_parquet(?))",
                              [split_files["train"], split_files["validation"]]).fetchall()[0]
    report.add("no document in both splits", both == 0, observed=both, expected=0)


def add_statistical_checks(report: GateReport, stats: dict, cfg: ExamplesConfig) -> None:
    """Dataset-level label balance and (static) mask rate and 80/10/10, from the workers' counts."""
    stats = {split: stats[split] for split in ("train", "validation")}
    total = sum(s["instances"] for s in stats.values())
    if cfg.objective != "mlm" and total:
        share = sum(s["labels_one"] for s in stats.values()) / total
        report.add(f"{cfg.objective} label balance", abs(share - 0.5) <= cfg.max_label_imbalance,
                   observed=round(share, 4), expected=f"0.5 +- {cfg.max_label_imbalance}")
    if cfg.masking == "static":
        masked = sum(s["masked"] for s in stats.values())
        maskable = sum(s["maskable"] for s in stats.values())
        rate = masked / maskable if maskable else 0.0
        target, why = cfg.mask_prob, ""
        if cfg.max_predictions_per_seq is not None:  # a cap set by hand can bind: expect what it allows
            budget = sum(s["mask_budget"] for s in stats.values())
            target = budget / maskable if maskable else 0.0
            why = f" (mask_prob {cfg.mask_prob} capped at {cfg.max_predictions_per_seq} per example)"
        report.add("mask rate over maskable tokens", abs(rate - target) <= cfg.mask_rate_tolerance,
                   observed=round(rate, 5), expected=f"{round(target, 5)} +- {cfg.mask_rate_tolerance}{why}")
        if masked:
            as_mask = sum(s["masked_as_mask"] for s in stats.values()) / masked
            kept = sum(s["masked_kept"] for s in stats.values()) / masked
            report.add("80% of masked tokens are [MASK]", abs(as_mask - 0.8) <= 0.015, observed=round(as_mask, 4),
                       expected="0.8 +- 0.015")
            report.add("10% of masked tokens are kept", abs(kept - 0.1) <= 0.015, observed=round(kept, 4),
                       expected="0.1 +- 0.015")
            report.add("10% of masked tokens are random", abs(1 - as_mask - kept - 0.1) <= 0.015,
                       observed=round(1 - as_mask - kept, 4), expected="0.1 +- 0.015")
