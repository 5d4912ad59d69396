"""Hugging Face interop for the task models: ours <-> HF `BertForSequenceClassification`,
`BertForTokenClassification`, `BertForQuestionAnswering` and the ALBERT ones.

Built on `convert.py`'s key tables (`hf_key_map(config, task=...)`) and directory helpers; this
module adds the head configs (`id2label`, `num_labels`, `problem_type`, classifier dropout) and the
start of fine-tuning: `import_task_hf` puts a head on any BERT-family directory, an encoder-only
`BertModel` (a sentence-transformers model too), a `*ForPreTraining` export, bertplat's own
pretraining checkpoint, or an already fine-tuned model, and says which weights are new and which
were dropped.

    head = HeadConfig("sequence_classification", num_labels=2, labels=("negative", "positive"))
    imported = import_task_hf("data/models/mini/<fp>", head)   # backbone loaded, head fresh
    export_task_hf(imported.model, "out/sst2", tokenizer_dir="data/models/mini/<fp>")
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bertplat.model.checkpoint import load_checkpoint
from bertplat.model.config import ModelConfig
from bertplat.model.convert import (
    HEAD_LAYOUTS,
    _tied_hf_keys,
    collect_groups,
    config_from_hf,
    hf_config_dict,
    hf_key_map,
    normalise_hf_state_dict,
    rename_to_hf,
    unused_hf_keys,
)
from bertplat.model.heads import HeadConfig, TaskModel, build_task_model
from bertplat.model.hf_dir import check_vocabulary, read_hf_config, read_weights, write_hf_dir

__all__ = ["TaskImport", "export_task_hf", "from_hf_task_state_dict", "head_config_from_hf", "hf_task_config_dict",
           "import_task_hf", "task_of_hf", "to_hf_task_state_dict"]

log = logging.getLogger(__name__)


@dataclass
class TaskImport:
    """A task model ready to fine-tune or evaluate, and what the import did to get it."""

    model: TaskModel  # in eval mode, like from_pretrained
    config: ModelConfig
    head: HeadConfig
    source: str  # what the directory held, e.g. "BertForPreTraining", "bertplat checkpoint"
    new_weights: list[str] = field(default_factory=list)  # our keys left at their fresh init
    dropped_weights: list[str] = field(default_factory=list)  # keys of the file nothing was loaded from

    def summary(self) -> str:
        dropped = ", ".join(self.dropped_weights[:4]) + (" ..." if len(self.dropped_weights) > 4 else "")
        return (f"{self.head.task} model ({self.head.num_labels} labels) from a {self.source}: "
                f"new {self.new_weights or 'none'}; dropped {len(self.dropped_weights)} ({dropped or 'none'})")


# ---- configs ------------------------------------------------------------------------------------
def _dropout_key(config: ModelConfig) -> str:
    return "classifier_dropout" if config.arch == "bert" else "classifier_dropout_prob"


def hf_task_config_dict(config: ModelConfig, head: HeadConfig) -> dict:
    """config.json of the HF task class: the backbone's fields plus architectures, labels and dropout."""
    d = hf_config_dict(config, heads=False)
    d["architectures"] = [("Bert" if config.arch == "bert" else "Albert") + HEAD_LAYOUTS[head.task][0]]
    names = head.label_names
    d.update(id2label={str(i): n for i, n in enumerate(names)}, label2id={n: i for i, n in enumerate(names)},
             num_labels=head.num_labels)
    if head.problem_type is not None:
        d["problem_type"] = head.problem_type
    if head.task != "span_extraction":  # HF's QA heads have no dropout
        d[_dropout_key(config)] = head.dropout(config)
    return d


def task_of_hf(hf: dict) -> str | None:
    """The task whose HF class `architectures` names; None for a backbone or pretraining checkpoint."""
    for name in hf.get("architectures") or []:
        for task, (suffix, _, _) in HEAD_LAYOUTS.items():
            if str(name).endswith(suffix):
                return task
    return None


def head_config_from_hf(hf: dict, task: str, source: str = "config") -> HeadConfig:
    """The head an HF task config.json describes."""
    id2label = hf.get("id2label") or {}
    try:
        labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int)) or None
    except ValueError:
        raise ValueError(f"{source}: id2label keys must be integers, got {sorted(id2label)[:5]}") from None
    num_labels = len(labels) if labels else hf.get("num_labels", 2)
    if labels == tuple(f"LABEL_{i}" for i in range(num_labels)):
        labels = None  # HF's placeholder names: no label set was declared
    # ALBERT's config defaults classifier_dropout_prob to 0.1; BERT's classifier_dropout to None (= hidden).
    dropout = hf.get("classifier_dropout") if hf.get("model_type") == "bert" else hf.get("classifier_dropout_prob", 0.1)
    if dropout == hf.get("hidden_dropout_prob", 0.1):
        dropout = None  # ours for "the backbone's": export writes it resolved, so a round trip is exact
    try:
        return HeadConfig(task, num_labels=num_labels, labels=labels,
                          problem_type=hf.get("problem_type") if task == "sequence_classification" else None,
                          classifier_dropout=None if task == "span_extraction" else dropout)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


# ---- state dicts --------------------------------------------------------------------------------
def to_hf_task_state_dict(model: TaskModel) -> dict[str, torch.Tensor]:
    """Our weights under the HF task class's names (strict-clean for its `load_state_dict`)."""
    return rename_to_hf(model.state_dict(), hf_key_map(model.config, task=model.head_config.task))


def from_hf_task_state_dict(state_dict: dict[str, torch.Tensor], config: ModelConfig, head: HeadConfig,
                            source: str = "state dict", load_head: bool = True) -> tuple[TaskModel, list, list]:
    """``(model, new weights, dropped weights)`` from any BERT-family HF state dict.

    The backbone must be there; the pooler (sequence task) and the head are loaded when the file has
    them (the head only with ``load_head``) and otherwise keep their fresh init. Whatever else the
    file holds (pretraining heads, another task's head, a pooler this task has no use for) is dropped.
    """
    sd, prefix = normalise_hf_state_dict(state_dict, config, source)
    model = build_task_model(config, head)
    groups = hf_key_map(config, prefix, task=head.task)
    if not load_head:
        del groups["head"]
    ours, used, _ = collect_groups(sd, groups, model.state_dict(), config, source)
    tied = _tied_hf_keys(config, prefix)
    dropped = sorted(unused_hf_keys(sd, used, tied, prefix, source) + [k for k in tied if k in sd])
    result = model.load_state_dict(ours, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    return model, sorted(result.missing_keys), dropped


def _from_own_checkpoint(model_dir: Path, head: HeadConfig, overrides: dict) -> TaskImport:
    """The backbone of bertplat's own checkpoint layout (a pre-LN pretraining export) under a fresh head."""
    pretrained = load_checkpoint(model_dir)
    config = pretrained.config.replace(**overrides)
    check_vocabulary(model_dir, config.vocab_size)
    model = build_task_model(config, head)
    ours = pretrained.state_dict()
    wanted = set(model.state_dict())
    result = model.load_state_dict({k: v for k, v in ours.items() if k in wanted}, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    dropped = sorted(k for k in ours if k not in wanted)
    return TaskImport(model.eval(), config, head, "bertplat checkpoint", sorted(result.missing_keys), dropped)


# ---- directories --------------------------------------------------------------------------------
def export_task_hf(model: TaskModel, out_dir: str | Path, tokenizer_dir: str | Path | None = None,
                   overwrite: bool = False) -> Path:
    """Write the HF task class's directory (config.json + model.safetensors + tokenizer files), atomically."""
    return write_hf_dir(out_dir, hf_task_config_dict(model.config, model.head_config),
                        to_hf_task_state_dict(model), tokenizer_dir, overwrite)


def import_task_hf(model_dir: str | Path, head: HeadConfig | None = None, reset_head: bool = False,
                   **overrides) -> TaskImport:
    """A task model from a BERT-family directory, in eval mode; ``overrides`` set ModelConfig fields (unpad...).

    ``head=None`` takes the head the directory's config.json declares (a fine-tuned model). With a
    ``head``: a backbone or pretraining directory gets it freshly initialised; a model fine-tuned
    for the same task keeps its trained head, and must then agree on the labels, unless
    ``reset_head=True`` (keep the backbone, start the head again: fine-tuning on a new label set).
    """
    model_dir, hf, config_path = read_hf_config(model_dir)
    if "model_type" not in hf and "arch" in hf:  # bertplat's own layout, as pretrain exports pre-LN models
        if head is None:
            raise ValueError(f"{model_dir} is a bertplat pretraining checkpoint with no task head; say which "
                             "head to put on it, e.g. HeadConfig('sequence_classification', num_labels=2)")
        return _from_own_checkpoint(model_dir, head, overrides)
    config = config_from_hf(hf, source=str(config_path), **overrides)
    check_vocabulary(model_dir, config.vocab_size)
    file_task = task_of_hf(hf)
    arch_name = (hf.get("architectures") or [f"{config.arch} model"])[0]
    file_head = head_config_from_hf(hf, file_task, str(config_path)) if file_task else None
    if head is None:
        if file_head is None:
            raise ValueError(f"{model_dir} holds a {arch_name} checkpoint with no task head; say which head to put "
                             "on it, e.g. import_task_hf(dir, HeadConfig('token_classification', num_labels=9))")
        head = file_head
    load_head = file_head is not None and file_head.task == head.task and not reset_head
    if load_head:
        _check_same_head(file_head, head, arch_name, config_path)
        if head.labels is None and file_head.labels is not None:  # keep the names the head was trained with
            head = dataclasses.replace(head, labels=file_head.labels)
    state_dict, weights_path = read_weights(model_dir)
    model, new, dropped = from_hf_task_state_dict(state_dict, config, head, str(weights_path), load_head)
    imported = TaskImport(model.eval(), config, head, str(arch_name), new, dropped)
    log.info("%s: %s", model_dir, imported.summary())
    return imported


def _check_same_head(found: HeadConfig, asked: HeadConfig, arch_name: str, config_path: Path) -> None:
    """A fine-tuned head is reused only for the label space it was trained on."""
    problems = []
    if found.num_labels != asked.num_labels:
        problems.append(f"it has num_labels={found.num_labels} {list(found.label_names)[:8]}, "
                        f"you asked for num_labels={asked.num_labels}")
    elif asked.labels is not None and found.labels is not None and asked.labels != found.labels:
        problems.append(f"its labels are {list(found.labels)}, you asked for {list(asked.labels)} (order matters)")
    if found.problem_type != asked.problem_type:
        problems.append(f"its problem_type is {found.problem_type!r}, you asked for {asked.problem_type!r}")
    if problems:
        raise ValueError(f"{config_path} is an already fine-tuned {arch_name}, and {'; '.join(problems)}. "
                         "To fine-tune it on the new label set, pass reset_head=True (the backbone is kept, the "
                         "head starts fresh); to use it as trained, ask for its labels or pass head=None")
