"""benchmarks/pooler.py's [CLS] attention entropy, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.pooler import cls_attention_entropy


def test_uniform_attention_over_real_tokens_is_one_and_one_hot_is_zero():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    uniform = torch.zeros(2, 1, 4, 4)
    uniform[0, 0, 0] = 0.25
    uniform[1, 0, 0, :2] = 0.5  # padding gets nothing, as the model's mask makes it
    assert cls_attention_entropy(uniform, mask) == pytest.approx(1.0, abs=1e-6)
    one_hot = torch.zeros(2, 1, 4, 4)
    one_hot[:, 0, 0, 1] = 1.0
    assert cls_attention_entropy(one_hot, mask) == pytest.approx(0.0, abs=1e-6)


def test_entropy_is_normalised_per_sentence_and_averaged_over_heads():
    mask = torch.tensor([[1, 1, 1, 1]])
    attn = torch.zeros(1, 2, 4, 4)
    attn[0, 0, 0] = 0.25  # head 0 uniform: 1.0
    attn[0, 1, 0, :2] = 0.5  # head 1 on two of four tokens: log 2 / log 4 = 0.5
    assert cls_attention_entropy(attn, mask) == pytest.approx((1.0 + math.log(2) / math.log(4)) / 2, abs=1e-6)
