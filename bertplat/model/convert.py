"""Hugging Face interop: our `BertPretrainingModel` <-> HF `BertForPreTraining` / `AlbertForPreTraining`.

With `convert_heads.py` (the task heads, built on the key tables here: `hf_key_map(..., task=...)`)
the only module that knows HF parameter and config names. It reads and writes the HF directory
layout (config.json + model.safetensors, through `hf_dir.py`) itself, so neither direction needs
`transformers` installed; the parity tests check the result against `transformers` 5.x. Follows
litgpt's `convert_hf_checkpoint.py`: an explicit table of (ours, theirs) names per architecture.

Our fused QKV weight (3H, H) is HF's query, key and value weights stacked in that order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from bertplat.model.bert import BertPretrainingModel, mean_pool
from bertplat.model.config import ModelConfig
from bertplat.model.hf_dir import (  # noqa: F401  (TOKENIZER_FILES: re-exported for earlier callers)
    TOKENIZER_FILES,
    check_vocabulary,
    read_hf_config,
    read_weights,
    write_hf_dir,
)

__all__ = ["HEAD_LAYOUTS", "check_vocabulary", "config_from_hf", "export_hf", "from_hf_state_dict",
           "hf_config_dict", "hf_key_map", "import_hf", "load_model_dir", "mean_pool", "read_hf_config", "to_hf_state_dict"]

log = logging.getLogger(__name__)

Pair = tuple[str, tuple[str, ...]]  # (our key, HF keys); several HF keys are concatenated on dim 0
_QKV = ("query", "key", "value")
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # non-persistent HF buffers old files hold
# our task (bertplat.model.heads.TASKS) -> (HF class suffix, HF head module, whether the HF class has a pooler)
HEAD_LAYOUTS = {"sequence_classification": ("ForSequenceClassification", "classifier", True),
                "token_classification": ("ForTokenClassification", "classifier", False),
                "span_extraction": ("ForQuestionAnswering", "qa_outputs", False)}


# ---- key tables ---------------------------------------------------------------------------------
def _bert_layer(hf: str, ours: str) -> list[Pair]:
    out: list[Pair] = []
    for p in ("weight", "bias"):
        out += [(f"{ours}.attn.qkv.{p}", tuple(f"{hf}.attention.self.{n}.{p}" for n in _QKV)),
                (f"{ours}.attn.out.{p}", (f"{hf}.attention.output.dense.{p}",)),
                (f"{ours}.ln_attn.{p}", (f"{hf}.attention.output.LayerNorm.{p}",)),
                (f"{ours}.ffn_in.{p}", (f"{hf}.intermediate.dense.{p}",)),
                (f"{ours}.ffn_out.{p}", (f"{hf}.output.dense.{p}",)),
                (f"{ours}.ln_ffn.{p}", (f"{hf}.output.LayerNorm.{p}",))]
    return out


def _albert_layer(hf: str, ours: str) -> list[Pair]:
    out: list[Pair] = []
    for p in ("weight", "bias"):
        out += [(f"{ours}.attn.qkv.{p}", tuple(f"{hf}.attention.{n}.{p}" for n in _QKV)),
                (f"{ours}.attn.out.{p}", (f"{hf}.attention.dense.{p}",)),
                (f"{ours}.ln_attn.{p}", (f"{hf}.attention.LayerNorm.{p}",)),
                (f"{ours}.ffn_in.{p}", (f"{hf}.ffn.{p}",)),
                (f"{ours}.ffn_out.{p}", (f"{hf}.ffn_output.{p}",)),
                (f"{ours}.ln_ffn.{p}", (f"{hf}.full_layer_layer_norm.{p}",))]
    return out


def _linear(ours: str, hf: str) -> list[Pair]:
    return [(f"{ours}.{p}", (f"{hf}.{p}",)) for p in ("weight", "bias")]


def hf_key_map(config: ModelConfig, prefix: str | None = None, task: str | None = None) -> dict[str, list[Pair]]:
    """Our keys -> HF keys, in groups: "backbone", "pooler", "mlm", "nsp".

    ``prefix`` is the backbone's prefix in the HF file: "bert." / "albert." for a pretraining
    checkpoint (the default), "" for a bare `BertModel` / `AlbertModel` checkpoint. With ``task``
    (a key of HEAD_LAYOUTS) the groups are those of the task model instead: "backbone", "pooler"
    (sequence classification only, as in HF) and "head" (our ``head`` Linear).
    """
    _check_expressible(config)
    p = f"{config.arch}." if prefix is None else prefix
    emb = [(f"backbone.embeddings.{ours}.weight", (f"{p}embeddings.{hf}.weight",))
           for ours, hf in (("word", "word_embeddings"), ("position", "position_embeddings"),
                            ("token_type", "token_type_embeddings"))]
    emb += _linear("backbone.embeddings.ln", f"{p}embeddings.LayerNorm")
    if config.arch == "bert":
        layers = [pair for i in range(config.num_layers)
                  for pair in _bert_layer(f"{p}encoder.layer.{i}", f"backbone.layers.{i}")]
        groups = {"backbone": emb + layers,
                  "pooler": _linear("backbone.pooler", f"{p}pooler.dense"),
                  "mlm": _linear("mlm.dense", "cls.predictions.transform.dense")
                  + _linear("mlm.ln", "cls.predictions.transform.LayerNorm")
                  + [("mlm.decoder.bias", ("cls.predictions.bias",))],
                  "nsp": _linear("nsp", "cls.seq_relationship")}
    else:
        # One HF layer group per distinct layer: 1 when shared, num_layers when not.
        n_groups = 1 if config.share_layers else config.num_layers
        layers = [pair for g in range(n_groups)
                  for pair in _albert_layer(f"{p}encoder.albert_layer_groups.{g}.albert_layers.0",
                                            f"backbone.layers.{g}")]
        groups = {"backbone": emb + _linear("backbone.embeddings.proj", f"{p}encoder.embedding_hidden_mapping_in")
                  + layers,
                  "pooler": _linear("backbone.pooler", f"{p}pooler"),
                  "mlm": _linear("mlm.dense", "predictions.dense") + _linear("mlm.ln", "predictions.LayerNorm")
                  + [("mlm.decoder.bias", ("predictions.bias",))],
                  "nsp": _linear("nsp", "sop_classifier.classifier")}
    if not config.sop_or_nsp_head:
        groups["nsp"] = []
    if task is not None:
        if task not in HEAD_LAYOUTS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(HEAD_LAYOUTS)}")
        _, module, pooled = HEAD_LAYOUTS[task]
        groups = {"backbone": groups["backbone"], **({"pooler": groups["pooler"]} if pooled else {}),
                  "head": _linear("head", module)}
    return groups


def _mlm_head(config: ModelConfig) -> str:
    return "cls.predictions" if config.arch == "bert" else "predictions"


def _tied_hf_keys(config: ModelConfig, prefix: str) -> dict[str, str]:
    """HF keys that are copies of other HF keys (decoder tied to the word embedding and to the bias)."""
    head = _mlm_head(config)
    return {f"{head}.decoder.weight": f"{prefix}embeddings.word_embeddings.weight",
            f"{head}.decoder.bias": f"{head}.bias"}


def _check_expressible(config: ModelConfig) -> None:
    if config.pre_ln:
        raise ValueError("a pre-LN model (pre_ln=True) cannot be expressed as HF BERT/ALBERT, which are "
                         "post-LN: the weights would load but compute something else. Keep it in our "
                         "checkpoint format (bertplat.model.save_checkpoint)")


# ---- state dicts --------------------------------------------------------------------------------
def to_hf_state_dict(model: BertPretrainingModel, heads: bool = True) -> dict[str, torch.Tensor]:
    """Our weights under HF names.

    ``heads=True``: the `*ForPreTraining` layout, tied copies included (so HF `load_state_dict` is
    strict-clean). ``heads=False``: the bare `BertModel` / `AlbertModel` layout (no prefix, no heads).
    """
    config = model.config
    groups = hf_key_map(config, None if heads else "")
    if not heads:
        groups = {name: groups[name] for name in ("backbone", "pooler")}
    out = rename_to_hf(model.state_dict(), groups)
    if heads:
        for tied, source in _tied_hf_keys(config, f"{config.arch}.").items():
            out[tied] = out[source]
    return out


def rename_to_hf(ours: dict[str, torch.Tensor], groups: dict[str, list[Pair]]) -> dict[str, torch.Tensor]:
    """Our tensors under the HF names of ``groups`` (see `hf_key_map`)."""
    out: dict[str, torch.Tensor] = {}
    for pairs in groups.values():
        for our_key, hf_keys in pairs:
            t = ours[our_key].detach()
            if len(hf_keys) == 1:
                out[hf_keys[0]] = t
            else:  # split the fused QKV; clone so the parts do not share storage (safetensors refuses that)
                for hf_key, part in zip(hf_keys, t.chunk(len(hf_keys), dim=0), strict=True):
                    out[hf_key] = part.clone()
    return out


def from_hf_state_dict(state_dict: dict[str, torch.Tensor], config: ModelConfig,
                       source: str = "state dict") -> BertPretrainingModel:
    """Build our model from HF weights. ``source`` names the file in error messages.

    Accepts `*ForPreTraining`, `*ForMaskedLM` and bare `BertModel` / `AlbertModel` checkpoints
    (keys with or without the "bert." / "albert." prefix). Heads or a pooler missing from the file
    keep their fresh init, and the log says so.
    """
    sd, prefix = normalise_hf_state_dict(state_dict, config, source)
    tied = _tied_hf_keys(config, prefix)
    model = BertPretrainingModel(config)
    ours, used, _ = collect_groups(sd, hf_key_map(config, prefix), model.state_dict(), config, source)
    leftovers = unused_hf_keys(sd, used, tied, prefix, source)
    if leftovers:
        log.warning("%s: ignoring %d weight(s) we have no place for (task heads?), e.g. %s",
                    source, len(leftovers), leftovers[:3])
    # strict=False only for the tied decoder weight and the groups logged as absent.
    result = model.load_state_dict(ours, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    return model


def normalise_hf_state_dict(state_dict: dict[str, torch.Tensor], config: ModelConfig,
                            source: str) -> tuple[dict[str, torch.Tensor], str]:
    """Legacy names fixed; returns the dict and the backbone's key prefix ("bert." / "albert." or "")."""
    sd = {_legacy_name(k): v for k, v in state_dict.items()}
    prefix = f"{config.arch}."
    if not any(k.startswith(prefix) for k in sd):
        prefix = ""  # a bare backbone checkpoint
    if f"{prefix}embeddings.word_embeddings.weight" not in sd:
        raise ValueError(f"{source} is not a {config.arch} checkpoint: no '{config.arch}.embeddings."
                         f"word_embeddings.weight' or 'embeddings.word_embeddings.weight' among its "
                         f"{len(sd)} keys (first few: {sorted(sd)[:5]})")
    head = _mlm_head(config)
    if f"{head}.bias" not in sd and f"{head}.decoder.bias" in sd:
        sd[f"{head}.bias"] = sd[f"{head}.decoder.bias"]  # files that kept only the decoder's copy
    return sd, prefix


def collect_groups(sd: dict[str, torch.Tensor], groups: dict[str, list[Pair]], expected: dict[str, torch.Tensor],
                   config: ModelConfig, source: str) -> tuple[dict[str, torch.Tensor], set[str], list[str]]:
    """Our tensors from HF ones, group by group: ``(ours, HF keys used, groups absent from the file)``.

    The backbone must be complete; any other group is all there (loaded) or all absent (left at
    its fresh init, logged, and returned in the third item). Shapes must match ``expected``.
    """
    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    absent: list[str] = []
    for group, pairs in groups.items():
        needed = [k for _, hf_keys in pairs for k in hf_keys]
        missing = [k for k in needed if k not in sd]
        if missing and (group == "backbone" or len(missing) < len(needed)):
            raise ValueError(f"{source} lacks {len(missing)} {group} weight(s) that config "
                             f"({config.arch}, {config.num_layers} layers) needs, e.g. {missing[:3]}")
        if missing:
            log.info("%s has no %s weights; they keep their random init", source, group)
            absent.append(group)
            continue
        for our_key, hf_keys in pairs:
            t = torch.cat([sd[k] for k in hf_keys], dim=0) if len(hf_keys) > 1 else sd[hf_keys[0]]
            if t.shape != expected[our_key].shape:
                raise ValueError(f"{source}: {' + '.join(hf_keys)} has shape {tuple(t.shape)} but the config "
                                 f"needs {tuple(expected[our_key].shape)}; config.json and the weights disagree")
            ours[our_key] = t
            used.update(hf_keys)
    return ours, used, absent


def _legacy_name(key: str) -> str:
    """TF-era checkpoints call LayerNorm parameters gamma / beta."""
    if key.endswith("LayerNorm.gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith("LayerNorm.beta"):
        return key[: -len("beta")] + "bias"
    return key


def unused_hf_keys(sd, used: set[str], tied: dict[str, str], prefix: str, source: str) -> list[str]:
    """HF keys nothing was loaded from (heads we have no place for), sorted; encoder leftovers are an error."""
    word = f"{prefix}embeddings.word_embeddings.weight"
    for tied_key in tied:
        if tied_key in sd and tied_key.endswith("decoder.weight") and not torch.equal(sd[tied_key], sd[word]):
            raise ValueError(f"{source}: {tied_key} differs from {word}; an untied MLM decoder is not supported")
    leftovers = sorted(k for k in sd if k not in used and k not in tied and not k.endswith(_BUFFERS))
    encoder = [k for k in leftovers if k.startswith((f"{prefix}encoder.", f"{prefix}embeddings."))]
    if encoder:
        raise ValueError(f"{source} has encoder weights the config does not use, e.g. {encoder[:3]}; "
                         "config.json (num_hidden_layers, num_hidden_groups) and the weights disagree")
    return leftovers


# ---- configs ------------------------------------------------------------------------------------
def hf_config_dict(config: ModelConfig, heads: bool = True) -> dict:
    """Our config as an HF config.json mapping (BertConfig / AlbertConfig field names).

    ``architectures`` names the class whose layout the weights have: `*ForPreTraining` (or
    `*ForMaskedLM` without an NSP/SOP head), or the bare `*Model` when ``heads=False``.
    """
    _check_expressible(config)
    head = ("ForPreTraining" if config.sop_or_nsp_head else "ForMaskedLM") if heads else "Model"
    d = {"architectures": [("Bert" if config.arch == "bert" else "Albert") + head],
         "model_type": config.arch,
         "vocab_size": config.vocab_size,
         "hidden_size": config.hidden_size,
         "num_hidden_layers": config.num_layers,
         "num_attention_heads": config.num_heads,
         "intermediate_size": config.intermediate_size,
         "hidden_act": config.hidden_act,
         "hidden_dropout_prob": config.hidden_dropout,
         "attention_probs_dropout_prob": config.attention_dropout,
         "max_position_embeddings": config.max_position_embeddings,
         "type_vocab_size": config.type_vocab_size,
         "initializer_range": config.initializer_range,
         "layer_norm_eps": config.layer_norm_eps,
         "pad_token_id": config.pad_token_id,
         "tie_word_embeddings": True}
    if config.arch == "bert":
        d["position_embedding_type"] = "absolute"  # transformers 4.x reads it; 5.x ignores it
    else:
        d.update(embedding_size=config.embedding_dim, inner_group_num=1,
                 num_hidden_groups=1 if config.share_layers else config.num_layers)
    return d


def config_from_hf(hf: dict, source: str = "config", **overrides) -> ModelConfig:
    """Our config from an HF config.json mapping; ``overrides`` set our own fields (unpad, dropout...)."""
    arch = hf.get("model_type")
    if arch not in ("bert", "albert"):
        raise ValueError(f"{source}: model_type is {arch!r}; only 'bert' and 'albert' can be imported. "
                         "bertplat runs BERT-family encoders only: pick a BERT or ALBERT checkpoint")
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                           "intermediate_size") if k not in hf]
    if missing:
        raise ValueError(f"{source}: missing required field(s) {missing}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: position_embedding_type={hf['position_embedding_type']!r}; "
                         "only absolute positions are supported")
    act = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new"}.get(hf.get("hidden_act", "gelu"))
    if act is None:
        raise ValueError(f"{source}: hidden_act={hf['hidden_act']!r} is not supported (gelu, gelu_new)")
    layers = hf["num_hidden_layers"]
    fields = dict(arch=arch, vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=layers,
                  num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"], hidden_act=act,
                  max_position_embeddings=hf.get("max_position_embeddings", 512),
                  type_vocab_size=hf.get("type_vocab_size", 2),
                  hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
                  attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
                  layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
                  initializer_range=hf.get("initializer_range", 0.02),
                  pad_token_id=hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 0)
    if arch == "albert":
        groups, inner = hf.get("num_hidden_groups", 1), hf.get("inner_group_num", 1)
        if inner != 1 or groups not in (1, layers):
            raise ValueError(f"{source}: ALBERT with num_hidden_groups={groups}, inner_group_num={inner} is not "
                             f"supported; use 1 group (shared) or {layers} groups (one per layer), 1 inner layer")
        fields.update(embedding_size=hf.get("embedding_size", 128), share_layers=groups == 1)
    try:
        return ModelConfig.from_dict({**fields, **overrides})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}: {exc}") from None


# ---- directories --------------------------------------------------------------------------------
def export_hf(model: BertPretrainingModel, out_dir: str | Path, tokenizer_dir: str | Path | None = None,
              overwrite: bool = False, heads: bool = True) -> Path:
    """Write an HF model directory that `from_pretrained` loads with no missing or unexpected keys.

    config.json + model.safetensors (tied copies left out: HF re-ties them), plus the tokenizer
    files found in ``tokenizer_dir``. Written to a temp dir, then renamed into place.
    ``heads=True`` writes the `BertForPreTraining` / `AlbertForPreTraining` layout (a bare
    `BertModel` also loads it, reporting the heads as unused); ``heads=False`` writes the bare
    backbone, as sentence-embedding checkpoints such as all-MiniLM-L6-v2 are stored.
    """
    config = model.config
    hf_config = hf_config_dict(config, heads)
    sd = to_hf_state_dict(model, heads)
    if heads:
        for tied in _tied_hf_keys(config, f"{config.arch}."):
            del sd[tied]
    return write_hf_dir(out_dir, hf_config, sd, tokenizer_dir, overwrite)


def load_model_dir(model_dir: str | Path) -> tuple[BertPretrainingModel, ModelConfig]:
    """A BERT-family model from a directory in either layout: Hugging Face's (`import_hf`) or bertplat's own
    checkpoint, as pretraining exports pre-LN models (`load_checkpoint`)."""
    from bertplat.model.checkpoint import load_checkpoint

    _, hf, _ = read_hf_config(model_dir)
    if "model_type" not in hf and "arch" in hf:
        model = load_checkpoint(model_dir)
        return model, model.config
    return import_hf(model_dir)


def import_hf(model_dir: str | Path, **overrides) -> tuple[BertPretrainingModel, ModelConfig]:
    """Load an HF BERT / ALBERT directory (config.json + safetensors or pytorch_model.bin), in eval mode.

    Refused: a directory that is not a BERT-family model, and one whose tokenizer (vocab.txt /
    tokenizer.json) does not have exactly as many entries as the word embedding has rows.
    """
    model_dir, hf, config_path = read_hf_config(model_dir)
    if "model_type" not in hf and "arch" in hf:
        raise ValueError(f"{config_path} is bertplat's own checkpoint layout, not Hugging Face's; load it with "
                         "bertplat.model.load_checkpoint")
    config = config_from_hf(hf, source=str(config_path), **overrides)
    check_vocabulary(model_dir, config.vocab_size)
    state_dict, weights_path = read_weights(model_dir)
    model = from_hf_state_dict(state_dict, config, source=str(weights_path))
    return model.eval(), config
