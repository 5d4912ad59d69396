"""Helpers for the model tests: tiny configs and right-padded batches of mixed lengths."""

from __future__ import annotations

import torch

from bertplat.model import ModelConfig

VOCAB = 97  # deliberately not a power of two: catches a hard-coded vocabulary width


def make_batch(lengths: list[int], seqlen: int, vocab_size: int = VOCAB, seed: int = 0,
               mask_prob: float = 0.15) -> dict[str, torch.Tensor]:
    """A right-padded batch: ids in [5, vocab) (0 = pad), two segments, ~mask_prob of real tokens labelled."""
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    mask = (torch.arange(seqlen)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)
    ids = torch.randint(5, vocab_size, (B, seqlen), generator=g) * mask
    segment = torch.zeros(B, seqlen, dtype=torch.long)
    for b, n in enumerate(lengths):
        segment[b, n // 2 : n] = 1
    chosen = (torch.rand(B, seqlen, generator=g) < mask_prob) & mask.bool()
    chosen[:, 1] = True  # at least one label per sequence (position 1 is real in every test batch)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    nsp = torch.randint(0, 2, (B,), generator=g)
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=segment, labels=labels,
                next_sentence_label=nsp)


def tiny_config(arch: str = "bert", **overrides) -> ModelConfig:
    """2 layers, hidden 64: big enough to exercise every path, small enough to run in milliseconds."""
    base = dict(vocab_size=VOCAB, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                max_position_embeddings=32)
    if arch == "albert":
        base.update(arch="albert", embedding_size=32, share_layers=True, hidden_act="gelu_new")
    return ModelConfig.from_dict({**base, **overrides})
