"""Entity-level precision, recall and F1 with conlleval semantics, per type and micro-averaged.

An entity counts as correct only when its type, first and last token all match a gold entity
(CoNLL-2000/2003's ``conlleval``). Tags are decoded with :func:`bertplat.tasks.tagging.tags_to_spans`,
leniently as conlleval does, so an ill-formed prediction (``O I-PER``) still yields the entity a
tagger meant; seqeval's default mode computes the same numbers. Sentences are decoded one by one,
so no entity crosses a sentence boundary. Scores are fractions in [0, 1] (conlleval prints
percentages); a 0/0 precision or recall is 0, as in seqeval and scikit-learn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from bertplat.tasks.tagging import normalize_scheme, tags_to_spans


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _entities(sentences: Sequence[Sequence[str]], scheme: str, side: str) -> set[tuple[int, str, int, int]]:
    found = set()
    for n, tags in enumerate(sentences):
        try:
            spans = tags_to_spans(tags, scheme)
        except ValueError as e:
            raise ValueError(f"{side} sentence {n}: {e}") from None
        found.update((n, s.label, s.start, s.end) for s in spans)
    return found


def entity_scores(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]],
                  scheme: str = "iob2") -> dict[str, Any]:
    """Micro precision/recall/F1 over all entities, token accuracy, and conlleval's per-type table.

    Returns ``{"precision", "recall", "f1", "accuracy", "gold_entities", "predicted_entities",
    "correct_entities", "per_type": {TYPE: {"precision", "recall", "f1", "support"}}}``; ``support`` is
    the number of gold entities of the type, and the table lists every type seen in gold or prediction.
    """
    scheme = normalize_scheme(scheme)
    if len(gold_tags) != len(pred_tags):
        raise ValueError(f"gold has {len(gold_tags)} sentences but pred has {len(pred_tags)}")
    tokens = same = 0
    for n, (g, p) in enumerate(zip(gold_tags, pred_tags)):
        if len(g) != len(p):
            raise ValueError(f"sentence {n}: gold has {len(g)} tags but pred has {len(p)}; "
                             "predict one tag per gold token")
        tokens += len(g)
        same += sum(a == b for a, b in zip(g, p))
    gold = _entities(gold_tags, scheme, "gold")
    pred = _entities(pred_tags, scheme, "pred")
    correct = gold & pred
    by_type = {side: Counter(e[1] for e in ents) for side, ents in
               (("gold", gold), ("pred", pred), ("correct", correct))}
    per_type = {
        t: {**_prf(by_type["correct"][t], by_type["pred"][t], by_type["gold"][t]), "support": by_type["gold"][t]}
        for t in sorted(set(by_type["gold"]) | set(by_type["pred"]))
    }
    return {
        **_prf(len(correct), len(pred), len(gold)),
        "accuracy": same / tokens if tokens else 0.0,
        "gold_entities": len(gold),
        "predicted_entities": len(pred),
        "correct_entities": len(correct),
        "per_type": per_type,
    }
