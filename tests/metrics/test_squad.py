"""SQuAD EM/F1: the official rules by hand-worked cases, and parity with a port of the scripts."""

from __future__ import annotations

import json
import random

import pytest

from bertplat.metrics import squad_exact, squad_f1, squad_normalize, squad_scores
from tests.metrics.squad_reference import evaluate_v11, evaluate_v20


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  a   cat,\tan owl\nand THE dog!  ", "cat owl and dog"),
        ("theatre anthem", "theatre anthem"),  # articles only as whole words
        ("Denver Broncos.", "denver broncos"),
        ("U.S.A.", "usa"),  # punctuation goes before articles are matched
        ("the-a-an", "theaan"),  # punctuation is deleted, not replaced by a space
        ("Théâtre «Élysée»", "théâtre «élysée»"),  # non-ASCII punctuation stays, lower() is Unicode
        ("北京，中国。", "北京，中国。"),  # Chinese punctuation is not in string.punctuation
        ("", ""),
    ],
)
def test_official_normalisation(text, normalized):
    assert squad_normalize(text) == normalized


def test_exact_match_hand_worked():
    assert squad_exact("the Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert squad_exact("Denver", ["Denver Broncos", "Broncos"]) == 0.0
    assert squad_exact("  Broncos! ", ["Denver Broncos", "Broncos"]) == 1.0


def test_f1_hand_worked_and_max_over_golds():
    # pred 'denver broncos team' vs gold 'denver broncos': p=2/3, r=1 -> f1=0.8
    assert squad_f1("Denver Broncos team", ["Denver Broncos"]) == pytest.approx(0.8)
    # several golds: the best one counts (vs 'broncos': p=1/3, r=1 -> 0.5)
    assert squad_f1("Denver Broncos team", ["Broncos", "the Denver Broncos"]) == pytest.approx(0.8)
    # tokens counted with multiplicity: 'x x y' vs 'x y' shares 2 of 3 predicted tokens
    assert squad_f1("x x y", ["x y"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert squad_f1("nothing shared", ["Denver"]) == 0.0


def test_empty_prediction_and_unanswerable_questions():
    # an empty prediction on an answerable question scores 0
    assert squad_exact("", ["Denver"]) == 0.0 and squad_f1("", ["Denver"]) == 0.0
    # v2.0: no gold answer -> only an empty prediction is right (after normalisation: 'The.' is empty)
    assert squad_exact("", []) == 1.0 and squad_f1("", []) == 1.0
    assert squad_exact("The.", []) == 1.0 and squad_f1("the", []) == 1.0
    assert squad_exact("Denver", []) == 0.0 and squad_f1("Denver", []) == 0.0
    # gold answers that normalise to nothing: v2.0 drops them, v1.1 keeps them (EM 1, F1 0 for '')
    assert squad_exact("", ["the", "."]) == 1.0 and squad_f1("", ["the", "."]) == 1.0
    assert squad_exact("", ["Denver", "."]) == 0.0
    assert squad_exact("", ["Denver", "."], version="1.1") == 1.0
    assert squad_f1("", ["Denver", "."], version="1.1") == 0.0
    with pytest.raises(ValueError, match="version='2.0'"):
        squad_exact("", [], version="1.1")


def test_golds_must_be_a_list():
    with pytest.raises(TypeError, match="list of answer strings"):
        squad_exact("Denver", "Denver")


def test_corpus_scores_in_percent_with_missing_predictions_and_the_v2_breakdown():
    golds = {"q1": ["Denver Broncos"], "q2": ["Carolina Panthers"], "q3": [], "q4": ["Santa Clara"]}
    preds = {"q1": "the Denver Broncos", "q2": "Panthers", "q3": "", "extra": "ignored"}
    s = squad_scores(preds, golds)
    assert s["exact_match"] == pytest.approx(100 * 2 / 4)
    assert s["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert (s["total"], s["missing"]) == (4.0, 1.0)
    assert s["no_answer_exact_match"] == 100.0 and s["no_answer_total"] == 1.0
    assert s["has_answer_exact_match"] == pytest.approx(100 / 3)
    assert "has_answer_f1" not in squad_scores({"q1": "x"}, {"q1": ["x"]})
    with pytest.raises(ValueError, match="no gold"):
        squad_scores({}, {})


def _perturb(rng: random.Random, answer: str, context: str) -> str:
    words = answer.split()
    choice = rng.random()
    if choice < 0.2:
        return answer
    if choice < 0.35:
        return "The " + answer.upper() + "."
    if choice < 0.55 and len(words) > 1:
        return " ".join(words[rng.randint(0, 1):len(words) - rng.randint(0, 1)] or words[:1])
    if choice < 0.7:
        return ""
    c = context.split()
    i = rng.randrange(len(c))
    return " ".join(c[i:i + rng.randint(1, 6)])


@pytest.mark.slow
def test_parity_with_the_official_v11_and_v20_logic_on_squad_dev(shared_data):
    dataset = json.loads((shared_data / "tasks" / "en" / "squad" / "v1.1" / "dev-v1.1.json").read_text())["data"]
    rng = random.Random(0)
    golds, preds = {}, {}
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                golds[qa["id"]] = [a["text"] for a in qa["answers"]]
                preds[qa["id"]] = _perturb(rng, rng.choice(golds[qa["id"]]), paragraph["context"])
    assert len(golds) == 10570
    # three v1.1 dev questions have a gold '.', which normalises to nothing: v1.1 keeps it, so an
    # empty prediction there scores EM 1 (F1 0); v2.0 would drop it. Predict '' for all three.
    dotted = [q for q, gs in golds.items() if not all(squad_normalize(g) for g in gs)]
    assert len(dotted) == 3
    preds.update({q: "" for q in dotted})
    ours = squad_scores(preds, golds)
    assert ours["total"] == 10570 and "no_answer_total" not in ours
    v11, v20 = evaluate_v11(dataset, preds), evaluate_v20(dataset, preds)
    assert ours["exact_match"] == pytest.approx(v11["exact_match"], abs=1e-9)
    assert ours["f1"] == pytest.approx(v11["f1"], abs=1e-9)
    # v2.0's rules differ by exactly those three EM points; ours with version="2.0" follows them
    assert v11["exact_match"] - v20["exact_match"] == pytest.approx(100 * 3 / 10570)
    assert v20["f1"] == pytest.approx(v11["f1"], abs=1e-9)
    as_v2 = squad_scores(preds, golds, version="2.0")
    assert (as_v2["exact_match"], as_v2["f1"]) == pytest.approx((v20["exact_match"], v20["f1"]), abs=1e-9)
    # v1.1 counts a missing prediction as 0; so do we
    dropped = dict(list(preds.items())[100:])
    assert squad_scores(dropped, golds)["exact_match"] == pytest.approx(evaluate_v11(dataset, dropped)["exact_match"])


def test_parity_with_the_official_v20_logic_on_unanswerable_questions():
    rng = random.Random(1)
    vocab = ["the", "a", "Denver", "broncos", "won", "1999", ",", "Super", "Bowl", "."]
    qas, preds = [], {}
    for n in range(500):
        golds = [" ".join(rng.choices(vocab, k=rng.randint(1, 4))) for _ in range(rng.randint(0, 3))]
        qas.append({"id": f"q{n}", "answers": [{"text": g} for g in golds]})
        preds[f"q{n}"] = " ".join(rng.choices(vocab, k=rng.randint(0, 4)))
    dataset = [{"paragraphs": [{"qas": qas}]}]
    ours = squad_scores(preds, {qa["id"]: [a["text"] for a in qa["answers"]] for qa in qas})
    ref = evaluate_v20(dataset, preds)
    assert (ours["exact_match"], ours["f1"]) == pytest.approx((ref["exact_match"], ref["f1"]), abs=1e-9)
    assert ours["no_answer_total"] > 0
