"""Fixtures for the pretraining-examples tests: synthetic corpora and a scripted random generator."""

from __future__ import annotations

import numpy as np
import pytest

from bertplat.examples.data import TokenizedDocs
from tests.examples.corpus import make_corpus


class ScriptedRng:
    """Stands in for ``numpy.random.Generator`` where a test pins every random choice by hand.

    ``random(size)`` returns the scripted uniforms in order, then NaN: a consumer that draws more than
    the script fails (``int(nan)`` raises) or takes the "not below p" branch, which the expectation shows.
    ``binomial(n, p)`` returns ``n`` (every truncated token from the front) or 0 (all from the back).
    """

    def __init__(self, uniforms: list[float], truncate_front: bool = False) -> None:
        self._uniforms = list(uniforms)
        self._truncate_front = truncate_front

    def random(self, size: int) -> np.ndarray:
        out = np.full(size, np.nan)
        take = self._uniforms[:size]
        out[: len(take)] = take
        self._uniforms = self._uniforms[size:]
        return out

    def binomial(self, n: np.ndarray, p: float) -> np.ndarray:
        assert p == 0.5
        return np.asarray(n) if self._truncate_front else np.zeros_like(n)

    @property
    def unused(self) -> list[float]:
        return self._uniforms


@pytest.fixture()
def toy_docs() -> TokenizedDocs:
    """Two documents: sentences of 3, 2, 4 tokens (ids 11-19), then of 2, 3 tokens (ids 21-25)."""
    return TokenizedDocs.from_lists(
        [[[11, 12, 13], [14, 15], [16, 17, 18, 19]], [[21, 22], [23, 24, 25]]], doc_ids=["a", "b"]
    )


@pytest.fixture(scope="session")
def corpus() -> TokenizedDocs:
    """About 250k tokens: 400 documents of 5-50 sentences of 5-40 tokens."""
    return make_corpus(np.random.default_rng(1234), n_docs=400)


@pytest.fixture(scope="session")
def corpus_with_gaps() -> TokenizedDocs:
    """Smaller corpus where 20% of sentences are empty (some documents end up empty too)."""
    return make_corpus(np.random.default_rng(99), n_docs=60, doc_sentences=(1, 8), empty_rate=0.2)
