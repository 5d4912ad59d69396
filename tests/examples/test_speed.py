"""Throughput guard: packing + static masking must stay vectorised (no per-token Python)."""

from __future__ import annotations

import pytest

from tests.examples.bench_examples import measure


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["nsp", "sop", "mlm"])
@pytest.mark.parametrize("whole_word", [False, True])
def test_throughput_on_a_million_tokens(objective, whole_word):
    result = measure(objective, whole_word)
    print(f"{objective} whole_word={whole_word}: {result['instances_per_s']:,.0f} instances/s")
    # the target is well over 50k/s (measured 60-180k/s on one core of the shared dev box); the floor is
    # lower because the box is shared, yet far above what per-token Python could reach (~5k/s)
    assert result["instances_per_s"] > 30_000
