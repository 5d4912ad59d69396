"""Collators: padding layout, labels, exact resume of the mask stream, and masking statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertplat.examples.collator import IGNORE_INDEX, MLMCollator, StaticCollator
from bertplat.examples.masking import mask_instances
from bertplat.examples.packing import create_instances
from tests.examples.corpus import (
    CLS,
    CONTINUATION_LUT,
    MASK,
    PAD,
    SEP,
    SPECIALS,
    UNK,
    VOCAB_SIZE,
    masking_spec,
)


def collator(**kwargs) -> MLMCollator:
    return MLMCollator(vocab_size=VOCAB_SIZE, mask_token_id=MASK, pad_token_id=PAD,
                       special_token_ids=(UNK, CLS, SEP), **kwargs)


def example(body_a: list[int], body_b: list[int] | None = None, label: int | None = None) -> dict:
    ids = [CLS, *body_a, SEP] + ([] if body_b is None else [*body_b, SEP])
    out = {"input_ids": np.array(ids, dtype=np.int32), "segment_a_len": len(body_a) + 2}
    if label is not None:
        out["next_sentence_label"] = label
    return out


@pytest.fixture(scope="module")
def pair_examples(corpus) -> list[dict]:
    inst = create_instances(corpus, "nsp", max_seq_length=128, cls_token_id=CLS, sep_token_id=SEP,
                            rng=np.random.default_rng(21))
    return [inst.instance(i) for i in range(len(inst))]


def batched(examples: list[dict], size: int):
    for start in range(0, len(examples), size):
        yield examples[start : start + size]


class TestLayout:
    def test_padding_attention_and_token_types(self):
        batch = [example([1001, 1002], [1003], label=1), example([1004] * 9, [1005] * 2, label=0)]
        out = collator(seed=0)(batch)
        assert set(out) == {"input_ids", "attention_mask", "token_type_ids", "labels", "next_sentence_label"}
        assert all(t.dtype == torch.int64 for t in out.values())
        assert out["input_ids"].shape == (2, 16)  # longest is 14 tokens, padded to a multiple of 8
        assert out["attention_mask"].sum(1).tolist() == [6, 14]
        assert out["attention_mask"][0].tolist() == [1] * 6 + [0] * 10
        # [CLS] a a [SEP] | b [SEP]: type 0 up to segment_a_len, 1 after, 0 on padding
        assert out["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1] + [0] * 10
        assert out["token_type_ids"][1].tolist() == [0] * 11 + [1] * 3 + [0] * 2
        assert out["input_ids"][0, 6:].eq(PAD).all() and out["labels"][0, 6:].eq(IGNORE_INDEX).all()
        assert out["next_sentence_label"].tolist() == [1, 0]

    def test_labels_only_at_masked_positions(self, pair_examples):
        batch = pair_examples[:64]
        out = collator(seed=1)(batch)
        for row, ex in enumerate(batch):
            ids = torch.from_numpy(ex["input_ids"].astype(np.int64))
            n = len(ids)
            labels, inputs = out["labels"][row], out["input_ids"][row]
            predicted = labels != IGNORE_INDEX
            assert predicted[:n].sum() >= 1 and not predicted[n:].any()
            assert torch.equal(labels[predicted], ids[predicted[:n]])
            assert torch.equal(inputs[:n][~predicted[:n]], ids[~predicted[:n]])  # the rest is untouched
            assert not torch.isin(ids[predicted[:n]], torch.tensor(SPECIALS)).any()

    def test_single_segment_examples_and_mixing(self):
        out = collator(pad_to_multiple_of=1)([{"input_ids": np.array([CLS, 1001, 1002, SEP])}])
        assert out["input_ids"].shape == (1, 4) and "next_sentence_label" not in out
        assert not out["token_type_ids"].any()
        with pytest.raises(ValueError, match="lack next_sentence_label"):
            collator()([example([1001], [1002], label=0), example([1003])])
        with pytest.raises(ValueError, match="empty batch"):
            collator()([])


class TestMaskStream:
    def test_state_dict_round_trip_replays_the_same_masks(self, pair_examples):
        batch = pair_examples[:32]
        first = collator(seed=3)
        first(batch)
        state = first.state_dict()
        expected = [first(batch)["input_ids"], first(batch)["input_ids"]]
        resumed = collator(seed=999)
        resumed.load_state_dict(state)
        assert all(torch.equal(resumed(batch)["input_ids"], e) for e in expected)
        first.load_state_dict(state)
        assert torch.equal(first(batch)["input_ids"], expected[0])

    def test_seeds(self, pair_examples):
        batch = pair_examples[:32]
        a, b, c = collator(seed=5), collator(seed=5), collator(seed=6)
        assert torch.equal(a(batch)["labels"], b(batch)["labels"])
        assert not torch.equal(a(batch)["labels"], c(batch)["labels"])
        a.reseed([5, 0, 1])  # e.g. (seed, rank, worker): a stream of its own
        b.reseed([5, 0, 2])
        assert not torch.equal(a(batch)["labels"], b(batch)["labels"])

    def test_consecutive_batches_get_fresh_masks(self, pair_examples):
        batch, masker = pair_examples[:32], collator(seed=7)
        assert not torch.equal(masker(batch)["labels"], masker(batch)["labels"])


class TestStatistics:
    @pytest.mark.parametrize("mask_prob", [0.15, 0.30])
    def test_rate_over_maskable_tokens_and_80_10_10(self, pair_examples, mask_prob):
        masker = collator(mask_prob=mask_prob, seed=8)
        predicted = maskable = n_mask = n_keep = 0
        for batch in batched(pair_examples[:1200], 64):
            out = masker(batch)
            ids = torch.full_like(out["input_ids"], PAD)
            for row, ex in enumerate(batch):
                ids[row, : len(ex["input_ids"])] = torch.from_numpy(ex["input_ids"].astype(np.int64))
            is_predicted = out["labels"] != IGNORE_INDEX
            predicted += int(is_predicted.sum())
            maskable += int((~torch.isin(ids, torch.tensor(SPECIALS))).sum())
            n_mask += int((out["input_ids"][is_predicted] == MASK).sum())
            n_keep += int((out["input_ids"][is_predicted] == ids[is_predicted]).sum())
        assert maskable > 100_000
        assert abs(predicted / maskable - mask_prob) < 0.005
        assert abs(n_mask / predicted - 0.8) < 0.015 and abs(n_keep / predicted - 0.1) < 0.015
        assert abs((predicted - n_mask - n_keep) / predicted - 0.1) < 0.015

    def test_whole_word(self, pair_examples):
        masker = collator(whole_word=True, continuation_lut=CONTINUATION_LUT, seed=9)
        out = masker(pair_examples[:256])
        predicted = out["labels"] != IGNORE_INDEX
        ids = torch.where(predicted, out["labels"], out["input_ids"])  # the originals
        piece = torch.from_numpy(CONTINUATION_LUT)[ids[:, 1:]] & ~torch.isin(ids[:, :-1], torch.tensor(SPECIALS))
        assert torch.equal(predicted[:, 1:][piece], predicted[:, :-1][piece])
        assert predicted[:, 1:][piece].any()


class TestStaticCollator:
    def test_passes_static_masks_through(self, corpus):
        inst = create_instances(corpus, "sop", max_seq_length=64, cls_token_id=CLS, sep_token_id=SEP,
                                rng=np.random.default_rng(0))
        masked = mask_instances(inst, masking_spec(), np.random.default_rng(1))
        batch = [masked.instance(i) for i in range(16)]
        out = StaticCollator(pad_token_id=PAD)(batch)
        assert out["input_ids"].shape == (16, 64)
        for row, ex in enumerate(batch):
            n = len(ex["input_ids"])
            assert out["input_ids"][row, :n].tolist() == ex["input_ids"].tolist()
            predicted = torch.nonzero(out["labels"][row] != IGNORE_INDEX).flatten()
            assert predicted.tolist() == ex["masked_positions"].tolist()
            assert out["labels"][row, predicted].tolist() == ex["masked_label_ids"].tolist()
        assert out["next_sentence_label"].tolist() == masked.next_sentence_label[:16].tolist()

    def test_unmasked_examples_are_refused(self):
        with pytest.raises(ValueError, match="masked_positions"):
            StaticCollator(pad_token_id=PAD)([example([1001])])
        bad = dict(example([1001]), masked_positions=np.array([5]), masked_label_ids=np.array([1001]))
        with pytest.raises(ValueError, match="outside"):
            StaticCollator(pad_token_id=PAD)([bad])
