"""A test-only reference: the official SQuAD evaluation scripts' logic, restated step by step.

``evaluate_v11`` follows ``evaluate-v1.1.py`` (every question counts; a missing prediction scores
0); ``evaluate_v20`` follows ``evaluate-v2.0.py`` without the no-answer-probability options (gold
answers that normalise to nothing are dropped, an unanswerable question's only answer is '').
Written independently of bertplat.metrics.squad so the two can be compared.
"""

from __future__ import annotations

import collections
import re
import string


def _normalize(s):
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _f1_v11(prediction, ground_truth):
    p, g = _normalize(prediction).split(), _normalize(ground_truth).split()
    common = collections.Counter(p) & collections.Counter(g)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision, recall = 1.0 * num_same / len(p), 1.0 * num_same / len(g)
    return (2 * precision * recall) / (precision + recall)


def evaluate_v11(dataset, predictions):
    f1 = exact = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                golds = [a["text"] for a in qa["answers"]]
                pred = predictions[qa["id"]]
                exact += max(_normalize(pred) == _normalize(g) for g in golds)
                f1 += max(_f1_v11(pred, g) for g in golds)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def _tokens(s):
    return _normalize(s).split() if s else []


def _f1_v20(gold, pred):
    g, p = _tokens(gold), _tokens(pred)
    common = collections.Counter(g) & collections.Counter(p)
    num_same = sum(common.values())
    if len(g) == 0 or len(p) == 0:
        return int(g == p)
    if num_same == 0:
        return 0
    precision, recall = 1.0 * num_same / len(p), 1.0 * num_same / len(g)
    return (2 * precision * recall) / (precision + recall)


def evaluate_v20(dataset, predictions):
    exact, f1 = {}, {}
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                golds = [a["text"] for a in qa["answers"] if _normalize(a["text"])] or [""]
                pred = predictions[qa["id"]]
                exact[qa["id"]] = max(int(_normalize(g) == _normalize(pred)) for g in golds)
                f1[qa["id"]] = max(_f1_v20(g, pred) for g in golds)
    n = len(exact)
    return {"exact_match": 100.0 * sum(exact.values()) / n, "f1": 100.0 * sum(f1.values()) / n}
