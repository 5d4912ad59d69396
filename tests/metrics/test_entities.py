"""Entity-level scores against seqeval (default mode = conlleval) and hand-worked cases."""

from __future__ import annotations

import random
import warnings

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB1, IOB2, IOBES

from bertplat.metrics import entity_scores
from bertplat.tasks.tagging import Span, convert_tags, spans_to_tags

TYPES = ["PER", "LOC", "ORG"]


def _random_tags(rng: random.Random, n: int, letters: str) -> list[str]:
    """Arbitrary (often ill-formed) sequences over these prefixes and O."""
    return ["O" if rng.random() < 0.4 else f"{rng.choice(letters)}-{rng.choice(TYPES)}" for _ in range(n)]


def _random_spans(rng: random.Random, n: int) -> list[Span]:
    spans, i = [], 0
    while i < n:
        if rng.random() < 0.4:
            end = min(n, i + rng.randint(1, 4))
            spans.append(Span(rng.choice(TYPES), i, end))
            i = end
        else:
            i += 1
    return spans


def _corpus(rng: random.Random, letters: str, valid_scheme: str | None):
    gold, pred = [], []
    for _ in range(rng.randint(1, 12)):
        n = rng.randint(0, 10)
        if valid_scheme:
            g = spans_to_tags(_random_spans(rng, n), n, valid_scheme)
            # a prediction: the gold, with a few tags changed at random (may become ill-formed)
            p = [t if rng.random() < 0.7 else rng.choice(["O", *(f"{c}-{ty}" for c in letters for ty in TYPES)])
                 for t in g]
        else:
            g, p = _random_tags(rng, n, letters), _random_tags(rng, n, letters)
        gold.append(g)
        pred.append(p)
    return gold, pred


def _seqeval(gold, pred, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report(gold, pred, output_dict=True, **kw)
        return (precision_score(gold, pred, **kw), recall_score(gold, pred, **kw), f1_score(gold, pred, **kw),
                report)


def _assert_same_as_seqeval(ours, gold, pred, **kw):
    p, r, f, report = _seqeval(gold, pred, **kw)
    assert (ours["precision"], ours["recall"], ours["f1"]) == pytest.approx((p, r, f), abs=1e-12)
    types = {k: v for k, v in report.items() if k not in ("micro avg", "macro avg", "weighted avg")}
    assert set(ours["per_type"]) == set(types)
    for t, row in types.items():
        mine = ours["per_type"][t]
        assert (mine["precision"], mine["recall"], mine["f1"]) == pytest.approx(
            (row["precision"], row["recall"], row["f1-score"]), abs=1e-12)
        assert mine["support"] == row["support"]


@pytest.mark.parametrize("valid", [True, False])
def test_iob2_scores_match_seqeval_default_mode_on_random_sequences(valid):
    rng = random.Random(11 if valid else 12)
    for _ in range(400):
        gold, pred = _corpus(rng, "BI", "iob2" if valid else None)
        _assert_same_as_seqeval(entity_scores(gold, pred, "iob2"), gold, pred)


def test_iob1_scores_match_seqeval_default_mode_which_is_conlleval():
    rng = random.Random(13)
    for _ in range(400):
        gold, pred = _corpus(rng, "BI", "iob1" if rng.random() < 0.5 else None)
        _assert_same_as_seqeval(entity_scores(gold, pred, "iob1"), gold, pred)


def test_bioes_scores_match_seqeval_default_mode_on_random_sequences():
    rng = random.Random(14)
    for _ in range(400):
        gold, pred = _corpus(rng, "BIES", "bioes" if rng.random() < 0.5 else None)
        _assert_same_as_seqeval(entity_scores(gold, pred, "bioes"), gold, pred)


def test_bmes_scores_match_seqeval_once_m_is_read_as_i():
    rng = random.Random(15)
    for _ in range(400):
        gold, pred = _corpus(rng, "BMES", "bmes" if rng.random() < 0.5 else None)
        as_i = [[t.replace("M-", "I-", 1) if t.startswith("M-") else t for t in s] for s in gold], \
               [[t.replace("M-", "I-", 1) if t.startswith("M-") else t for t in s] for s in pred]
        _assert_same_as_seqeval(entity_scores(gold, pred, "bmes"), *as_i)


def test_valid_sequences_also_match_seqeval_strict_mode():
    rng = random.Random(16)
    for _ in range(200):
        gold, _ = _corpus(rng, "BI", "iob2")
        pred = [spans_to_tags(_random_spans(rng, len(s)), len(s), "iob2") for s in gold]
        _assert_same_as_seqeval(entity_scores(gold, pred, "iob2"), gold, pred, mode="strict", scheme=IOB2)
        g, p = ([convert_tags(s, "iob2", "bioes") for s in x] for x in (gold, pred))
        _assert_same_as_seqeval(entity_scores(g, p, "bioes"), g, p, mode="strict", scheme=IOBES)
        g, p = ([convert_tags(s, "iob2", "iob1") for s in x] for x in (gold, pred))
        _assert_same_as_seqeval(entity_scores(g, p, "iob1"), g, p, mode="strict", scheme=IOB1)


def test_hand_worked_conll_example():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]]
    s = entity_scores(gold, pred)
    # PER right, LOC wrong end, ORG right: 2 of 3 each way
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert s["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_type"]["PER"]["f1"] == 1.0
    assert s["accuracy"] == pytest.approx(6 / 7)
    assert (s["gold_entities"], s["predicted_entities"], s["correct_entities"]) == (3, 3, 2)


def test_ill_formed_prediction_is_decoded_as_conlleval_does():
    # "O I-PER I-PER" is a PER chunk for conlleval; a type switch inside splits the chunk
    gold = [["O", "B-PER", "I-PER", "B-LOC"]]
    pred = [["O", "I-PER", "I-PER", "I-LOC"]]
    assert entity_scores(gold, pred)["f1"] == 1.0


def test_entities_do_not_cross_sentence_boundaries():
    gold = [["O", "B-PER"], ["I-PER", "O"]]
    s = entity_scores(gold, gold)
    assert s["gold_entities"] == 2  # one ends the first sentence, one (ill-formed) opens the second


def test_type_only_in_prediction_appears_with_zero_support_and_empty_prediction_scores_zero():
    s = entity_scores([["B-PER", "O"]], [["O", "B-LOC"]])
    assert s["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    s = entity_scores([["B-PER"]], [["O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    s = entity_scores([["O"]], [["O"]])  # nothing to find, nothing found: 0/0 -> 0 as in seqeval
    assert s["f1"] == 0.0 and s["per_type"] == {}


def test_misaligned_or_foreign_tags_are_refused_with_the_sentence():
    with pytest.raises(ValueError, match="sentence 0: gold has 2 tags but pred has 1"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="2 sentences but pred has 1"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="pred sentence 0: token 1.*'E-PER'.*iob2"):
        entity_scores([["O", "O"]], [["B-PER", "E-PER"]], "iob2")


def test_msra_dev_gold_against_itself_and_shared_bmes_counts(shared_data):
    path = shared_data / "tasks" / "zh" / "msra_ner" / "dev.ner"
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2:
            current.append(parts[1])
        elif current:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    s = entity_scores(sentences, sentences, "bmes")
    assert s["f1"] == 1.0
    # B- plus S- tag counts in the file: every entity starts with exactly one of them
    n_b_s = sum(t[0] in "BS" for sent in sentences for t in sent)
    assert s["gold_entities"] == n_b_s
