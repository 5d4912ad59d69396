"""Array containers and segmented-array helpers."""

from __future__ import annotations

import numpy as np
import pytest

from bertplat.examples.data import TokenizedDocs, concatenate_instances, expand_ranges, row_ids
from bertplat.examples.masking import mask_instances
from bertplat.examples.packing import create_instances
from tests.examples.corpus import CLS, SEP, masking_spec


def test_expand_ranges_and_row_ids():
    assert expand_ranges(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist() == [5, 6, 9, 10, 11]
    assert expand_ranges(np.array([], np.int64), np.array([], np.int64)).tolist() == []
    assert row_ids(np.array([0, 2, 2, 5])).tolist() == [0, 0, 2, 2, 2]


def test_from_lists_layout():
    docs = TokenizedDocs.from_lists([[[1, 2], [], [3]], [], [[4, 5, 6]]], doc_ids=["x", "y", "z"])
    assert docs.token_ids.dtype == np.int32 and docs.token_ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert docs.sentence_offsets.tolist() == [0, 2, 2, 3, 6]
    assert docs.doc_offsets.tolist() == [0, 3, 3, 4]
    assert docs.n_docs == 3


@pytest.mark.parametrize(
    ("sentence_offsets", "doc_offsets", "doc_ids", "message"),
    [
        ([0, 2, 4], [0, 2], ["a"], "sentence_offsets must .* end at 3"),
        ([0, 2, 1, 3], [0, 3], ["a"], "non-decreasing; it decreases after index 1"),
        ([0, 1, 3], [0, 1], ["a"], "doc_offsets must .* end at 2"),
        ([0, 1, 3], [0, 2], ["a", "b"], "doc_ids has 2 entries"),
    ],
)
def test_bad_offsets_are_explained(sentence_offsets, doc_offsets, doc_ids, message):
    with pytest.raises(ValueError, match=message):
        TokenizedDocs(np.array([1, 2, 3]), np.array(sentence_offsets), np.array(doc_offsets), doc_ids)


def test_concatenate_instances(corpus_with_gaps):
    def make(seed: int):
        inst = create_instances(corpus_with_gaps, "nsp", max_seq_length=32, cls_token_id=CLS, sep_token_id=SEP,
                                rng=np.random.default_rng(seed))
        return mask_instances(inst, masking_spec(), np.random.default_rng(seed))

    one, two = make(1), make(2)
    both = concatenate_instances([one, two])
    assert len(both) == len(one) + len(two)
    for i, j in ((0, 0), (len(one) - 1, len(one) - 1), (len(one), 0), (len(both) - 1, len(two) - 1)):
        source = one if i < len(one) else two
        got, want = both.instance(i), source.instance(j)
        assert got.keys() == want.keys()
        assert all(np.array_equal(got[k], want[k]) for k in got)
    with pytest.raises(ValueError, match="masked with unmasked"):
        concatenate_instances([one, create_instances(corpus_with_gaps, "nsp", max_seq_length=32, cls_token_id=CLS,
                                                     sep_token_id=SEP, rng=np.random.default_rng(3))])
