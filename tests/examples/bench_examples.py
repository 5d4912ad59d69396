"""Throughput of packing + static masking on ~1M synthetic tokens, one core.

    .venv/bin/python -m tests.examples.bench_examples [n_tokens]

Sentences of 5-40 tokens, documents of 5-50 sentences, max_seq_length 128, mask_prob 0.15, at most
20 predictions. Reports the best of a few runs (the machine is shared) in instances per second.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bertplat.examples.create import create_pretraining_examples
from tests.examples.corpus import CLS, SEP, corpus_of_tokens, masking_spec


def measure(objective: str, whole_word: bool, n_tokens: int = 1_000_000, repeats: int = 3) -> dict[str, float]:
    docs = corpus_of_tokens(np.random.default_rng(0), n_tokens)
    spec = masking_spec(whole_word=whole_word)
    best, n_instances = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        inst = create_pretraining_examples(docs, objective, max_seq_length=128, cls_token_id=CLS,
                                           sep_token_id=SEP, rng=np.random.default_rng(1), masking=spec)
        best = min(best, time.perf_counter() - start)
        n_instances = len(inst)
    return {"tokens": len(docs.token_ids), "instances": n_instances, "seconds": best,
            "instances_per_s": n_instances / best, "tokens_per_s": len(docs.token_ids) / best}


def main() -> None:
    n_tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    for objective in ("nsp", "sop", "mlm"):
        for whole_word in (False, True):
            r = measure(objective, whole_word, n_tokens)
            print(f"{objective:3} whole_word={whole_word!s:5} {r['instances']:>6} instances in {r['seconds']:.3f}s: "
                  f"{r['instances_per_s']:>9,.0f} instances/s, {r['tokens_per_s'] / 1e6:.1f}M input tokens/s")


if __name__ == "__main__":
    main()
