"""BERT / ALBERT encoders for pretraining, with Hugging Face interop.

Imports only torch, safetensors, numpy and the standard library, so it runs on a bare GPU box.
`transformers` is needed only by the parity tests and the benchmark; `convert.py` reads and writes
the HF file layout itself.

    config = ModelConfig.preset("base", vocab_size=30522)
    model = BertPretrainingModel(config)
    out = model(input_ids, attention_mask, token_type_ids, labels=labels, next_sentence_label=nsp)
    out.loss.backward()

    head = HeadConfig("sequence_classification", num_labels=3)       # or token_classification, span_extraction
    clf = import_task_hf("data/models/<name>/<fp>", head).model       # pretrained backbone, fresh head
    clf(input_ids, attention_mask, token_type_ids, labels=labels).loss.backward()
"""

from bertplat.model.bert import (
    BertBackbone,
    BertPretrainingModel,
    EncoderOutput,
    PretrainingOutput,
    mean_pool,
    param_groups,
)
from bertplat.model.checkpoint import load_checkpoint, save_checkpoint
from bertplat.model.config import ModelConfig
from bertplat.model.convert import export_hf, import_hf
from bertplat.model.convert_heads import TaskImport, export_task_hf, import_task_hf
from bertplat.model.heads import (
    HeadConfig,
    SequenceClassificationModel,
    SpanExtractionModel,
    TaskModel,
    TaskOutput,
    TokenClassificationModel,
    build_task_model,
)
from bertplat.model.padding import pad_input, unpad_input

__all__ = [
    "BertBackbone",
    "BertPretrainingModel",
    "EncoderOutput",
    "HeadConfig",
    "ModelConfig",
    "PretrainingOutput",
    "SequenceClassificationModel",
    "SpanExtractionModel",
    "TaskImport",
    "TaskModel",
    "TaskOutput",
    "TokenClassificationModel",
    "build_task_model",
    "export_hf",
    "export_task_hf",
    "import_hf",
    "import_task_hf",
    "load_checkpoint",
    "mean_pool",
    "pad_input",
    "param_groups",
    "save_checkpoint",
    "unpad_input",
]
