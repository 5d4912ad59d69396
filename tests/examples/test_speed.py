"""Vectorisation guard: packing + static masking run no Python per token.

It used to time the run and assert a floor in instances/s, which a busy machine broke (27,996 < 30,000 for
``[True-mlm]`` under load, a pass when run alone). Speed belongs in the benchmark
(``python -m tests.examples.bench_examples``). This test counts what per-token Python would multiply
instead: the Python lines executed (``sys.settrace``), which depend on the seeded data only, not on the
machine or its load. Today about 0.03 lines per token (mlm) to 0.35 (nsp: a few dozen per instance, in
the document-level packing loop); any loop over tokens executes at least one line per token.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bertplat.examples.create import create_pretraining_examples
from tests.examples.corpus import CLS, SEP, corpus_of_tokens, masking_spec

MAX_LINES_PER_TOKEN = 0.5


def python_lines_executed(fn) -> int:
    """Lines of Python executed while ``fn()`` runs (every frame, library code included)."""
    lines = 0

    def local(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
        return local

    sys.settrace(lambda frame, event, arg: local)
    try:
        fn()
    finally:
        sys.settrace(None)
    return lines


def create(docs, objective: str, whole_word: bool):
    return create_pretraining_examples(docs, objective, max_seq_length=128, cls_token_id=CLS, sep_token_id=SEP,
                                       rng=np.random.default_rng(1), masking=masking_spec(whole_word=whole_word))


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["nsp", "sop", "mlm"])
@pytest.mark.parametrize("whole_word", [False, True])
def test_vectorisation_guard_counts_python_lines_so_machine_load_cannot_fail_it(objective, whole_word):
    docs = corpus_of_tokens(np.random.default_rng(0), 1_000_000)
    create(corpus_of_tokens(np.random.default_rng(0), 5_000), objective, whole_word)  # lazy imports run once
    lines = python_lines_executed(lambda: create(docs, objective, whole_word))
    tokens = len(docs.token_ids)
    assert lines < MAX_LINES_PER_TOKEN * tokens, (
        f"{lines:,} Python lines for {tokens:,} tokens ({lines / tokens:.2f} per token): something loops over "
        "tokens in Python; vectorise it (profile with python -m tests.examples.bench_examples)")


def test_the_line_count_sees_a_loop_over_tokens():
    """The guard can fail: a Python loop over the tokens costs at least a line per token."""
    tokens = np.arange(10_000)
    lines = python_lines_executed(lambda: [t for t in tokens.tolist() if t % 7])
    assert lines >= len(tokens)
