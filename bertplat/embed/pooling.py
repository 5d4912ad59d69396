"""Sentence vectors from token states: CLS, mean over real tokens, max, mean / sqrt(length), then L2.

As sentence-transformers' ``models.Pooling`` and ``models.Normalize`` compute them (mean divides by
the number of real tokens, max ignores padding, [CLS] is the first token). The pooling runs on the
unpadded rows the encoder already holds (``(nnz, H)`` plus each row's sequence), so no padded
``(B, T, H)`` tensor is ever built; ``pool_padded`` is the same on a padded batch with a mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOLINGS = ("cls", "mean", "max", "mean_sqrt_len")


def pool_rows(hidden: torch.Tensor, seq: torch.Tensor, lengths: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool the unpadded rows of a batch.

    hidden: (nnz, H) token states, sequence after sequence (see ``bertplat.model.padding``);
    seq: (nnz,) int64 the sequence of each row; lengths: (B,) real tokens per sequence (>= 1).
    Returns (B, H), in hidden's dtype.
    """
    B, H = lengths.shape[0], hidden.shape[1]
    if mode == "cls":
        starts = torch.cumsum(lengths, 0) - lengths  # (B,) row of each sequence's first token
        return hidden[starts.long()]
    if mode == "max":
        out = hidden.new_full((B, H), float("-inf"))
        return out.scatter_reduce(0, seq.view(-1, 1).expand(-1, H), hidden, reduce="amax", include_self=True)
    if mode in ("mean", "mean_sqrt_len"):
        sums = hidden.new_zeros((B, H)).index_add_(0, seq, hidden)  # (B, H)
        n = lengths.to(hidden.dtype).clamp(min=1).unsqueeze(1)  # (B, 1)
        return sums / (n if mode == "mean" else n.sqrt())
    raise ValueError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLINGS)}")


def pool_padded(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The same pooling on a padded batch: hidden (B, T, H), attention_mask (B, T) 1 = real token."""
    mask = attention_mask.bool()
    B, T = mask.shape
    flat = torch.nonzero(mask.flatten()).flatten()  # (nnz,) row-major, so sequence after sequence
    return pool_rows(hidden.flatten(0, 1)[flat], flat // T, mask.sum(1), mode)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length, as ``sentence_transformers.models.Normalize`` (eps 1e-12)."""
    return F.normalize(x, p=2.0, dim=1)
