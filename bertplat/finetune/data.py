"""A tasks dataset version as model features per split, batches, and model outputs decoded back into
predictions and metrics.

:class:`TaskData` reads the version's one table (column ``split``) and its manifest (task type, labels,
tagging scheme, metrics). :func:`build_split` turns one split's rows into features with
:mod:`bertplat.finetune.features`; :func:`make_batch` pads the rows of one planned batch;
:func:`decode_split` turns the collected outputs into per-example predictions (label, value, tags or
answer span, with a confidence) and the spec's metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer

from bertplat.finetune.batching import pad_batch, pad_labels
from bertplat.finetune.config import FinetuneConfig
from bertplat.finetune.features import (
    IGNORE,
    Answer,
    QAFeatures,
    WordFeatures,
    apply_null_threshold,
    best_answers,
    encode_qa,
    encode_sequences,
    encode_words,
    special_ids,
    tune_null_threshold,
    word_predictions,
)
from bertplat.lake import DatasetHandle, Lake, read_manifest
from bertplat.metrics import compute_metrics, squad_f1
from bertplat.model.heads import HeadConfig

SEQUENCE_TASKS = ("classification", "pair_classification", "regression")


@dataclass
class TaskData:
    """One tasks dataset version: its rows and what its manifest says about the task."""

    handle: DatasetHandle
    task_type: str
    labels: list[str] | None
    metrics: list[str]
    scheme: str | None
    splits: list[str]
    table: pa.Table

    @classmethod
    def open(cls, handle: DatasetHandle, lake: Lake | None = None) -> TaskData:
        if handle.kind != "tasks":
            raise ValueError(f"{handle.ref()} is a {handle.kind} dataset; fine-tuning needs a tasks dataset "
                             "(bertplat tasks import ...)")
        m = read_manifest(handle)
        table = pq.read_table(sorted(handle.path.glob("part-*.parquet")))
        return cls(handle, m["task_type"], m.get("labels"), list(m.get("metrics") or []), m.get("tagging_scheme"),
                   list(m.get("splits") or []), table)

    def rows(self, split: str) -> list[dict[str, Any]]:
        if split not in self.splits:
            raise ValueError(f"task {self.handle.ref()} has no split {split!r}; its splits are {self.splits}")
        import pyarrow.compute as pc

        return self.table.filter(pc.equal(self.table["split"], split)).to_pylist()

    def labelled(self, split: str) -> bool:
        import pyarrow.compute as pc

        sub = self.table.filter(pc.equal(self.table["split"], split))
        return sub.num_rows > 0 and bool(pc.all(sub["labelled"]).as_py())

    def head(self, classifier_dropout: float | None = None) -> HeadConfig:
        """The head this task needs."""
        if self.task_type == "regression":
            return HeadConfig("sequence_classification", num_labels=1, problem_type="regression",
                              classifier_dropout=classifier_dropout)
        if self.task_type == "extractive_qa":
            return HeadConfig("span_extraction", num_labels=2)
        task = "token_classification" if self.task_type == "token_classification" else "sequence_classification"
        labels = tuple(self.labels or ())
        return HeadConfig(task, num_labels=len(labels), labels=labels, classifier_dropout=classifier_dropout)

    def default_dev_split(self) -> str:
        for s in ("validation", "dev", "valid"):
            if s in self.splits:
                return s
        raise ValueError(f"task {self.handle.ref()} has no validation or dev split (splits: {self.splits}); name "
                         "the split to evaluate on with dev_split")


@dataclass
class SplitData:
    """Features of one split. Feature rows are examples, except in QA where they are windows."""

    name: str
    task_type: str
    rows: list[dict[str, Any]]
    labelled: bool
    input_ids: list[np.ndarray]
    segment_a_len: np.ndarray | None
    targets: Any = None  # (N,) label ids / float targets, list of (T,) token labels, or (start, end) arrays
    words: WordFeatures | None = None
    qa: QAFeatures | None = None
    pad_id: int = 0
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.input_ids)


def build_split(data: TaskData, split: str, tok: Tokenizer, cfg: FinetuneConfig) -> SplitData:
    """Features of ``split`` with the model's tokenizer; targets only when the split is labelled."""
    rows = data.rows(split)
    labelled = data.labelled(split)
    pad = special_ids(tok).pad
    t = data.task_type
    out = SplitData(split, t, rows, labelled, [], None, pad_id=pad)
    if t in SEQUENCE_TASKS:
        pairs = [r["text_pair"] or "" for r in rows] if t != "classification" else None
        f = encode_sequences(tok, [r["text"] or "" for r in rows], pairs, cfg.max_length)
        out.input_ids, out.segment_a_len = f.input_ids, f.segment_a_len
        if labelled:
            out.targets = (np.asarray([r["target"] for r in rows], np.float32) if t == "regression"
                           else np.asarray([r["label_id"] for r in rows], np.int64))
    elif t == "token_classification":
        words = [list(r["tokens"] or []) for r in rows]
        f = encode_words(tok, words, [r["tag_ids"] for r in rows] if labelled else None, cfg.max_length)
        out.input_ids, out.words, out.targets = f.input_ids, f, f.labels
    elif t == "extractive_qa":
        starts = texts = None
        if labelled:
            starts = [(r["answer_starts"] or [None])[0] if not r["is_impossible"] else None for r in rows]
            texts = [(r["answer_texts"] or [None])[0] if not r["is_impossible"] else None for r in rows]
        f = encode_qa(tok, [r["question"] for r in rows], [r["context"] for r in rows], cfg.max_length,
                      cfg.doc_stride, cfg.max_query_length, starts, texts)
        out.input_ids, out.segment_a_len, out.qa = f.input_ids, f.segment_a_len, f
        if labelled:
            out.targets = (f.start_positions, f.end_positions)
    else:
        raise ValueError(f"unknown task type {t!r}")
    out.lengths = np.fromiter((len(x) for x in out.input_ids), np.int64, len(out.input_ids))
    return out


def make_batch(split: SplitData, idx: np.ndarray, with_targets: bool = True) -> dict[str, torch.Tensor]:
    """The padded inputs of feature rows ``idx`` (+ their targets), and ``rows``: which rows they are."""
    seg = split.segment_a_len[idx] if split.segment_a_len is not None else None
    batch = pad_batch([split.input_ids[i] for i in idx], seg, split.pad_id)
    if with_targets and split.targets is not None:
        t = split.task_type
        if t in SEQUENCE_TASKS:
            batch["labels"] = torch.from_numpy(split.targets[idx])
        elif t == "token_classification":
            batch["labels"] = pad_labels([split.targets[i] for i in idx], batch["input_ids"].shape[1], IGNORE)
        else:
            s, e = split.targets
            batch["start_positions"] = torch.from_numpy(s[idx])
            batch["end_positions"] = torch.from_numpy(e[idx])
    batch["rows"] = torch.from_numpy(np.asarray(idx, np.int64))
    return batch


# ---- outputs -> predictions and metrics ---------------------------------------------------------
@dataclass
class Decoded:
    """Per-example predictions of one split, and its metrics when it is labelled."""

    split: str
    records: list[dict[str, Any]]  # rows of the predictions table
    metrics: dict[str, float]
    null_threshold: float | None = None


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _record(row: dict[str, Any], split: str, text: str | None, gold: str | None, pred: str, conf: float | None,
            **extra: Any) -> dict[str, Any]:
    rec = {"id": row["id"], "split": split, "text": text, "text_pair": row.get("text_pair"), "gold": gold,
           "predicted": pred, "correct": None if gold is None else gold == pred,
           "confidence": None if conf is None or not math.isfinite(conf) else float(conf),
           "score": None, "tokens": None, "gold_tags": None, "pred_tags": None, "answer_start": None}
    rec.update(extra)
    return rec


def decode_split(data: TaskData, split: SplitData, outputs: dict[int, Any], metric_names: list[str] | None = None,
                 null_threshold: float | None = None, max_answer_length: int = 30, n_best: int = 20) -> Decoded:
    """``outputs``: feature row -> logits (sequence: (C,); token: (T, C); QA: (start (T,), end (T,)))."""
    names = metric_names or data.metrics
    t, rows, labelled = split.task_type, split.rows, split.labelled
    labels = data.labels or []
    records, kwargs = [], {}
    threshold = null_threshold
    if t in ("classification", "pair_classification"):
        logits = np.stack([outputs[i] for i in range(len(rows))]) if rows else np.zeros((0, len(labels)))
        probs = _softmax(logits.astype(np.float64))
        pred = probs.argmax(-1)
        for i, r in enumerate(rows):
            records.append(_record(r, split.name, r["text"], r["label"] if labelled else None, labels[pred[i]],
                                   probs[i, pred[i]]))
        if labelled:
            kwargs = {"gold": [r["label_id"] for r in rows], "pred": pred.tolist()}
    elif t == "regression":
        values = [float(np.asarray(outputs[i]).reshape(-1)[0]) for i in range(len(rows))]
        for r, v in zip(rows, values):
            gold = None if not labelled else f"{r['target']:.4g}"
            records.append(_record(r, split.name, r["text"], gold, f"{v:.4g}", None, score=v, correct=None))
        if labelled:
            kwargs = {"gold": [r["target"] for r in rows], "pred": values}
    elif t == "token_classification":
        outside = labels.index("O") if "O" in labels else 0
        w = split.words
        gold_tags, pred_tags = [], []
        for i, r in enumerate(rows):
            logit = np.asarray(outputs[i], np.float64)
            probs = _softmax(logit)
            tok_pred = probs.argmax(-1)
            n = int(w.n_words[i])
            ids = word_predictions(w.word_index[i][: len(tok_pred)], tok_pred, n, outside)
            conf_tok = probs.max(-1)
            mask = w.word_index[i][: len(tok_pred)] >= 0
            conf = float(conf_tok[mask].mean()) if mask.any() else None
            tags = [labels[j] for j in ids]
            pred_tags.append(tags)
            gold = list(r["tags"]) if labelled else None
            gold_tags.append(gold)
            records.append(_record(r, split.name, " ".join(r["tokens"] or []), " ".join(gold) if gold else
                                   (None if gold is None else ""), " ".join(tags), conf, tokens=list(r["tokens"]),
                                   gold_tags=gold, pred_tags=tags))
        if labelled:
            kwargs = {"gold_tags": gold_tags, "pred_tags": pred_tags, "scheme": data.scheme or "iob2"}
    else:  # extractive QA
        qa = split.qa
        contexts = [r["context"] for r in rows]
        starts = [outputs[f][0] for f in range(len(qa))]
        ends = [outputs[f][1] for f in range(len(qa))]
        answers: list[Answer] = best_answers(qa, contexts, starts, ends, n_best, max_answer_length)
        v2 = any(bool(r.get("is_impossible")) for r in rows)
        texts = [a.text for a in answers]
        if labelled and v2 and threshold is None:
            golds_all = [r["answer_texts"] or [] for r in rows]
            f1s = [squad_f1(a.text, gs) for a, gs in zip(answers, golds_all)]
            threshold = tune_null_threshold(answers, f1s, [bool(gs) for gs in golds_all])
        if threshold is not None:
            texts = apply_null_threshold(answers, threshold)
        for r, a, text in zip(rows, answers, texts):
            gold = (r["answer_texts"] or [""])[0] if labelled else None
            records.append(_record(r, split.name, r["question"], gold, text, None, score=a.score if text else None,
                                   answer_start=a.start_char if text else -1,
                                   correct=None if gold is None else text in (r["answer_texts"] or [""])))
        if labelled:
            kwargs = {"predictions": {r["id"]: text for r, text in zip(rows, texts)},
                      "golds": {r["id"]: list(r["answer_texts"] or []) for r in rows}}
    metrics = compute_metrics(names, **kwargs) if labelled and rows else {}
    return Decoded(split.name, records, metrics, threshold if t == "extractive_qa" else None)


def baseline_metrics(data: TaskData, train: SplitData, dev: SplitData, metric_names: list[str]) -> dict[str, float]:
    """What a model that learnt nothing from the text scores on dev: the train split's most frequent label
    for every example (regression: the train mean). NER and QA: 0 (no entity, no answer, by the gate's rule)."""
    t = data.task_type
    if t in ("classification", "pair_classification") and train.targets is not None:
        majority = int(np.bincount(train.targets, minlength=len(data.labels or [])).argmax())
        out = compute_metrics(metric_names, gold=[r["label_id"] for r in dev.rows], pred=[majority] * len(dev.rows))
    elif t == "regression" and train.targets is not None:
        mean = float(np.mean(train.targets))
        # a constant has no correlation: NaN, which counts as 0
        with np.errstate(all="ignore"):
            out = compute_metrics(metric_names, gold=[r["target"] for r in dev.rows], pred=[mean] * len(dev.rows))
    else:
        return {}
    return {k: (0.0 if not math.isfinite(v) else v) for k, v in out.items()}


PREDICTIONS_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("text", pa.string()),  # the text, the tokens joined by spaces, or the question
    pa.field("text_pair", pa.string()),
    pa.field("gold", pa.string()),  # label, target, tags joined, or the first gold answer; null when unlabelled
    pa.field("predicted", pa.string()),
    pa.field("correct", pa.bool_()),
    pa.field("confidence", pa.float64()),  # max softmax (NER: mean over words); null for regression and QA
    pa.field("score", pa.float64()),  # regression: the value; QA: the span's start + end logit
    pa.field("tokens", pa.list_(pa.string())),
    pa.field("gold_tags", pa.list_(pa.string())),
    pa.field("pred_tags", pa.list_(pa.string())),
    pa.field("answer_start", pa.int32()),  # QA: character offset of the predicted span in the context, -1: none
])
