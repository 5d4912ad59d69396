"""Masking: hand-pinned choices, the greedy fill against the reference loop, and 15% / 80-10-10 statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.examples.data import PackedInstances
from bertplat.examples.masking import (
    MaskingSpec,
    apply_mask,
    choose_mask_positions,
    greedy_fill,
    mask_instances,
    prediction_budget,
)
from bertplat.examples.packing import create_instances
from tests.examples.corpus import CLS, MASK, SEP, SPECIALS, UNK, VOCAB_SIZE, masking_spec

A, A2, B, C, C2 = 5000, 25000, 6000, 7000, 26000  # A2, C2 are "##" pieces (ids >= 20000)


class PinnedRng:
    """Generator stand-in returning given arrays from ``random`` and ``integers``, in call order."""

    def __init__(self, randoms: list[np.ndarray], integers: list[np.ndarray] = ()) -> None:
        self._randoms, self._integers = list(randoms), list(integers)

    def random(self, size):
        out = np.asarray(self._randoms.pop(0), dtype=float)
        assert out.shape == np.empty(size).shape
        return out

    def integers(self, low, high, size):
        out = np.asarray(self._integers.pop(0))
        assert out.shape == (size,) and np.all((low <= out) & (out < high))
        return out


def reference_greedy(lengths: list[int], budget: int) -> list[bool]:
    """The reference's candidate loop over whole words, on word lengths in shuffled order."""
    taken, count = [], 0
    for n in lengths:
        fits = n > 0 and count < budget and count + n <= budget
        taken.append(fits)
        count += n if fits else 0
    return taken


@pytest.fixture(scope="module")
def nsp_instances(corpus) -> PackedInstances:
    return create_instances(corpus, "nsp", max_seq_length=128, cls_token_id=CLS, sep_token_id=SEP,
                            rng=np.random.default_rng(11))


def masked_stats(original: np.ndarray, masked: np.ndarray, positions: np.ndarray) -> tuple[float, float, float]:
    """Shares of [MASK], unchanged and replaced among the predicted positions."""
    before, after = original[positions], masked[positions]
    return (after == MASK).mean(), (after == before).mean(), ((after != MASK) & (after != before)).mean()


class TestBudget:
    def test_hand_cases(self):
        n = np.array([128, 200, 3, 10, 50, 30])
        # 19.2 -> 19; 30 -> capped at 20; 0.45 -> at least 1; 1.5 -> 2 and 4.5 -> 4 (half to even); 7.5 -> 8
        assert prediction_budget(n, 0.15, 20).tolist() == [19, 20, 1, 2, 8, 4]
        assert prediction_budget(n, 0.15, None).tolist() == [19, 30, 1, 2, 8, 4]


class TestGreedyFill:
    def test_skips_a_word_that_overshoots_and_keeps_looking(self):
        take = greedy_fill(np.array([[2, 3, 1, 1, 0], [1, 1, 1, 1, 1]]), np.array([3, 2]))
        assert take.tolist() == [[True, False, True, False, False], [True, True, False, False, False]]

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.lists(st.integers(0, 5), min_size=6, max_size=6), min_size=1, max_size=8),
           st.data())
    def test_matches_reference_loop(self, lengths, data):
        budget = data.draw(st.lists(st.integers(0, 12), min_size=len(lengths), max_size=len(lengths)))
        take = greedy_fill(np.array(lengths), np.array(budget))
        assert take.tolist() == [reference_greedy(row, b) for row, b in zip(lengths, budget, strict=True)]


class TestChooseAndApply:
    def test_pinned_whole_word_choice(self):
        # [CLS] A ##a ##a B C ##c [SEP]: words at 1-3, 4, 5-6. Keys visit C, A, B: C (2) fits a budget of
        # 3, A (3) would overshoot and is skipped, B (1) fills the budget.
        ids = np.array([CLS, A, A2, A2, B, C, C2, SEP])
        spec = masking_spec(whole_word=True)
        keys = np.array([[0.9, 0.2, 0.9, 0.9, 0.3, 0.1, 0.9, 0.9]])
        positions = choose_mask_positions(np.array([0, 8]), ~spec.special_lut[ids], np.array([3]),
                                          PinnedRng([keys]), spec.continuation_lut[ids])
        assert positions.tolist() == [4, 5, 6]

    def test_pinned_single_token_choice(self):
        ids = np.array([CLS, A, A2, A2, B, C, C2, SEP])
        keys = np.array([[0.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.6, 0.0]])  # special cells' keys are ignored
        positions = choose_mask_positions(np.array([0, 8]), ~masking_spec().special_lut[ids], np.array([3]),
                                          PinnedRng([keys]))
        assert positions.tolist() == [3, 4, 5]

    def test_pieces_after_a_special_token_start_their_own_word(self):
        # [CLS] A [SEP] ##a ##a [SEP]: two words, A and "##a ##a" (the reference would glue the pieces to
        # A across the [SEP]). A budget of 2 takes one of them whole, depending on which comes first.
        ids = np.array([CLS, A, SEP, A2, A2, SEP])
        spec = masking_spec(whole_word=True)
        seen = set()
        for seed in range(40):
            positions = choose_mask_positions(np.array([0, 6]), ~spec.special_lut[ids], np.array([2]),
                                              np.random.default_rng(seed), spec.continuation_lut[ids])
            seen.add(tuple(positions.tolist()))
        assert seen == {(1,), (3, 4)}

    def test_apply_mask_80_10_10_pinned(self):
        spec = masking_spec()
        ids = np.array([CLS, A, B, C, SEP])
        rng = PinnedRng([np.array([0.1, 0.85, 0.95])], [np.array([0, 0, 7])])
        masked, labels = apply_mask(ids, np.array([1, 2, 3]), spec, rng)
        assert labels.tolist() == [A, B, C]
        assert masked.tolist() == [CLS, MASK, B, int(spec.replacement_ids[7]), SEP]
        assert ids.tolist() == [CLS, A, B, C, SEP]  # input untouched

    def test_replacements_are_never_special(self):
        spec = MaskingSpec(vocab_size=12, mask_token_id=3, special_token_ids=[0, 1, 2])
        assert spec.replacement_ids.tolist() == list(range(4, 12))


class TestStaticMasking:
    def test_rate_and_80_10_10(self, nsp_instances):
        masked = mask_instances(nsp_instances, masking_spec(), np.random.default_rng(0))
        counts = np.diff(masked.masked_offsets)
        # every row has far more candidates than its budget, so the budget is met exactly
        assert np.array_equal(counts, prediction_budget(nsp_instances.lengths, 0.15, 20))
        assert abs(counts.sum() / nsp_instances.lengths.sum() - 0.15) < 0.005
        rows = np.repeat(nsp_instances.offsets[:-1], counts)
        flat = rows + masked.masked_positions
        mask_share, keep_share, random_share = masked_stats(nsp_instances.input_ids, masked.input_ids, flat)
        assert abs(mask_share - 0.8) < 0.015 and abs(keep_share - 0.1) < 0.015 and abs(random_share - 0.1) < 0.015
        assert np.array_equal(masked.masked_label_ids, nsp_instances.input_ids[flat])
        untouched = np.ones(len(masked.input_ids), bool)
        untouched[flat] = False
        assert np.array_equal(masked.input_ids[untouched], nsp_instances.input_ids[untouched])

    def test_mask_prob_030(self, nsp_instances):
        masked = mask_instances(nsp_instances, masking_spec(mask_prob=0.3, max_predictions=None),
                                np.random.default_rng(1))
        assert abs(np.diff(masked.masked_offsets).sum() / nsp_instances.lengths.sum() - 0.3) < 0.005

    def test_positions_sorted_and_within_rows(self, nsp_instances):
        masked = mask_instances(nsp_instances, masking_spec(), np.random.default_rng(2))
        for i in range(0, len(masked), 97):
            p = masked.masked_positions[masked.masked_offsets[i] : masked.masked_offsets[i + 1]]
            assert np.all(np.diff(p) > 0) and p.min() >= 1 and p.max() < nsp_instances.lengths[i] - 1

    def test_special_tokens_are_never_masked_or_inserted(self, corpus):
        # sprinkle [UNK]s into the text: they are special, so they must survive untouched
        ids = corpus.token_ids.copy()
        ids[::7] = UNK
        docs = type(corpus)(ids, corpus.sentence_offsets, corpus.doc_offsets, corpus.doc_ids)
        inst = create_instances(docs, "mlm", max_seq_length=64, cls_token_id=CLS, sep_token_id=SEP, rng=None)
        masked = mask_instances(inst, masking_spec(mask_prob=0.5, max_predictions=None), np.random.default_rng(3))
        assert not np.isin(masked.masked_label_ids, SPECIALS).any()
        is_special = np.isin(inst.input_ids, SPECIALS)
        assert np.array_equal(masked.input_ids[is_special], inst.input_ids[is_special])
        changed = masked.input_ids != inst.input_ids
        assert not np.isin(masked.input_ids[changed], [s for s in SPECIALS if s != MASK]).any()

    def test_max_predictions_is_respected(self, nsp_instances):
        for whole_word in (False, True):
            spec = masking_spec(mask_prob=0.5, max_predictions=7, whole_word=whole_word)
            masked = mask_instances(nsp_instances, spec, np.random.default_rng(4))
            assert np.diff(masked.masked_offsets).max() == 7

    def test_whole_words_are_masked_together(self, nsp_instances):
        spec = masking_spec(whole_word=True)
        masked = mask_instances(nsp_instances, spec, np.random.default_rng(5))
        is_masked = np.zeros(len(masked.input_ids), bool)
        is_masked[np.repeat(nsp_instances.offsets[:-1], np.diff(masked.masked_offsets)) + masked.masked_positions] = True
        ids = nsp_instances.input_ids
        continues = spec.continuation_lut[ids][1:] & ~spec.special_lut[ids][:-1] & ~spec.special_lut[ids][1:]
        # a piece and the token before it (same word) agree; words do span masked and unmasked pairs
        assert np.array_equal(is_masked[1:][continues], is_masked[:-1][continues])
        assert is_masked[1:][continues].any() and not is_masked[1:][continues].all()
        rate = is_masked.sum() / len(ids)
        assert 0.14 < rate <= 0.15  # words that would overshoot leave a row a little under budget

    def test_positions_are_uniform_within_rows(self, corpus):
        # full-sentence instances are almost all the same length; each inner position is equally likely
        inst = create_instances(corpus, "mlm", max_seq_length=32, cls_token_id=CLS, sep_token_id=SEP, rng=None)
        masked = mask_instances(inst, masking_spec(), np.random.default_rng(6))
        full = np.flatnonzero((inst.lengths == 32) & (np.diff(masked.masked_offsets) == 5))
        # rows with no inner [SEP] (no document start inside): 30 candidate positions, 5 chosen
        per_position = np.zeros(32)
        n_rows = 0
        for i in full:
            row = inst.input_ids[inst.offsets[i] : inst.offsets[i + 1]]
            if (row == SEP).sum() == 1:
                n_rows += 1
                per_position[masked.masked_positions[masked.masked_offsets[i] : masked.masked_offsets[i + 1]]] += 1
        rate = per_position[1:31] / n_rows
        assert n_rows > 3000
        assert np.abs(rate - 5 / 30).max() < 0.03 and per_position[0] == per_position[31] == 0

    def test_already_masked_instances_are_refused(self, nsp_instances):
        masked = mask_instances(nsp_instances, masking_spec(), np.random.default_rng(0))
        with pytest.raises(ValueError, match="already masked"):
            mask_instances(masked, masking_spec(), np.random.default_rng(0))

    def test_ids_outside_the_vocabulary_are_explained(self, nsp_instances):
        with pytest.raises(ValueError, match="vocab_size"):
            mask_instances(nsp_instances, masking_spec(vocab_size=1000, continuation_lut=None),
                           np.random.default_rng(0))


def test_whole_word_needs_a_continuation_table():
    with pytest.raises(ValueError, match="continuation_lut"):
        MaskingSpec(vocab_size=VOCAB_SIZE, mask_token_id=MASK, special_token_ids=SPECIALS, whole_word=True)
