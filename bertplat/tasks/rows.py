"""From raw records to table rows: labels to ids, targets to floats, tags checked, answers checked.

Each record becomes a row or a reject (file, line, value, reason, detail). What is checked here, row
by row, is what the issue's gate asks of every example: non-empty text; every label in the declared
list; regression targets finite and within range; as many tags as tokens, each a known tag in a
valid sequence for the scheme; every QA answer inside its context with the text at its offset equal
to the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bertplat.tasks.readers import RawRecord
from bertplat.tasks.schema import TASK_SCHEMA
from bertplat.tasks.spec import TaskSpec

EMPTY_ROW = {f.name: None for f in TASK_SCHEMA}


class Rejected(Exception):
    """A record that cannot be a row; carries the reject's reason, value and detail."""

    def __init__(self, reason: str, value: Any = None, detail: str = ""):
        super().__init__(reason)
        self.reason, self.value, self.detail = reason, None if value is None else str(value)[:200], detail


@dataclass
class RowBuilder:
    """Turns one split's raw records into rows (a builder per task, holding the label index)."""

    spec: TaskSpec

    def __post_init__(self) -> None:
        labels = self.spec.label_list()
        self.label_index = {label: i for i, label in enumerate(labels or [])}
        self.join = self.spec.token_join()

    def build(self, raw: RawRecord, split: str, labelled: bool, default_id: str) -> dict[str, Any]:
        """The row for ``raw``, or :class:`Rejected`."""
        if raw.problem:
            raise Rejected(raw.problem, raw.value, raw.extra.get("detail", ""))
        f = raw.fields
        row = {**EMPTY_ROW, "split": split, "labelled": labelled, "source_file": raw.file,
               "source_line": raw.line, "source_record": raw.record}
        source_id = f.get("id")
        row["id"] = default_id if source_id is None or str(source_id) == "" else str(source_id)
        getattr(self, "_" + self.spec.task_type)(row, f, labelled)
        return row

    # -- per task type ------------------------------------------------------------------------
    def _classification(self, row: dict, f: dict, labelled: bool) -> None:
        row["text"] = _text(f, "text")
        if labelled:
            row["label"], row["label_id"] = self._label(f.get("label"))

    def _pair_classification(self, row: dict, f: dict, labelled: bool) -> None:
        self._classification(row, f, labelled)
        row["text_pair"] = _text(f, "text_pair")

    def _regression(self, row: dict, f: dict, labelled: bool) -> None:
        row["text"] = _text(f, "text")
        if "text_pair" in f:
            row["text_pair"] = _text(f, "text_pair")
        if labelled:
            row["target"] = self._target(f.get("label"))

    def _token_classification(self, row: dict, f: dict, labelled: bool) -> None:
        tokens = _as_list(f.get("tokens"), "tokens")
        if not tokens or any(not isinstance(t, str) or t == "" for t in tokens):
            raise Rejected("empty text", detail="no tokens, or an empty token")
        row["tokens"], row["text"] = tokens, self.join.join(tokens)
        if labelled:
            tags = [str(t) for t in _as_list(f.get("tags"), "tags")]
            if len(tags) != len(tokens):
                raise Rejected("tag count mismatch", f"{len(tags)} tags",
                               f"{len(tokens)} tokens but {len(tags)} tags; each token needs one tag")
            unknown = [t for t in tags if t not in self.label_index]
            if unknown:
                raise Rejected("unknown tag", unknown[0], f"not in the tag list {list(self.label_index)}; add it "
                                                          "to labels / entity_types, or fix the data")
            from bertplat.tasks.tagging import validate_tags

            problems = validate_tags(tags, self.spec.tagging_scheme)
            if problems:
                raise Rejected("invalid tag sequence", " ".join(tags)[:200],
                               f"{self.spec.tagging_scheme}: {problems[0]}")
            row["tags"], row["tag_ids"] = tags, [self.label_index[t] for t in tags]

    def _extractive_qa(self, row: dict, f: dict, labelled: bool) -> None:
        row["question"], row["context"] = _text(f, "question"), _text(f, "context")
        row["title"] = None if f.get("title") is None else str(f["title"])
        impossible = bool(f.get("is_impossible") or False)
        row["is_impossible"] = impossible
        if not labelled:
            return
        answers = [] if impossible else _answers(f)
        if not impossible and not answers:
            raise Rejected("no answer", detail="a labelled question needs at least one answer (SQuAD v2.0: "
                                               "mark it is_impossible)")
        context = row["context"]
        for text, start in answers:
            if not 0 <= start <= len(context) - len(text) or context[start:start + len(text)] != text:
                found = context[max(start, 0):max(start, 0) + len(text)] if 0 <= start < len(context) else ""
                raise Rejected("answer span mismatch", f"{text!r}@{start}",
                               f"context[{start}:{start + len(text)}] is {found!r}, not the answer "
                               f"(context has {len(context)} characters); fix answer_start")
        row["answer_texts"] = [t for t, _ in answers]
        row["answer_starts"] = [s for _, s in answers]

    # -- values -------------------------------------------------------------------------------
    def _label(self, value: Any) -> tuple[str, int]:
        label = _label_string(value)
        if label is None:
            raise Rejected("missing label", detail="a labelled split needs a label on every row (a test split "
                                                   "without labels: set `labelled: false`)")
        label = self.spec.label_map.get(label, label)
        if label not in self.label_index:
            raise Rejected("unknown label", label, f"not in the declared labels {list(self.label_index)}; add "
                                                   "it to labels (or label_map), or fix the data")
        return label, self.label_index[label]

    def _target(self, value: Any) -> float:
        raw = _label_string(value)
        if raw is None:
            raise Rejected("missing target", detail="a labelled regression split needs a number on every row")
        try:
            target = float(raw)
        except ValueError:
            raise Rejected("target not a number", raw) from None
        if not math.isfinite(target):
            raise Rejected("target not finite", raw)
        lo_hi = self.spec.target_range
        if lo_hi is not None and not lo_hi[0] <= target <= lo_hi[1]:
            raise Rejected("target out of range", raw, f"outside target_range [{lo_hi[0]}, {lo_hi[1]}]")
        return target


def _label_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _text(f: dict, name: str) -> str:
    value = f.get(name)
    if value is None or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise Rejected("empty text", None if value is None else repr(value)[:80], f"the {name} is empty")
    return str(value)


def _as_list(value: Any, name: str) -> list:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return list(value)
    if value is None:
        return []
    raise Rejected(f"{name} not a list", repr(value)[:80], f"{name} must be a list or a whitespace-separated string")


def _answers(f: dict) -> list[tuple[str, int]]:
    """SQuAD-style answers from whichever columns the spec mapped; each (text, start)."""
    if "answers" in f:
        value = f["answers"]
        if isinstance(value, dict) and {"text", "answer_start"} <= set(value):
            pairs = list(zip(_as_list(value["text"], "answers.text") if not isinstance(value["text"], str)
                             else [value["text"]], _ints(value["answer_start"])))
        elif isinstance(value, list):
            pairs = []
            for a in value:
                if isinstance(a, (tuple, list)) and len(a) == 2:
                    pairs.append((a[0], a[1]))
                elif isinstance(a, dict) and "text" in a and "answer_start" in a:
                    pairs.append((a["text"], a["answer_start"]))
                else:
                    raise Rejected("bad answers", repr(a)[:80], "each answer is {text, answer_start}")
        else:
            raise Rejected("bad answers", repr(value)[:80], "answers: a list of {text, answer_start}, or "
                                                             "{text: [...], answer_start: [...]}")
    else:
        texts = f.get("answer_texts")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        starts = _ints(f.get("answer_starts"))
        if len(texts) != len(starts):
            raise Rejected("bad answers", f"{len(texts)} texts, {len(starts)} starts",
                           "answer_texts and answer_starts must have the same length")
        pairs = list(zip(texts, starts))
    try:
        return [(str(t), int(s)) for t, s in pairs]
    except (TypeError, ValueError):
        raise Rejected("bad answers", repr(pairs)[:80], "answer_start must be an integer") from None


def _ints(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (int, str)):
        return [value]
    return list(value)
