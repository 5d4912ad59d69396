"""Task heads on the BERT / ALBERT backbone: sequence classification (and regression), token
classification, span extraction.

The layouts are Hugging Face's `BertForSequenceClassification`, `BertForTokenClassification`,
`BertForQuestionAnswering` and their ALBERT twins, so `convert_heads.py` maps them one to one:

- sequence: tanh(dense([CLS])) pooled output -> dropout -> Linear(H, num_labels)     (B, C);
            the last layer computes the [CLS] rows alone, which is all the head reads
- token:    every token's final state -> dropout -> Linear(H, num_labels); no pooler (B, T, C)
- span:     every token's final state -> Linear(H, 2) -> start, end; no pooler, no dropout (B, T) each

They run on the same encoder path as pretraining: with ``config.unpad`` and an attention mask the
token heads compute on the (nnz, H) rows of real tokens only and scatter back.

Two deliberate differences from HF, both at padding positions (where HF computes logits from the
states of pad tokens): token logits are 0 there and the token loss ignores them whatever their
label; span logits are ``PAD_LOGIT`` there, so softmax gives padding zero probability and no answer
can start or end in it. On a batch without padding every logit and loss equals HF's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bertplat.model.bert import IGNORE_INDEX, BertBackbone, init_weights
from bertplat.model.config import ModelConfig
from bertplat.model.dropout import Dropout
from bertplat.model.padding import pad_input

TASKS = ("sequence_classification", "token_classification", "span_extraction")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
PAD_LOGIT = -1e4  # span logit at padding: exp() underflows to 0 in fp32 / bf16, yet a loss on it stays finite


@dataclass(frozen=True)
class HeadConfig:
    """Which task head sits on the backbone, and its label space."""

    task: str  # one of TASKS
    num_labels: int = 2  # output width; 1 = regression; span extraction is always 2 (start, end)
    problem_type: str | None = None  # sequence task only; None = "regression" if num_labels == 1 else single-label
    labels: tuple[str, ...] | None = None  # label names in id order (HF id2label); None = LABEL_0, LABEL_1, ...
    classifier_dropout: float | None = None  # dropout before the classifier; None = the backbone's hidden_dropout

    def __post_init__(self) -> None:
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))
        if self.task == "sequence_classification" and self.problem_type is None and isinstance(self.num_labels, int):
            derived = "regression" if self.num_labels == 1 else "single_label_classification"
            object.__setattr__(self, "problem_type", derived)
        problems = _problems(self)
        if problems:
            raise ValueError("invalid HeadConfig:\n  - " + "\n  - ".join(problems))

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.labels if self.labels is not None else tuple(f"LABEL_{i}" for i in range(self.num_labels))

    def dropout(self, config: ModelConfig) -> float:
        return self.classifier_dropout if self.classifier_dropout is not None else config.hidden_dropout

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown HeadConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


def _problems(h: HeadConfig) -> list[str]:
    if h.task not in TASKS:
        return [f"task must be one of {TASKS}, got {h.task!r}"]
    out: list[str] = []
    if not isinstance(h.num_labels, int) or isinstance(h.num_labels, bool) or h.num_labels < 1:
        return [f"num_labels must be a positive integer, got {h.num_labels!r}"]
    if h.task == "span_extraction" and h.num_labels != 2:
        out.append(f"span_extraction has exactly 2 outputs (start, end); got num_labels={h.num_labels}")
    if h.task == "token_classification" and h.num_labels < 2:
        out.append("token_classification needs num_labels >= 2 (one per tag)")
    if h.task == "sequence_classification":
        if h.problem_type not in PROBLEM_TYPES:
            out.append(f"problem_type must be one of {PROBLEM_TYPES}, got {h.problem_type!r}")
        elif h.problem_type != "regression" and h.num_labels == 1:
            out.append(f"problem_type={h.problem_type!r} needs num_labels >= 2; for one target use 'regression'")
    elif h.problem_type is not None:
        out.append(f"problem_type applies to sequence_classification only, not {h.task}")
    if h.labels is not None:
        if len(h.labels) != h.num_labels:
            out.append(f"{len(h.labels)} label names {list(h.labels)[:5]} for num_labels={h.num_labels}")
        elif len(set(h.labels)) != len(h.labels) or not all(isinstance(x, str) and x for x in h.labels):
            out.append(f"label names must be distinct non-empty strings, got {list(h.labels)}")
    p = h.classifier_dropout
    if p is not None and (not isinstance(p, (int, float)) or not 0.0 <= p < 1.0):
        out.append(f"classifier_dropout must be None or a probability in [0, 1), got {p!r}")
    return out


@dataclass
class TaskOutput:
    """What a task model's forward returns; the fields a head does not produce are None."""

    loss: torch.Tensor | None  # 0-d, float32; None without labels
    logits: torch.Tensor | None = None  # sequence: (B, C); token: (B, T, C), 0 at padding
    start_logits: torch.Tensor | None = None  # span: (B, T), PAD_LOGIT at padding
    end_logits: torch.Tensor | None = None  # span: (B, T)


class TaskModel(nn.Module):
    """Backbone + one linear head; subclasses say what the head reads and which loss applies."""

    task: str = ""

    def __init__(self, config: ModelConfig, head: HeadConfig):
        super().__init__()
        if head.task != self.task:
            raise ValueError(f"{type(self).__name__} is the {self.task} model; got a HeadConfig for {head.task} "
                             "(use build_task_model to pick the class)")
        self.config, self.head_config = config, head
        self.backbone = BertBackbone(config, pooler=head.task == "sequence_classification")
        self.dropout = Dropout(head.dropout(config)) if head.task != "span_extraction" else None
        self.head = nn.Linear(config.hidden_size, head.num_labels)
        init_weights(self.head, config.initializer_range)

    def token_logits(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        """Head applied to every real token -> (B, T, C), 0 at padding, on whichever path the backbone runs."""
        hidden, layout = self.backbone.encode_tokens(input_ids, attention_mask, token_type_ids)
        if self.dropout is not None:
            hidden = self.dropout(hidden)
        logits = self.head(hidden)  # (nnz, C) unpadded, else (B, T, C)
        if layout is not None:
            return pad_input(logits, layout.indices, layout.batch, layout.seqlen)
        if attention_mask is not None:
            return logits * attention_mask.unsqueeze(-1).to(logits.dtype)
        return logits


class SequenceClassificationModel(TaskModel):
    """One label (or regression target) per sequence or sentence pair (segments by token_type_ids)."""

    task = "sequence_classification"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> TaskOutput:
        """input_ids, attention_mask, token_type_ids: (B, T); labels: (B,) class ids, (B,) / (B, C) floats."""
        # only [CLS] is read: the last layer computes its row alone (see BertBackbone.encode_selected)
        first, _ = self.backbone.encode_selected(input_ids, attention_mask, token_type_ids, "first")  # (B, H)
        logits = self.head(self.dropout(self.backbone.pool_first(first)))  # (B, C)
        return TaskOutput(self.loss(logits, labels) if labels is not None else None, logits=logits)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """As HF: MSE for regression, cross-entropy (ignoring -100) for one label, BCE for multi-label."""
        kind, logits = self.head_config.problem_type, logits.float()
        if kind == "regression":
            if self.head_config.num_labels == 1:
                return F.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
            return F.mse_loss(logits, labels.to(logits.dtype))
        if kind == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return F.cross_entropy(logits, labels.view(-1), ignore_index=IGNORE_INDEX)


class TokenClassificationModel(TaskModel):
    """One tag per token (NER); labels of -100 (sub-words after the first, specials, padding) are skipped."""

    task = "token_classification"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> TaskOutput:
        """input_ids, attention_mask, token_type_ids, labels: (B, T). Returns logits (B, T, C)."""
        logits = self.token_logits(input_ids, attention_mask, token_type_ids)  # (B, T, C)
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels has shape {tuple(labels.shape)}, input_ids {tuple(input_ids.shape)}")
            if attention_mask is not None:  # padding never counts, whatever label it carries
                labels = labels.masked_fill(~attention_mask.bool(), IGNORE_INDEX)
            flat = labels.flatten()
            count = (flat != IGNORE_INDEX).sum()
            # sum / max(count, 1): a batch with no labelled token gives 0, not NaN (the mean otherwise).
            loss = F.cross_entropy(logits.flatten(0, 1).float(), flat, ignore_index=IGNORE_INDEX,
                                   reduction="sum") / count.clamp(min=1)
        return TaskOutput(loss, logits=logits)


class SpanExtractionModel(TaskModel):
    """Extractive QA: a start and an end logit per token."""

    task = "span_extraction"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None) -> TaskOutput:
        """input_ids, attention_mask, token_type_ids: (B, T); start/end_positions: (B,) token indices."""
        logits = self.token_logits(input_ids, attention_mask, token_type_ids)  # (B, T, 2)
        if attention_mask is not None:
            logits = logits.masked_fill(~attention_mask.bool().unsqueeze(-1), PAD_LOGIT)
        start, end = (t.squeeze(-1) for t in logits.split(1, dim=-1))  # (B, T) each
        loss = None
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give both start_positions and end_positions, or neither")
        if start_positions is not None:
            # As HF: a position outside the input (a truncated answer) is clamped to T and ignored.
            T = start.shape[1]
            s, e = (p.view(-1).clamp(0, T) for p in (start_positions, end_positions))
            loss = (F.cross_entropy(start.float(), s, ignore_index=T)
                    + F.cross_entropy(end.float(), e, ignore_index=T)) / 2
        return TaskOutput(loss, start_logits=start, end_logits=end)


MODEL_CLASSES: dict[str, type[TaskModel]] = {cls.task: cls for cls in
                                             (SequenceClassificationModel, TokenClassificationModel,
                                              SpanExtractionModel)}


def build_task_model(config: ModelConfig, head: HeadConfig) -> TaskModel:
    """The model class for ``head.task``, freshly initialised."""
    return MODEL_CLASSES[head.task](config, head)
