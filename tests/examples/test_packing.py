"""Instance creation: hand-computed instances, truncation against the reference loop, and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.examples.data import PackedInstances, TokenizedDocs
from bertplat.examples.packing import create_instances, truncate_seq_pair, truncated_lengths
from tests.examples.conftest import ScriptedRng
from tests.examples.corpus import CLS, SEP, make_corpus


def pack(docs: TokenizedDocs, objective: str, rng, max_seq_length: int = 128, **kwargs) -> PackedInstances:
    return create_instances(docs, objective, max_seq_length=max_seq_length, cls_token_id=CLS,
                            sep_token_id=SEP, rng=rng, **kwargs)


def rows(inst: PackedInstances) -> list[list[int]]:
    return [inst.input_ids[a:b].tolist() for a, b in zip(inst.offsets[:-1], inst.offsets[1:], strict=True)]


def doc_token_bounds(docs: TokenizedDocs) -> tuple[np.ndarray, np.ndarray]:
    """(first token, end token) of every document."""
    so, do = docs.sentence_offsets, docs.doc_offsets
    return so[do[:-1]], so[do[1:]]


def reference_truncated_lengths(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """The reference truncate_seq_pair loop, on lengths only."""
    while len_a + len_b > max_num_tokens:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def check_pair_invariants(docs: TokenizedDocs, inst: PackedInstances, max_seq_length: int) -> None:
    """Layout [CLS] A [SEP] B [SEP], spans copied from the source documents, lengths within bounds."""
    doc_start, doc_end = doc_token_bounds(docs)
    for i, row in enumerate(rows(inst)):
        seg_a = int(inst.segment_a_len[i])
        len_a, len_b = seg_a - 2, len(row) - seg_a - 1
        assert len(row) <= max_seq_length and len_a >= 1 and len_b >= 1
        assert row[0] == CLS and row.count(CLS) == 1
        assert row.count(SEP) == 2 and row[seg_a - 1] == SEP and row[-1] == SEP
        a, b = int(inst.a_token_start[i]), int(inst.b_token_start[i])
        assert row[1 : seg_a - 1] == docs.token_ids[a : a + len_a].tolist()
        assert row[seg_a:-1] == docs.token_ids[b : b + len_b].tolist()
        d, bd = inst.doc_index[i], inst.b_doc_index[i]
        assert doc_start[d] <= a and a + len_a <= doc_end[d]
        assert doc_start[bd] <= b and b + len_b <= doc_end[bd]


def check_full_sentence_invariants(docs: TokenizedDocs, inst: PackedInstances, max_seq_length: int) -> None:
    """[CLS] tokens [SEP] with one [SEP] before every document start inside; all tokens, in order, once."""
    assert inst.next_sentence_label is None
    assert np.array_equal(inst.segment_a_len, inst.lengths)
    doc_start, doc_end = doc_token_bounds(docs)
    opens = np.unique(doc_start[doc_end > doc_start])
    for i, row in enumerate(rows(inst)):
        assert len(row) <= max_seq_length and row[0] == CLS and row[-1] == SEP and row.count(CLS) == 1
        t0 = int(inst.a_token_start[i])
        n_tokens = len(row) - 1 - row.count(SEP)
        inside = np.count_nonzero((opens > t0) & (opens < t0 + n_tokens))
        assert row.count(SEP) == 1 + inside
        assert doc_start[inst.doc_index[i]] <= t0 < doc_end[inst.doc_index[i]]
    body = inst.input_ids[(inst.input_ids != CLS) & (inst.input_ids != SEP)]
    assert np.array_equal(body, docs.token_ids)


class TestTruncation:
    @pytest.mark.parametrize(
        ("len_a", "len_b", "max_num_tokens", "expected"),
        [
            (5, 3, 6, (3, 3)),  # the longer A shrinks to B
            (3, 5, 6, (3, 3)),
            (4, 4, 5, (3, 2)),  # a tie cuts B: (4, 3), (3, 3), (3, 2)
            (4, 4, 4, (2, 2)),  # even budget: equal halves
            (10, 1, 4, (3, 1)),
            (1, 10, 4, (1, 3)),
            (2, 3, 7, (2, 3)),  # fits: untouched
        ],
    )
    def test_hand_cases(self, len_a, len_b, max_num_tokens, expected):
        new_a, new_b = truncated_lengths(np.array([len_a]), np.array([len_b]), max_num_tokens)
        assert (int(new_a[0]), int(new_b[0])) == expected

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 300)), min_size=1, max_size=20), st.integers(2, 260))
    def test_matches_reference_loop(self, pairs, max_num_tokens):
        len_a, len_b = np.array(pairs).T
        new_a, new_b = truncated_lengths(len_a, len_b, max_num_tokens)
        expected = [reference_truncated_lengths(a, b, max_num_tokens) for a, b in pairs]
        assert list(zip(new_a.tolist(), new_b.tolist(), strict=True)) == expected

    def test_front_or_back_is_a_fair_coin_per_token(self):
        n = 20_000
        a_start, len_a, b_start, len_b = truncate_seq_pair(
            np.zeros(n), np.full(n, 10), np.full(n, 100), np.full(n, 4), 8, np.random.default_rng(0)
        )
        assert set(len_a.tolist()) == {4} and set(len_b.tolist()) == {4}
        # 6 tokens are cut from A: the number cut from its front is Binomial(6, 1/2)
        assert a_start.min() == 0 and a_start.max() == 6
        assert abs(a_start.mean() - 3.0) < 0.05
        assert set(b_start.tolist()) == {100}  # B fits: untouched


class TestHandComputedInstances:
    def test_nsp(self, toy_docs):
        # doc a: no short target (0.9), so target 7; chunk = all 3 sentences (9 tokens); a_end = 1 + int(0.2*2)
        #   = 1; coin 0.7 -> actual next; A=[11,12,13], B=[14..19] -> truncated from the back to 4 tokens.
        # doc b: short target (0.05) = 2 + int(0.0*6) = 2; chunk = [21,22] alone -> random next: the
        #   other document (0.3), start = int(0.5*3) = sentence 1 -> B=[14,15] (target_b 0: one sentence);
        #   put back -> next chunk [23,24,25] alone -> random next (0.1), start = int(0.9*3) = 2 -> B=[16..19].
        rng = ScriptedRng([0.9, 0.2, 0.7, 0.05, 0.0, 0.3, 0.5, 0.1, 0.9])
        inst = pack(toy_docs, "nsp", rng, max_seq_length=10)
        assert rows(inst) == [
            [CLS, 11, 12, 13, SEP, 14, 15, 16, 17, SEP],
            [CLS, 21, 22, SEP, 14, 15, SEP],
            [CLS, 23, 24, 25, SEP, 16, 17, 18, 19, SEP],
        ]
        assert inst.segment_a_len.tolist() == [5, 4, 5]
        assert inst.next_sentence_label.tolist() == [0, 1, 1]
        assert inst.doc_index.tolist() == [0, 1, 1] and inst.b_doc_index.tolist() == [0, 0, 0]
        assert inst.a_token_start.tolist() == [0, 9, 11] and inst.b_token_start.tolist() == [3, 3, 5]
        assert rng.unused == []

    def test_sop(self, toy_docs):
        # doc a: target 7; chunk = 3 sentences; A = sentences[:1 + int(0.6*2)] = [11..15], B = [16..19];
        #   swap (0.3 < 0.5): [16..19] then [11..15], cut by 2 from the front (scripted) -> [13,14,15].
        # doc b: short target 2 + int(0.99*6) = 7; chunk = both sentences; split after 1 (0.4); no swap (0.8).
        rng = ScriptedRng([0.9, 0.6, 0.3, 0.05, 0.99, 0.4, 0.8], truncate_front=True)
        inst = pack(toy_docs, "sop", rng, max_seq_length=10)
        assert rows(inst) == [[CLS, 16, 17, 18, 19, SEP, 13, 14, 15, SEP], [CLS, 21, 22, SEP, 23, 24, 25, SEP]]
        assert inst.next_sentence_label.tolist() == [1, 0]
        assert inst.segment_a_len.tolist() == [6, 4]
        assert rng.unused == []

    def test_sop_single_sentence_is_split_inside(self):
        # one 4-token sentence: split at 1 + int(0.5*3) = 2, no swap; a 1-token document gives nothing
        docs = TokenizedDocs.from_lists([[[31, 32, 33, 34]], [[41]]])
        rng = ScriptedRng([0.5, 0.5, 0.9, 0.5])
        inst = pack(docs, "sop", rng, max_seq_length=20)
        assert rows(inst) == [[CLS, 31, 32, SEP, 33, 34, SEP]]
        assert inst.next_sentence_label.tolist() == [0]

    def test_full_sentences(self):
        # budget 6 tokens: doc 0 fits whole (5); doc 1's 7-token sentence is cut into 6 + 1; the leftover
        # token shares an instance with doc 2 behind a [SEP] (1 + 1 + 3 = 5 <= 6)
        docs = TokenizedDocs.from_lists(
            [[[1001, 1002, 1003], [1004, 1005]], [[1006, 1007, 1008, 1009, 1010, 1011, 1012]], [[1013], [1014, 1015]]]
        )
        inst = pack(docs, "mlm", np.random.default_rng(0), max_seq_length=8)
        assert rows(inst) == [
            [CLS, 1001, 1002, 1003, 1004, 1005, SEP],
            [CLS, 1006, 1007, 1008, 1009, 1010, 1011, SEP],
            [CLS, 1012, SEP, 1013, 1014, 1015, SEP],
        ]
        assert inst.doc_index.tolist() == [0, 1, 1] and inst.a_token_start.tolist() == [0, 5, 11]
        assert inst.segment_a_len.tolist() == [7, 8, 7]

    def test_full_sentences_separator_counts_against_the_budget(self):
        # 3 + [SEP] + 3 = 7 > 6: the second document starts a new instance, without a leading [SEP]
        docs = TokenizedDocs.from_lists([[[1001, 1002, 1003]], [[1004, 1005, 1006]]])
        inst = pack(docs, "mlm", np.random.default_rng(0), max_seq_length=8)
        assert rows(inst) == [[CLS, 1001, 1002, 1003, SEP], [CLS, 1004, 1005, 1006, SEP]]


def titles_then(titles: TokenizedDocs, long: TokenizedDocs) -> TokenizedDocs:
    """One-sentence documents (every sentence of ``titles`` its own document), then the documents of ``long``."""
    return TokenizedDocs.from_lists(
        [[list(map(int, titles.token_ids[a:b]))] for a, b in zip(titles.sentence_offsets[:-1],
                                                                    titles.sentence_offsets[1:])]
        + [[list(map(int, long.token_ids[long.sentence_offsets[s]:long.sentence_offsets[s + 1]]))
            for s in range(long.doc_offsets[d], long.doc_offsets[d + 1])] for d in range(long.n_docs)])


class TestNextSentencePrediction:
    def test_invariants_and_labels(self, corpus):
        inst = pack(corpus, "nsp", np.random.default_rng(5))
        check_pair_invariants(corpus, inst, 128)
        label = inst.next_sentence_label
        assert np.all(inst.b_doc_index[label == 1] != inst.doc_index[label == 1])
        # label 0: B is the rest of A's chunk, so it starts at or after A's end (later if truncation cut
        # A's tail or B's head), in the same document
        actual = label == 0
        assert np.all(inst.b_doc_index[actual] == inst.doc_index[actual])
        a_end = inst.a_token_start + inst.segment_a_len - 2
        assert np.all(inst.b_token_start[actual] >= a_end[actual])

    def test_label_balance(self):
        docs = make_corpus(np.random.default_rng(7), n_docs=800)
        inst = pack(docs, "nsp", np.random.default_rng(8))
        # a chunk of one sentence is always a random next (reference); its A ends at its document's end.
        # (A of such a chunk is one sentence of <= 40 tokens, never truncated at length 128.)
        _, doc_end = doc_token_bounds(docs)
        a_end = inst.a_token_start + inst.segment_a_len - 2
        forced = a_end == doc_end[inst.doc_index]
        assert np.all(inst.next_sentence_label[forced] == 1)
        assert forced.mean() > 0.03, "the corpus must have forced random-next chunks for this test to mean much"
        # the other chunks' coin leans against the surplus, so the overall balance is 50/50
        assert len(inst.next_sentence_label) > 5000
        assert abs(inst.next_sentence_label.mean() - 0.5) < 0.02
        coin = inst.next_sentence_label[~forced]
        assert coin.mean() < 0.5 - forced.mean() / 4, "the correction must actually lower the coin's rate"

    def test_label_balance_with_many_one_sentence_documents(self):
        # like the WikiExtractor dump: most articles are a bare title (one sentence)
        titles = make_corpus(np.random.default_rng(1), n_docs=1500, doc_sentences=(1, 1))
        long = make_corpus(np.random.default_rng(2), n_docs=500, doc_sentences=(10, 40))
        docs = titles_then(titles, long)
        inst = pack(docs, "nsp", np.random.default_rng(3))
        assert abs(inst.next_sentence_label.mean() - 0.5) < 0.02

    def test_a_window_of_mostly_one_sentence_documents_stays_balanced(self):
        # a small validation shard of bare titles: forced random-next chunks outnumber what a coin of 0 repays
        titles = make_corpus(np.random.default_rng(4), n_docs=400, doc_sentences=(1, 1))
        long = make_corpus(np.random.default_rng(5), n_docs=20, doc_sentences=(2, 3))
        docs = titles_then(titles, long)
        unbalanced = pack(docs, "nsp", np.random.default_rng(6), balance_nsp=False)
        assert unbalanced.next_sentence_label.mean() > 0.8, "the window must be one the coin alone cannot balance"
        inst = pack(docs, "nsp", np.random.default_rng(6))
        n = len(inst.next_sentence_label)
        assert n > 40 and abs(inst.next_sentence_label.mean() - 0.5) <= 16 / n + 1 / n

    def test_actual_next_is_contiguous_without_truncation(self):
        # one-token sentences: chunks and random B's stop exactly at the target, so nothing is truncated
        docs = make_corpus(np.random.default_rng(3), n_docs=100, sentence_len=(1, 1), doc_sentences=(2, 30))
        inst = pack(docs, "nsp", np.random.default_rng(4), max_seq_length=13, short_seq_prob=0.0)
        actual = inst.next_sentence_label == 0
        a_end = inst.a_token_start + inst.segment_a_len - 2
        assert actual.sum() > 100
        assert np.array_equal(inst.b_token_start[actual], a_end[actual])

    def test_single_document_window_falls_back_to_the_same_document(self):
        docs = make_corpus(np.random.default_rng(2), n_docs=1, doc_sentences=(40, 40))
        inst = pack(docs, "nsp", np.random.default_rng(0))
        check_pair_invariants(docs, inst, 128)
        assert (inst.next_sentence_label == 1).any()
        assert np.all(inst.b_doc_index == 0)

    def test_empty_sentences_and_documents_are_skipped(self, corpus_with_gaps):
        for objective in ("nsp", "sop"):
            inst = pack(corpus_with_gaps, objective, np.random.default_rng(1), max_seq_length=32)
            check_pair_invariants(corpus_with_gaps, inst, 32)
        check_full_sentence_invariants(corpus_with_gaps, pack(corpus_with_gaps, "mlm", None, 32), 32)


class TestSentenceOrderPrediction:
    def test_invariants_balance_and_swaps(self, corpus):
        inst = pack(corpus, "sop", np.random.default_rng(6))
        check_pair_invariants(corpus, inst, 128)
        assert np.array_equal(inst.b_doc_index, inst.doc_index)  # no random documents
        label = inst.next_sentence_label
        assert abs(label.mean() - 0.5) < 0.02
        first_end = inst.a_token_start + inst.segment_a_len - 2
        second_end = inst.b_token_start + inst.lengths - inst.segment_a_len - 1
        # in order: the first segment ends before the second begins; swapped: the other way round
        assert np.all(first_end[label == 0] <= inst.b_token_start[label == 0])
        assert np.all(second_end[label == 1] <= inst.a_token_start[label == 1])

    def test_swapped_pairs_are_adjacent_without_truncation(self):
        docs = make_corpus(np.random.default_rng(3), n_docs=100, sentence_len=(1, 1), doc_sentences=(2, 30))
        inst = pack(docs, "sop", np.random.default_rng(4), max_seq_length=13, short_seq_prob=0.0)
        label = inst.next_sentence_label
        first_end = inst.a_token_start + inst.segment_a_len - 2
        second_end = inst.b_token_start + inst.lengths - inst.segment_a_len - 1
        assert (label == 1).sum() > 50
        assert np.array_equal(first_end[label == 0], inst.b_token_start[label == 0])
        assert np.array_equal(second_end[label == 1], inst.a_token_start[label == 1])


class TestFullSentences:
    def test_invariants(self, corpus):
        inst = pack(corpus, "mlm", None)
        check_full_sentence_invariants(corpus, inst, 128)

    def test_packing_is_greedy(self, corpus):
        # an instance ends early only because the next sentence (plus its [SEP] if it opens a document)
        # would not fit, so instances are long on average
        inst = pack(corpus, "mlm", None)
        assert inst.lengths[:-1].mean() > 128 - 25

    def test_short_target_only_for_pairs(self, corpus):
        # mlm consumes no randomness: any generator (or none) gives the same instances
        one, two = pack(corpus, "mlm", np.random.default_rng(1)), pack(corpus, "mlm", None)
        assert np.array_equal(one.input_ids, two.input_ids)


@pytest.mark.parametrize(
    ("objective", "max_seq_length", "message"),
    [("nsp", 4, "too small"), ("mlm", 2, "too small"), ("xlm", 128, "objective must be one of")],
)
def test_bad_arguments_are_explained(toy_docs, objective, max_seq_length, message):
    with pytest.raises(ValueError, match=message):
        pack(toy_docs, objective, np.random.default_rng(0), max_seq_length=max_seq_length)


@st.composite
def corpora(draw) -> TokenizedDocs:
    n_docs = draw(st.integers(1, 6))
    docs = [
        [draw(st.lists(st.integers(1000, 1100), min_size=0, max_size=25)) for _ in range(draw(st.integers(0, 6)))]
        for _ in range(n_docs)
    ]
    return TokenizedDocs.from_lists(docs)


@settings(max_examples=150, deadline=None)
@given(corpora(), st.sampled_from(["nsp", "sop", "mlm"]), st.integers(5, 40), st.integers(0, 2**32 - 1),
       st.floats(0.0, 1.0))
def test_any_corpus_gives_well_formed_instances(docs, objective, max_seq_length, seed, short_seq_prob):
    inst = pack(docs, objective, np.random.default_rng(seed), max_seq_length, short_seq_prob=short_seq_prob)
    if objective == "mlm":
        check_full_sentence_invariants(docs, inst, max_seq_length)
    else:
        check_pair_invariants(docs, inst, max_seq_length)
        doc_start, doc_end = doc_token_bounds(docs)
        if objective == "nsp" and np.count_nonzero(doc_end > doc_start) > 1:
            label = inst.next_sentence_label
            assert np.all(inst.b_doc_index[label == 1] != inst.doc_index[label == 1])


class ReferenceUniforms:
    """The random source of the port below: the same blocks of uniforms the implementation draws."""

    def __init__(self, seed: int) -> None:
        self._rng, self._values = np.random.default_rng(seed), []

    def random(self) -> float:
        if not self._values:
            self._values = self._rng.random(4096).tolist()
        return self._values.pop(0)

    def randint(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))


def reference_instances(all_documents, document_index, max_seq_length, short_seq_prob, rng, objective):
    """``create_instances_from_document`` of BERT (nsp) / ALBERT (sop), transcribed without masking and
    truncation, with this module's documented deviations: the random document is drawn from the *other*
    documents, and SOP splits a lone sentence inside. Returns (tokens_a, tokens_b, label, b_doc) tuples."""
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    instances, current_chunk, current_length, i = [], [], 0, 0
    while i < len(document):
        current_chunk.append(document[i])
        current_length += len(document[i])
        if i == len(document) - 1 or current_length >= target_seq_length:
            if objective == "sop" and len(current_chunk) == 1:
                if len(current_chunk[0]) >= 2:
                    k = rng.randint(1, len(current_chunk[0]) - 1)
                    first, second = current_chunk[0][:k], current_chunk[0][k:]
                    swap = rng.random() < 0.5
                    instances.append((second, first, 1, document_index) if swap else (first, second, 0, document_index))
                current_chunk, current_length, i = [], 0, i + 1
                continue
            a_end = 1 if len(current_chunk) < 2 else rng.randint(1, len(current_chunk) - 1)
            tokens_a = [t for s in current_chunk[:a_end] for t in s]
            tokens_b, label, b_doc = [], 0, document_index
            if objective == "nsp" and (len(current_chunk) == 1 or rng.random() < 0.5):
                label, target_b_length = 1, target_seq_length - len(tokens_a)
                b_doc = document_index
                if len(all_documents) > 1:
                    b_doc = rng.randint(0, len(all_documents) - 2)
                    b_doc += b_doc >= document_index
                random_document = all_documents[b_doc]
                for j in range(rng.randint(0, len(random_document) - 1), len(random_document)):
                    tokens_b.extend(random_document[j])
                    if len(tokens_b) >= target_b_length:
                        break
                i -= len(current_chunk) - a_end
            else:
                tokens_b = [t for s in current_chunk[a_end:] for t in s]
                if objective == "sop" and rng.random() < 0.5:
                    tokens_a, tokens_b, label = tokens_b, tokens_a, 1
            instances.append((tokens_a, tokens_b, label, b_doc))
            current_chunk, current_length = [], 0
        i += 1
    return instances


@pytest.mark.parametrize("objective", ["nsp", "sop"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_a_transcription_of_the_reference(objective, seed):
    docs = make_corpus(np.random.default_rng(seed), n_docs=30, sentence_len=(1, 12), doc_sentences=(1, 10))
    so, do = docs.sentence_offsets.tolist(), docs.doc_offsets.tolist()
    nested = [[docs.token_ids[so[s] : so[s + 1]].tolist() for s in range(do[d], do[d + 1])] for d in range(docs.n_docs)]
    uniforms = ReferenceUniforms(seed)
    expected = [x for d in range(len(nested)) for x in reference_instances(nested, d, 24, 0.3, uniforms, objective)]
    inst = pack(docs, objective, np.random.default_rng(seed), max_seq_length=24, short_seq_prob=0.3,
                balance_nsp=False)   # the reference's fair coin
    assert len(inst) == len(expected)
    for i, (row, (tokens_a, tokens_b, label, b_doc)) in enumerate(zip(rows(inst), expected, strict=True)):
        seg_a = int(inst.segment_a_len[i])
        len_a, len_b = reference_truncated_lengths(len(tokens_a), len(tokens_b), 21)
        assert (seg_a - 2, len(row) - seg_a - 1) == (len_a, len_b)
        # truncation may cut either end: what is left is a window of the untruncated segment
        assert any(row[1 : seg_a - 1] == tokens_a[k : k + len_a] for k in range(len(tokens_a) - len_a + 1))
        assert any(row[seg_a:-1] == tokens_b[k : k + len_b] for k in range(len(tokens_b) - len_b + 1))
        assert (int(inst.next_sentence_label[i]), int(inst.b_doc_index[i])) == (label, b_doc)
