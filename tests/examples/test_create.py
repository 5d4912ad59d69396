"""End to end over one window: dupe_factor, static masking, and the stage's determinism contract."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertplat.examples.create import create_pretraining_examples, shard_rng
from bertplat.examples.data import PackedInstances, TokenizedDocs
from tests.examples.corpus import CLS, SEP, make_corpus, masking_spec

REPO = Path(__file__).resolve().parents[2]


def examples(docs: TokenizedDocs, rng: np.random.Generator, objective: str = "nsp", **kwargs) -> PackedInstances:
    kwargs.setdefault("masking", masking_spec())
    return create_pretraining_examples(docs, objective, max_seq_length=128, cls_token_id=CLS, sep_token_id=SEP,
                                       rng=rng, **kwargs)


def fingerprint(inst: PackedInstances) -> str:
    digest = hashlib.sha256()
    for f in dataclasses.fields(inst):
        value = getattr(inst, f.name)
        digest.update(f.name.encode() + (b"-" if value is None else np.ascontiguousarray(value).tobytes()))
    return digest.hexdigest()


@pytest.fixture(scope="module")
def shards() -> list[TokenizedDocs]:
    return [make_corpus(np.random.default_rng(100 + s), n_docs=40) for s in range(2)]


class TestDupeFactor:
    def test_each_pass_covers_the_window_with_new_choices(self, corpus):
        inst = examples(corpus, np.random.default_rng(0), dupe_factor=3)
        # the reference restarts at the first document on every pass: doc_index drops back to 0 twice
        restarts = np.flatnonzero(np.diff(inst.doc_index) < 0) + 1
        assert len(restarts) == 2
        passes = np.split(np.arange(len(inst)), restarts)
        first, second = (inst.input_ids[inst.offsets[p[0]] : inst.offsets[p[-1] + 1]] for p in passes[:2])
        assert not np.array_equal(first[: len(second)], second[: len(first)])
        assert inst.masked_offsets[-1] == len(inst.masked_positions)

    def test_mlm_passes_differ_only_in_masks(self, corpus):
        inst = examples(corpus, np.random.default_rng(0), objective="mlm", dupe_factor=2)
        half = len(inst) // 2
        assert np.array_equal(inst.lengths[:half], inst.lengths[half:])
        labels_in = np.split(inst.masked_label_ids, inst.masked_offsets[1:-1])
        assert any(not np.array_equal(labels_in[i], labels_in[half + i]) for i in range(half))

    def test_dynamic_masking_leaves_instances_unmasked(self, corpus):
        inst = examples(corpus, np.random.default_rng(0), masking=None)
        assert not inst.is_masked and inst.masked_positions is None

    def test_bad_dupe_factor(self, corpus):
        with pytest.raises(ValueError, match="dupe_factor"):
            examples(corpus, np.random.default_rng(0), dupe_factor=0)


class TestDeterminism:
    """Same shard + same seed -> the same bytes, whatever process, worker count or shard order."""

    def test_same_seed_same_output_different_seed_different(self, corpus):
        assert fingerprint(examples(corpus, shard_rng(7, 0))) == fingerprint(examples(corpus, shard_rng(7, 0)))
        assert fingerprint(examples(corpus, shard_rng(7, 0))) != fingerprint(examples(corpus, shard_rng(8, 0)))
        assert fingerprint(examples(corpus, shard_rng(7, 0))) != fingerprint(examples(corpus, shard_rng(7, 1)))

    def test_shard_order_does_not_matter(self, shards):
        in_order = [fingerprint(examples(shard, shard_rng(7, i))) for i, shard in enumerate(shards)]
        reversed_order = [fingerprint(examples(shards[i], shard_rng(7, i))) for i in (1, 0)]
        assert in_order == reversed_order[::-1]

    def test_another_process_gets_the_same_bytes(self, shards):
        # a fresh interpreter with a different hash seed stands in for another worker or machine
        code = (
            "import numpy as np\n"
            "from tests.examples.corpus import make_corpus\n"
            "from tests.examples.test_create import examples, fingerprint\n"
            "from bertplat.examples.create import shard_rng\n"
            "print(fingerprint(examples(make_corpus(np.random.default_rng(101), n_docs=40), shard_rng(7, 1))))\n"
        )
        env = dict(os.environ, PYTHONHASHSEED="12345")
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=120, check=True)
        assert result.stdout.strip() == fingerprint(examples(shards[1], shard_rng(7, 1)))

    def test_inputs_are_not_mutated(self, shards):
        docs = shards[0]
        before = [docs.token_ids.copy(), docs.sentence_offsets.copy(), docs.doc_offsets.copy()]
        for objective in ("nsp", "sop", "mlm"):
            examples(docs, shard_rng(1, 0), objective=objective, dupe_factor=2)
        assert all(np.array_equal(a, b) for a, b in zip(before, [docs.token_ids, docs.sentence_offsets,
                                                                 docs.doc_offsets], strict=True))

    def test_shard_rng_rejects_negative_indices(self):
        with pytest.raises(ValueError, match="non-negative"):
            shard_rng(1, -1)
