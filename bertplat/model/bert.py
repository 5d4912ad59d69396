"""BERT / ALBERT encoder and its pretraining model (masked LM + next-sentence / sentence-order).

Follows BERT (Devlin et al. 2019) and ALBERT (Lan et al. 2020) with two speed-ups from MosaicBERT
(Portes et al. 2023): padding tokens are dropped once after the embeddings so every matmul and
LayerNorm runs only on real tokens, and the MLM head runs only at the positions that carry a label
(about 15% of tokens) instead of all of them. A third goes further the same way: when only some
positions' final states are read (the [CLS] of a sequence head, the masked positions and [CLS] of
pretraining), the last layer computes only those rows (`BertBackbone.encode_selected`); its keys and
values still come from every token, so the outputs are the same. Outputs match Hugging Face's `BertForPreTraining` /
`AlbertForPreTraining` given the same weights (see `convert.py` and the parity tests).

Padding must be on the right: the pooled output reads each sequence's first token ([CLS]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bertplat.model.attention import QueryLayout, TokenLayout, query_layout, token_layout
from bertplat.model.config import ModelConfig
from bertplat.model.layers import Embeddings, EncoderLayer, activation
from bertplat.model.padding import pad_input, unpad_input

IGNORE_INDEX = -100  # label of a token the MLM loss skips (the PyTorch / HF convention)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's init: normal(0, std) matrices and embeddings, zero biases, LayerNorm 1 / 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class EncoderOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, T, H), zeros at padding positions
    pooled_output: torch.Tensor | None  # (B, H) tanh(dense([CLS])); None for a backbone built without a pooler


class BertBackbone(nn.Module):
    """Embeddings, L encoder layers (one shared layer for ALBERT), pooler: HF's `BertModel` role.

    ``pooler=False`` leaves the pooler out, as HF's token-classification and QA models do
    (`add_pooling_layer=False`): a head that never reads [CLS] should not carry an untrained layer.
    """

    def __init__(self, config: ModelConfig, pooler: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        n_unique = 1 if config.share_layers else config.num_layers
        self.layers = nn.ModuleList([EncoderLayer(config) for _ in range(n_unique)])
        self.ln_final = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.pre_ln else None
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if pooler else None
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, TokenLayout | None]:
        """Final hidden states in the layout the encoder ran in.

        Returns ``(hidden (nnz, H), layout)`` on the unpadded path (config.unpad and a mask given),
        else ``(hidden (B, T, H), None)``.
        """
        x, layout, key_mask = self._embed(input_ids, attention_mask, token_type_ids)
        return self._run_layers(x, layout, key_mask), layout

    def encode_selected(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        token_type_ids: torch.Tensor | None = None,
                        select: str | torch.Tensor = "first") -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states of some positions only, the last layer computing just those rows.

        ``select``: "first", each sequence's first token (what `pool` reads: the first real token on the
        unpadded path, column 0 on the padded one), or a (B, T) bool mask. Returns ``(hidden (M, H),
        positions (M,))``, positions ascending in the flattened (B * T). The states equal those that
        `encode_tokens` gives at the same positions; for a sequence head, the last layer's query and output
        projections, attention and FFN then run on B rows instead of every token.
        """
        B, T = input_ids.shape
        x, layout, key_mask = self._embed(input_ids, attention_mask, token_type_ids)
        first = isinstance(select, str)
        if first and select != "first":
            raise ValueError(f"select must be 'first' or a (batch, seqlen) bool mask, got {select!r}")
        if not first and select.shape != input_ids.shape:
            raise ValueError(f"select has shape {tuple(select.shape)}, input_ids {tuple(input_ids.shape)}")
        if layout is not None:  # rows of the unpadded (nnz, H)
            rows = (layout.cu_seqlens[:-1].long() if first
                    else torch.nonzero(select.flatten()[layout.indices]).flatten())
            positions = layout.indices[rows]
        else:  # rows of the flattened (B * T, H)
            rows = (torch.arange(B, device=input_ids.device) * T if first
                    else torch.nonzero(select.flatten()).flatten())
            positions = rows
        seq = torch.arange(B, device=input_ids.device) if first else positions // T
        query = query_layout(rows, seq, B, 1 if first else None)
        return self._run_layers(x, layout, key_mask, query), positions

    def _embed(self, input_ids, attention_mask, token_type_ids):
        """Embeddings, in the layout the encoder will run in: ``(x, layout, key_mask)``."""
        B, T = self._check_inputs(input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is not None and self.config.unpad:
            # Gather ids once; positions follow from the flat index (index % T), so nothing is padded again.
            ids, indices, cu_seqlens, max_seqlen = unpad_input(input_ids, attention_mask)  # (nnz,)
            layout = token_layout(indices, cu_seqlens, max_seqlen, B, T)
            return self.embeddings(ids, indices % T, token_type_ids.flatten()[indices]), layout, None  # (nnz, H)
        positions = torch.arange(T, device=input_ids.device).expand(B, T)
        key_mask = attention_mask.bool().view(B, 1, 1, T) if attention_mask is not None else None
        return self.embeddings(input_ids, positions, token_type_ids), None, key_mask  # (B, T, H)

    def _run_layers(self, x: torch.Tensor, layout: TokenLayout | None, key_mask: torch.Tensor | None,
                    query: QueryLayout | None = None):
        last = self.config.num_layers - 1
        for i in range(self.config.num_layers):
            x = self.layers[0 if self.config.share_layers else i](x, layout, key_mask, query if i == last else None)
        return self.ln_final(x) if self.ln_final is not None else x

    def pool(self, hidden: torch.Tensor, layout: TokenLayout | None) -> torch.Tensor:
        """tanh(dense(first token)) -> (B, H); the first token of sequence b is row cu_seqlens[b] when unpadded."""
        first = hidden[layout.cu_seqlens[:-1].long()] if layout is not None else hidden[:, 0]  # (B, H)
        return self.pool_first(first)

    def pool_first(self, first: torch.Tensor) -> torch.Tensor:
        """tanh(dense(x)) of the (B, H) first-token states, as `encode_selected(..., "first")` gives them."""
        if self.pooler is None:
            raise ValueError("this backbone was built with pooler=False; build it with pooler=True to pool")
        return torch.tanh(self.pooler(first))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> EncoderOutput:
        """input_ids, attention_mask, token_type_ids: (B, T). Returns (B, T, H) states and (B, H) pooled."""
        hidden, layout = self.encode_tokens(input_ids, attention_mask, token_type_ids)
        pooled = self.pool(hidden, layout) if self.pooler is not None else None
        if layout is not None:
            hidden = pad_input(hidden, layout.indices, layout.batch, layout.seqlen)  # zeros at padding
        elif attention_mask is not None:
            hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)  # same contract as the unpadded path
        return EncoderOutput(hidden, pooled)

    def _check_inputs(self, input_ids, attention_mask, token_type_ids) -> tuple[int, int]:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seqlen), got shape {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings}; truncate the batch or use a bigger config")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, input_ids {tuple(input_ids.shape)}; "
                                 "they must match")
        return B, T


class MaskedLMHead(nn.Module):
    """dense H->E, activation, LayerNorm(E), then a decoder E->V whose weight IS the word embedding."""

    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding):
        super().__init__()
        e = config.embedding_dim
        self.dense = nn.Linear(config.hidden_size, e)
        self.act = activation(config.hidden_act)
        self.ln = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(e, config.vocab_size)
        # Tie as nanoGPT does: one Parameter, two owners. Saves V*E parameters and is what BERT did.
        self.decoder.weight = word_embeddings.weight
        for m in (self.dense, self.ln):
            init_weights(m, config.initializer_range)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.ln(self.act(self.dense(hidden))))  # (M, H) -> (M, V)


@dataclass
class PretrainingOutput:
    """What `BertPretrainingModel.forward` returns. Counts are 0-d int64 tensors (no host sync)."""

    loss: torch.Tensor | None  # mlm_loss + nsp_loss, whichever labels were given; None without labels
    mlm_loss: torch.Tensor | None  # mean cross-entropy over the labelled tokens
    nsp_loss: torch.Tensor | None  # mean cross-entropy of the NSP / SOP head
    mlm_logits: torch.Tensor  # (M, V) at the predicted positions only
    mlm_positions: torch.Tensor  # (M,) where those are, as flat indices into (B * T), ascending
    nsp_logits: torch.Tensor | None  # (B, 2); None when the config has no NSP/SOP head
    mlm_count: torch.Tensor | None  # number of labelled tokens (M when labels are given)
    mlm_correct: torch.Tensor | None  # how many of them the argmax got right
    nsp_count: torch.Tensor | None  # sequences with an NSP/SOP label != -100
    nsp_correct: torch.Tensor | None  # how many of them the head got right


class BertPretrainingModel(nn.Module):
    """Backbone + MLM head (+ NSP for BERT / SOP for ALBERT): HF's `BertForPreTraining` role."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = BertBackbone(config)
        self.mlm = MaskedLMHead(config, self.backbone.embeddings.word)
        self.nsp = nn.Linear(config.hidden_size, 2) if config.sop_or_nsp_head else None
        if self.nsp is not None:
            init_weights(self.nsp, config.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None) -> PretrainingOutput:
        """Run the encoder and both heads.

        input_ids, attention_mask (1 = real token), token_type_ids, labels: (B, T);
        next_sentence_label: (B,). ``labels`` holds the original id at masked positions and -100
        elsewhere; logits are computed only where labels != -100 (and the mask is 1). Without
        labels, logits are computed at every real token (fill-mask inference, parity tests).
        """
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels has shape {tuple(labels.shape)}, input_ids {tuple(input_ids.shape)}")
        if next_sentence_label is not None and self.nsp is None:
            raise ValueError("next_sentence_label given but the config has sop_or_nsp_head=False")
        self.backbone._check_inputs(input_ids, attention_mask, token_type_ids)
        # Gather the positions to predict before the head, so the V-wide matmul runs on M rows only.
        predict = labels != IGNORE_INDEX if labels is not None else torch.ones_like(input_ids, dtype=torch.bool)
        if attention_mask is not None:
            predict = predict & attention_mask.bool()
        if labels is not None and not torch.compiler.is_compiling():
            # training: the last layer computes only the labelled rows and [CLS] (about 15% of the tokens);
            # under torch.compile the whole encoder runs, as the selection's sizes depend on the data
            selected, positions, pooled = self._encode_selected(input_ids, attention_mask, token_type_ids, predict)
        else:
            hidden, layout = self.backbone.encode_tokens(input_ids, attention_mask, token_type_ids)
            pooled = self.backbone.pool(hidden, layout) if self.nsp is not None else None  # (B, H)
            if layout is not None:  # hidden: (nnz, H)
                rows = torch.nonzero(predict.flatten()[layout.indices]).flatten()  # (M,)
                positions = layout.indices[rows]
                selected = hidden[rows]  # (M, H)
            else:  # hidden: (B, T, H)
                positions = torch.nonzero(predict.flatten()).flatten()  # (M,)
                selected = hidden.flatten(0, 1)[positions]  # (M, H)
        nsp_logits = self.nsp(pooled) if self.nsp is not None else None  # (B, 2)
        mlm_logits = self.mlm(selected)  # (M, V)

        out = PretrainingOutput(None, None, None, mlm_logits, positions, nsp_logits, None, None, None, None)
        if labels is not None:
            targets = labels.flatten()[positions]  # (M,)
            # Counted on device, not with len(): no host sync, and torch.compile needs no graph break.
            out.mlm_count = torch.ones_like(targets).sum()
            # sum / max(M, 1): a batch with nothing masked gives loss 0, not NaN.
            out.mlm_loss = F.cross_entropy(mlm_logits.float(), targets, reduction="sum") / out.mlm_count.clamp(min=1)
            with torch.no_grad():
                out.mlm_correct = (mlm_logits.argmax(-1) == targets).sum()
        if next_sentence_label is not None:
            out.nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label, ignore_index=IGNORE_INDEX)
            with torch.no_grad():
                valid = next_sentence_label != IGNORE_INDEX
                out.nsp_count = valid.sum()
                out.nsp_correct = ((nsp_logits.argmax(-1) == next_sentence_label) & valid).sum()
        present = [x for x in (out.mlm_loss, out.nsp_loss) if x is not None]
        out.loss = present[0] + present[1] if len(present) == 2 else (present[0] if present else None)
        return out

    def _encode_selected(self, input_ids, attention_mask, token_type_ids, predict: torch.Tensor):
        """The final states of the ``predict`` positions (M, H), those positions (M,), and the pooled [CLS]
        (B, H) when there is an NSP / SOP head (else None), the last layer computing only those rows."""
        B, T = input_ids.shape
        select = predict
        if self.nsp is not None:  # [CLS]: the first real token unpadded, column 0 padded (as `pool` reads)
            unpadded = attention_mask is not None and self.config.unpad
            first = (attention_mask.int().argmax(1) if unpadded
                     else torch.zeros(B, dtype=torch.long, device=input_ids.device))
            first = torch.arange(B, device=input_ids.device) * T + first  # (B,) flat positions
            select = predict.flatten().index_fill(0, first, True).view(B, T)
        states, positions = self.backbone.encode_selected(input_ids, attention_mask, token_type_ids, select)
        pooled = None
        if self.nsp is not None:
            pooled = self.backbone.pool_first(states[torch.searchsorted(positions, first)])
            rows = torch.nonzero(predict.flatten()[positions]).flatten()  # (M,) the labelled ones
            states, positions = states[rows], positions[rows]
        return states, positions, pooled

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None) -> EncoderOutput:
        """The backbone alone: (B, T, H) last hidden state (zeros at padding) and (B, H) pooled output."""
        return self.backbone(input_ids, attention_mask, token_type_ids)


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence embedding as in sentence-transformers' mean pooling: (B, T, H), (B, T) -> (B, H)."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)  # (B, T, 1)
    return (last_hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices and embeddings; none on biases and LayerNorm weights.

    As in BERT's optimizer (`exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"]`).
    Tied parameters appear once.
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, nn.LayerNorm) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
