"""Synthetic tokenised corpora and a BERT-like vocabulary layout for the examples tests and benchmark."""

from __future__ import annotations

import numpy as np

from bertplat.examples.data import TokenizedDocs
from bertplat.examples.masking import MaskingSpec

# bert-base-uncased ids, so that failures read like real data
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
VOCAB_SIZE = 30522
SPECIALS = (PAD, UNK, CLS, SEP, MASK)
FIRST_WORD_ID = 1000  # corpus tokens are drawn from [1000, VOCAB_SIZE)
FIRST_CONTINUATION_ID = 20000  # ids from here on play the "##" pieces

CONTINUATION_LUT = np.arange(VOCAB_SIZE) >= FIRST_CONTINUATION_ID


def masking_spec(**overrides) -> MaskingSpec:
    kwargs = dict(vocab_size=VOCAB_SIZE, mask_token_id=MASK, special_token_ids=SPECIALS, max_predictions=20,
                  continuation_lut=CONTINUATION_LUT)
    kwargs.update(overrides)
    return MaskingSpec(**kwargs)


def make_corpus(rng: np.random.Generator, n_docs: int, sentence_len: tuple[int, int] = (5, 40),
                doc_sentences: tuple[int, int] = (5, 50), empty_rate: float = 0.0) -> TokenizedDocs:
    """Random documents: sentence lengths and sentences per document uniform in the given inclusive ranges.

    ``empty_rate`` of the sentences are emptied, to exercise the empty-sentence handling.
    """
    n_sentences = rng.integers(doc_sentences[0], doc_sentences[1] + 1, n_docs)
    lengths = rng.integers(sentence_len[0], sentence_len[1] + 1, int(n_sentences.sum()))
    lengths[rng.random(len(lengths)) < empty_rate] = 0
    token_ids = rng.integers(FIRST_WORD_ID, VOCAB_SIZE, int(lengths.sum())).astype(np.int32)
    return TokenizedDocs(
        token_ids=token_ids,
        sentence_offsets=np.concatenate([[0], np.cumsum(lengths)]),
        doc_offsets=np.concatenate([[0], np.cumsum(n_sentences)]),
        doc_ids=[f"doc-{d}" for d in range(n_docs)],
    )


def corpus_of_tokens(rng: np.random.Generator, n_tokens: int) -> TokenizedDocs:
    """About ``n_tokens`` tokens with the benchmark's shape: sentences of 5-40 tokens, documents of 5-50."""
    return make_corpus(rng, n_docs=max(1, n_tokens // (22 * 27)))
