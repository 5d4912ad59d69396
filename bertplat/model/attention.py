"""Bidirectional multi-head attention kernels over padded or unpadded tokens.

Everything goes through `torch.nn.functional.scaled_dot_product_attention` or torch's own
variable-length flash kernel, so a GPU gets flash / memory-efficient attention and a CPU gets
torch's fused CPU kernel; no hand-written softmax.

The unpadded layout (rows of real tokens, see `padding.py`) has three implementations:

- ``"varlen"``: `torch.nn.attention.varlen.varlen_attn` (torch >= 2.10), FlashAttention-2 on
  `cu_seqlens` directly, as MosaicBERT / ModernBERT do with flash-attn. CUDA, fp16/bf16 only, and
  it has no dropout argument, so it is used only when the attention dropout is off (eval, or a
  config with attention_dropout=0).
- ``"jagged"``: nested jagged tensors through SDPA, which dispatches to the varlen flash /
  memory-efficient kernels and supports dropout. Used on CUDA when varlen cannot be.
- ``"padded"``: scatter q/k/v back to (B, longest row), run SDPA with a key-padding mask, gather again.
  Works everywhere; the default on CPU, where the fused kernel wants dense tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from bertplat.model.dropout import dropout
from bertplat.model.padding import pad_input


def _load_varlen_attn():
    try:  # torch >= 2.10; absent builds fall back below
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # pragma: no cover - depends on the torch build
        return None
    return varlen_attn


# varlen runs on CUDA only, and its module imports torch._dynamo: 1.7 s that every command loading a model
# (`bertplat search` embedding one query) paid on a machine without a GPU
_varlen_attn = _load_varlen_attn() if torch.cuda.is_available() else None

UNPADDED_IMPLS = ("auto", "varlen", "jagged", "padded")
_HALF = (torch.float16, torch.bfloat16)


class TokenLayout(NamedTuple):
    """Where the (total_nnz, ...) rows of an unpadded batch came from; see `padding.unpad_input`.
    Build it with `token_layout`."""

    indices: torch.Tensor  # (nnz,) int64 positions in the flattened (B * T)
    cu_seqlens: torch.Tensor  # (B + 1,) int32 cumulative lengths
    max_seqlen: int  # longest sequence in the batch
    batch: int  # B
    seqlen: int  # T of the padded input
    # The "padded" fallback attends over (B, max_seqlen), not (B, T): T may hold padding that no row needs
    # (batches rounded up to a multiple of 8, or cut from a longer tensor), and attention's cost grows with
    # T squared. ``packed``: (nnz,) int64 positions in the flattened (B * max_seqlen), each sequence's tokens
    # first, in order; ``key_mask``: (B, 1, 1, max_seqlen) bool, True at those positions. Under torch.compile
    # they are the input's own positions and width instead (see `token_layout`).
    packed: torch.Tensor
    key_mask: torch.Tensor


def token_layout(indices: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, batch: int,
                 seqlen: int) -> TokenLayout:
    """The layout of an unpadded batch from what `padding.unpad_input` returns, plus (B, T)."""
    device = indices.device
    if torch.compiler.is_compiling():
        # under torch.compile max_seqlen is data-dependent (an unbacked size), which inductor cannot lay out
        # a padded tensor by: keep the input's static width and its own positions there
        key_mask = torch.zeros(batch * seqlen, dtype=torch.bool, device=device).index_fill_(0, indices, True)
        return TokenLayout(indices, cu_seqlens, max_seqlen, batch, seqlen, indices,
                           key_mask.view(batch, 1, 1, seqlen))
    seqlens = (cu_seqlens[1:] - cu_seqlens[:-1]).long()  # (B,)
    nnz = indices.shape[0]
    row = torch.repeat_interleave(torch.arange(batch, device=device), seqlens, output_size=nnz)  # (nnz,)
    pos = torch.arange(nnz, device=device) - cu_seqlens[:-1].long()[row]  # place within its sequence
    key_mask = torch.arange(max_seqlen, device=device)[None, :] < seqlens[:, None]  # (B, max_seqlen)
    return TokenLayout(indices, cu_seqlens, max_seqlen, batch, seqlen, row * max_seqlen + pos,
                       key_mask.view(batch, 1, 1, max_seqlen))


class QueryLayout(NamedTuple):
    """Where the queries of a layer that computes only some tokens' outputs (the last layer, when a head reads
    [CLS] alone, or pretraining only the masked positions) sit. Build it with `query_layout`."""

    rows: torch.Tensor  # (M,) int64 rows of the layer's flattened input whose output is wanted, ascending
    packed: torch.Tensor  # (M,) int64 positions in the flattened (B * max_queries), each sequence's queries first
    batch: int  # B
    max_queries: int  # most queries of one sequence


def query_layout(rows: torch.Tensor, seq: torch.Tensor, batch: int, max_queries: int | None = None) -> QueryLayout:
    """The layout of queries at ``rows`` (ascending), ``seq`` (M,) giving the sequence each belongs to.
    ``max_queries`` saves a host sync when the caller knows it (1 for one query per sequence)."""
    counts = torch.bincount(seq, minlength=batch)  # (B,)
    if max_queries is None:
        max_queries = int(counts.max().item()) if counts.numel() else 0
    starts = torch.cumsum(counts, 0) - counts  # (B,) first query of each sequence
    pos = torch.arange(rows.shape[0], device=rows.device) - starts[seq]
    return QueryLayout(rows, seq * max_queries + pos, batch, max_queries)


def attend_queries(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, query: QueryLayout,
                   layout: TokenLayout | None, key_mask: torch.Tensor | None, dropout_p: float) -> torch.Tensor:
    """Attention for a subset of the queries, over all keys of their sequences.

    q: (M, nh, hd), the selected rows only. k, v: (nnz, nh, hd) unpadded (``layout`` given), or (B, nh, T, hd)
    padded with ``key_mask`` (B, 1, 1, T) or None. Returns (M, nh, hd). Both sides are padded, the queries to
    (B, max_queries), so it runs on every device through `attend_padded`.
    """
    B = query.batch
    qp = pad_input(q, query.packed, B, query.max_queries).transpose(1, 2)  # (B, nh, Tq, hd)
    if layout is not None:
        T = layout.key_mask.shape[-1]
        k, v = (pad_input(x, layout.packed, B, T).transpose(1, 2) for x in (k, v))  # (B, nh, T, hd)
        key_mask = layout.key_mask
    out = attend_padded(qp, k, v, key_mask, dropout_p)  # (B, nh, Tq, hd)
    return out.transpose(1, 2).flatten(0, 1)[query.packed]  # (M, nh, hd)


def attend_padded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                  dropout_p: float) -> torch.Tensor:
    """SDPA over a padded batch.

    q: (B, nh, Tq, hd), k, v: (B, nh, T, hd) (Tq = T but for `attend_queries`). key_mask: (B, 1, 1, T) bool,
    True where the key is a real token, or None for no padding. Returns (B, nh, Tq, hd). With dropout on a
    CPU: `_attend_math`.
    """
    if dropout_p and not q.is_cuda:
        return _attend_math(q, k, v, key_mask, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)


def _attend_math(q, k, v, key_mask: torch.Tensor | None, dropout_p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) v with dropout on the probabilities: what SDPA computes on a CPU when
    dropout is on (its fused CPU kernel has none, so it falls back to these same steps), with the
    cheaper CPU dropout of `bertplat.model.dropout`. (B, nh, T, hd) in and out."""
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)  # (B, nh, T, T)
    if key_mask is not None:
        scores = scores.masked_fill_(~key_mask, float("-inf"))
    return torch.matmul(dropout(torch.softmax(scores, dim=-1), dropout_p), v)


def choose_unpadded_impl(q: torch.Tensor, dropout_p: float) -> str:
    """The fastest unpadded implementation that supports this device, dtype and dropout."""
    if not q.is_cuda:
        return "padded"
    half = q.dtype in _HALF
    # FlashAttention supports head_dim up to 256 in multiples of 8.
    flash_shape = q.shape[-1] % 8 == 0 and q.shape[-1] <= 256
    if _varlen_attn is not None and half and flash_shape and dropout_p == 0.0:
        return "varlen"
    if half:
        return "jagged"
    return "padded"  # fp32 on CUDA: the dense path picks the memory-efficient kernel


def attend_unpadded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TokenLayout,
                    dropout_p: float, impl: str = "auto") -> torch.Tensor:
    """Attention within each sequence of an unpadded batch.

    q, k, v: (nnz, nh, hd) rows laid out as described by ``layout``. Returns (nnz, nh, hd).
    ``impl`` forces an implementation (tests use this); "auto" calls `choose_unpadded_impl`.
    """
    if impl == "auto":
        impl = choose_unpadded_impl(q, dropout_p)
    if impl == "varlen":
        if _varlen_attn is None:
            raise RuntimeError("impl='varlen' needs torch.nn.attention.varlen (torch >= 2.10)")
        if dropout_p:
            raise ValueError("impl='varlen' has no attention dropout; use 'jagged' or 'padded' in training")
        return _varlen_attn(q, k, v, layout.cu_seqlens, layout.cu_seqlens, layout.max_seqlen, layout.max_seqlen)
    if impl == "jagged":
        return _attend_jagged(q, k, v, layout, dropout_p)
    if impl == "padded":
        return _attend_repadded(q, k, v, layout, dropout_p)
    raise ValueError(f"unknown unpadded attention impl {impl!r}; choose one of {UNPADDED_IMPLS}")


def _attend_jagged(q, k, v, layout: TokenLayout, dropout_p: float) -> torch.Tensor:
    offsets = layout.cu_seqlens.to(torch.int64)

    def nest(x: torch.Tensor) -> torch.Tensor:  # (nnz, nh, hd) -> (B, nh, j, hd) jagged in j
        # NJT SDPA wants each of q, k, v contiguous; ours are strided views into the fused QKV output.
        nested = torch.nested.nested_tensor_from_jagged(x.contiguous(), offsets=offsets,
                                                        max_seqlen=layout.max_seqlen)
        return nested.transpose(1, 2)

    out = F.scaled_dot_product_attention(nest(q), nest(k), nest(v), dropout_p=dropout_p)
    return out.transpose(1, 2).values()  # (nnz, nh, hd)


def _attend_repadded(q, k, v, layout: TokenLayout, dropout_p: float) -> torch.Tensor:
    B, T = layout.batch, layout.key_mask.shape[-1]  # the longest row, not the input's T (see TokenLayout)

    def pad(x: torch.Tensor) -> torch.Tensor:  # (nnz, nh, hd) -> (B, nh, T, hd)
        return pad_input(x, layout.packed, B, T).transpose(1, 2)

    out = attend_padded(pad(q), pad(k), pad(v), layout.key_mask, dropout_p)  # (B, nh, T, hd)
    return out.transpose(1, 2).flatten(0, 1)[layout.packed]  # (nnz, nh, hd)
