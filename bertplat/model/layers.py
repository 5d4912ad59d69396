"""The building blocks of the encoder: embeddings, self-attention, one transformer layer.

Follows BERT (Devlin et al. 2019, google-research/bert `modeling.py`) and ALBERT (Lan et al.
2020) as laid out in nanoGPT's `model.py`: fused QKV projection, SDPA for the attention itself.
Every block accepts either a padded batch (B, T, H) or the unpadded rows (nnz, H) of
`padding.unpad_input`; only attention needs to know which, through its `TokenLayout`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertplat.model.attention import QueryLayout, TokenLayout, attend_padded, attend_queries, attend_unpadded
from bertplat.model.config import ModelConfig
from bertplat.model.dropout import Dropout


def activation(name: str):
    """The FFN / head nonlinearity: exact erf GELU for BERT, tanh approximation ("gelu_new") for ALBERT."""
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_new":
        return nn.GELU(approximate="tanh")
    raise ValueError(f"unsupported hidden_act {name!r}")


class Embeddings(nn.Module):
    """word + position + token type, LayerNorm, dropout; ALBERT then projects E -> H.

    ALBERT's factorisation keeps the V x E table small (E=128) and maps to the hidden width with
    one Linear, which ALBERT checkpoints store even when E == H, so it exists iff arch == "albert".
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        e = config.embedding_dim
        # padding_idx: the pad row starts at zero and the lookup never updates it (as HF BERT does).
        self.word = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, e)
        self.token_type = nn.Embedding(config.type_vocab_size, e)
        self.ln = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.drop = Dropout(config.hidden_dropout)
        self.proj = nn.Linear(e, config.hidden_size) if config.arch == "albert" else None

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        # ids: (B, T) or (nnz,); same shape for all three. Returns (..., H).
        x = self.word(input_ids) + self.position(position_ids) + self.token_type(token_type_ids)  # (..., E)
        x = self.drop(self.ln(x))
        return self.proj(x) if self.proj is not None else x


class SelfAttention(nn.Module):
    """Multi-head bidirectional self-attention with one fused QKV matmul."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.dropout_p = config.attention_dropout
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)  # rows: [query; key; value]
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.unpadded_impl = "auto"  # tests force "jagged"/"padded"; see attention.attend_unpadded

    def forward(self, x: torch.Tensor, layout: TokenLayout | None, key_mask: torch.Tensor | None,
                query: QueryLayout | None = None) -> torch.Tensor:
        dropout_p = self.dropout_p if self.training else 0.0
        if query is not None:
            return self._forward_queries(x, layout, key_mask, query, dropout_p)
        if layout is not None:  # x: (nnz, H)
            q, k, v = self.qkv(x).view(-1, 3, self.num_heads, self.head_dim).unbind(1)  # each (nnz, nh, hd)
            y = attend_unpadded(q, k, v, layout, dropout_p, self.unpadded_impl)  # (nnz, nh, hd)
            return self.out(y.flatten(1))  # (nnz, H)
        B, T, H = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hd)
        y = attend_padded(q, k, v, key_mask, dropout_p)  # (B, nh, T, hd)
        return self.out(y.transpose(1, 2).reshape(B, T, H))  # (B, T, H)

    def _forward_queries(self, x, layout, key_mask, query: QueryLayout, dropout_p: float) -> torch.Tensor:
        """The outputs of ``query.rows`` only -> (M, H). Keys and values still come from every token, but the
        query projection, attention and output projection run on M rows: for a head that reads [CLS], M = B."""
        H, nh, hd = x.shape[-1], self.num_heads, self.head_dim
        flat = x.reshape(-1, H)  # (nnz or B*T, H)
        if isinstance(self.qkv, nn.Linear):
            q = F.linear(flat[query.rows], self.qkv.weight[:H], self.qkv.bias[:H])  # (M, H)
            kv = F.linear(x, self.qkv.weight[H:], self.qkv.bias[H:])  # (nnz, 2H) or (B, T, 2H)
        else:  # a replaced projection (the embed stage's int8 Linear): project every row, keep the queries
            qkv = self.qkv(x)
            q, kv = qkv.reshape(-1, 3 * H)[query.rows, :H], qkv[..., H:]
        q = q.reshape(-1, nh, hd)  # (M, nh, hd)
        if layout is not None:
            k, v = kv.view(-1, 2, nh, hd).unbind(1)  # each (nnz, nh, hd)
        else:
            B, T = x.shape[:2]
            k, v = kv.view(B, T, 2, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hd)
        y = attend_queries(q, k, v, query, layout, key_mask, dropout_p)  # (M, nh, hd)
        return self.out(y.flatten(1))  # (M, H)


class EncoderLayer(nn.Module):
    """Attention then a GELU FFN, each with dropout, a residual and a LayerNorm.

    Post-LN (BERT, ALBERT): x = LN(x + f(x)). Pre-LN (GPT-2 style, more stable at depth and high
    learning rates): x = x + f(LN(x)); the encoder then adds one final LayerNorm.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.pre_ln = config.pre_ln
        self.attn = SelfAttention(config)
        self.ln_attn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ln_ffn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.drop = Dropout(config.hidden_dropout)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_out(self.act(self.ffn_in(x)))  # (..., H) -> (..., I) -> (..., H)

    def forward(self, x: torch.Tensor, layout: TokenLayout | None = None,
                key_mask: torch.Tensor | None = None, query: QueryLayout | None = None) -> torch.Tensor:
        # x: (B, T, H) padded or (nnz, H) unpadded; the shape is kept. With ``query``: only the outputs of
        # query.rows of the flattened x, (M, H); every position after attention is per token, so the
        # residual, the FFN and both LayerNorms run on those rows alone.
        def rows(t: torch.Tensor) -> torch.Tensor:
            return t if query is None else t.reshape(-1, t.shape[-1])[query.rows]

        if self.pre_ln:
            x = rows(x) + self.drop(self.attn(self.ln_attn(x), layout, key_mask, query))
            return x + self.drop(self.ffn(self.ln_ffn(x)))
        x = self.ln_attn(rows(x) + self.drop(self.attn(x, layout, key_mask, query)))
        return self.ln_ffn(x + self.drop(self.ffn(x)))

