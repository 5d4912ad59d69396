"""SQuAD exact match and F1, as the official ``evaluate-v1.1.py`` and ``evaluate-v2.0.py`` define them.

- Normalisation: lower-case, drop ASCII punctuation (Python's ``string.punctuation``; other
  punctuation such as ``，`` or ``“`` stays), drop the words ``a``, ``an``, ``the``, collapse
  whitespace.
- Exact match: normalised strings equal. F1: over whitespace tokens of the normalised strings, with
  multiplicity (bag of tokens). Each question takes the best score over its gold answers.
- v1.1 and v2.0 differ only where an answer normalises to nothing. v1.1 keeps such gold answers
  (SQuAD v1.1 dev has three questions with a gold ``.``: an empty prediction gets EM 1, F1 0 there)
  and never sees a question without answers. v2.0 drops them; a question left with none is
  unanswerable, and its only right answer is the empty string, so a prediction scores 1 (EM and
  F1) exactly when it normalises to nothing. :func:`squad_scores` picks v2.0 when some question
  has no gold answer, else v1.1 (``version=`` overrides).
- A question with no prediction scores 0 and still counts (v1.1; v2.0's script stops on it).
  Totals are percentages, as the official scripts print them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

Version = Literal["1.1", "2.0"]

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def squad_normalize(text: str) -> str:
    """Lower-case, ASCII punctuation out, articles out, whitespace collapsed (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answerable(golds: Sequence[str]) -> list[str]:
    """The gold answers that survive normalisation (v2.0's rule)."""
    return [g for g in golds if squad_normalize(g)]


def _golds(golds: Sequence[str], version: Version) -> list[str]:
    if isinstance(golds, str):
        raise TypeError("golds is a list of answer strings, not one string")
    if version == "2.0":
        return _answerable(golds) or [""]
    if version != "1.1":
        raise ValueError(f"unknown SQuAD version {version!r}: use '1.1' or '2.0'")
    if not golds:
        raise ValueError("a question without gold answers is SQuAD v2.0's unanswerable kind: use version='2.0'")
    return list(golds)


def _token_f1(pred_norm: str, gold_norm: str, version: Version) -> float:
    pred_tokens, gold_tokens = pred_norm.split(), gold_norm.split()
    if version == "2.0" and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)  # v2.0: a no-answer pair agrees or not
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _score(pred: str, golds: Sequence[str], version: Version) -> tuple[float, float]:
    """(exact, f1) of one question, each string normalised once."""
    norm = squad_normalize(pred)
    gold_norms = [squad_normalize(g) for g in _golds(golds, version)]
    return float(norm in gold_norms), max(_token_f1(norm, g, version) for g in gold_norms)


def squad_exact(pred: str, golds: Sequence[str], version: Version = "2.0") -> float:
    """1.0 when ``pred`` equals some gold answer after normalisation, else 0.0 (v2.0, no golds:
    1.0 iff ``pred`` normalises to nothing)."""
    return _score(pred, golds, version)[0]


def squad_f1(pred: str, golds: Sequence[str], version: Version = "2.0") -> float:
    """The best token F1 of ``pred`` over the gold answers (v2.0, no golds: 1.0 iff pred is empty)."""
    return _score(pred, golds, version)[1]


def _summary(ids: list[str], exact: dict[str, float], f1: dict[str, float], prefix: str) -> dict[str, float]:
    n = len(ids)
    return {
        f"{prefix}exact_match": 100.0 * sum(exact[i] for i in ids) / n if n else 0.0,
        f"{prefix}f1": 100.0 * sum(f1[i] for i in ids) / n if n else 0.0,
        f"{prefix}total": float(n),
    }


def squad_scores(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]],
                 version: Version | None = None) -> dict[str, float]:
    """Corpus EM and F1 in percent over every question in ``golds``, by the rules of ``version``
    (default: 2.0 when some question has no gold answer, else 1.1).

    Returns ``exact_match``, ``f1``, ``total`` and ``missing`` (questions without a prediction);
    by v2.0 rules with some questions unanswerable, also ``has_answer_*`` and ``no_answer_*`` (v2.0's
    HasAns/NoAns breakdown). Predictions for ids not in ``golds`` are ignored, as officially.
    """
    if not golds:
        raise ValueError("no gold questions to score")
    if version is None:
        version = "2.0" if any(len(a) == 0 for a in golds.values()) else "1.1"
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    missing = 0
    for qid, answers in golds.items():
        if qid not in predictions:
            missing += 1
            exact[qid] = f1[qid] = 0.0
            continue
        pred = predictions[qid]
        if not isinstance(pred, str):
            raise TypeError(f"prediction for question {qid!r} is {type(pred).__name__}, not a string")
        exact[qid], f1[qid] = _score(pred, answers, version)
    ids = list(golds)
    out = {**_summary(ids, exact, f1, ""), "missing": float(missing)}
    has_ans = [i for i in ids if _answerable(golds[i])]
    if version == "2.0" and len(has_ans) < len(ids):
        no_ans = [i for i in ids if not _answerable(golds[i])]
        out.update(_summary(has_ans, exact, f1, "has_answer_"))
        out.update(_summary(no_ans, exact, f1, "no_answer_"))
    return out
