"""Hugging Face interop: our `BertPretrainingModel` <-> HF `BertForPreTraining` / `AlbertForPreTraining`.

The only module that knows HF parameter and config names. It reads and writes the HF directory
layout (config.json + model.safetensors) itself, so neither direction needs `transformers`
installed; the parity tests check the result against `transformers` 5.x. Follows litgpt's
`convert_hf_checkpoint.py`: an explicit table of (ours, theirs) names per architecture.

Our fused QKV weight (3H, H) is HF's query, key and value weights stacked in that order.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bertplat.model.bert import BertPretrainingModel, mean_pool
from bertplat.model.checkpoint import write_dir_atomically
from bertplat.model.config import ModelConfig

__all__ = ["config_from_hf", "export_hf", "from_hf_state_dict", "hf_config_dict", "hf_key_map", "import_hf",
           "mean_pool", "to_hf_state_dict"]

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
Pair = tuple[str, tuple[str, ...]]  # (our key, HF keys); several HF keys are concatenated on dim 0
_QKV = ("query", "key", "value")
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # non-persistent HF buffers old files hold


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


def hf_key_map(config: ModelConfig, prefix: str | None = None) -> dict[str, list[Pair]]:
    """Our keys -> HF keys, in groups: "backbone", "pooler", "mlm", "nsp".

    ``prefix`` is the backbone's prefix in the HF file: "bert." / "albert." for a pretraining
    checkpoint (the default), "" for a bare `BertModel` / `AlbertModel` checkpoint.
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
    ours = model.state_dict()
    groups = hf_key_map(config, None if heads else "")
    if not heads:
        groups = {name: groups[name] for name in ("backbone", "pooler")}
    out: dict[str, torch.Tensor] = {}
    for pairs in groups.values():
        for our_key, hf_keys in pairs:
            t = ours[our_key].detach()
            if len(hf_keys) == 1:
                out[hf_keys[0]] = t
            else:  # split the fused QKV; clone so the parts do not share storage (safetensors refuses that)
                for hf_key, part in zip(hf_keys, t.chunk(len(hf_keys), dim=0), strict=True):
                    out[hf_key] = part.clone()
    if heads:
        for tied, source in _tied_hf_keys(config, f"{config.arch}.").items():
            out[tied] = out[source]
    return out


def from_hf_state_dict(state_dict: dict[str, torch.Tensor], config: ModelConfig,
                       source: str = "state dict") -> BertPretrainingModel:
    """Build our model from HF weights. ``source`` names the file in error messages.

    Accepts `*ForPreTraining`, `*ForMaskedLM` and bare `BertModel` / `AlbertModel` checkpoints
    (keys with or without the "bert." / "albert." prefix). Heads or a pooler missing from the file
    keep their fresh init, and the log says so.
    """
    sd = {_legacy_name(k): v for k, v in state_dict.items()}
    prefix = f"{config.arch}."
    if not any(k.startswith(prefix) for k in sd):
        prefix = ""  # a bare backbone checkpoint
    if f"{prefix}embeddings.word_embeddings.weight" not in sd:
        raise ValueError(f"{source} is not a {config.arch} checkpoint: no '{config.arch}.embeddings."
                         f"word_embeddings.weight' or 'embeddings.word_embeddings.weight' among its "
                         f"{len(sd)} keys (first few: {sorted(sd)[:5]})")
    tied = _tied_hf_keys(config, prefix)
    head = _mlm_head(config)
    if f"{head}.bias" not in sd and f"{head}.decoder.bias" in sd:
        sd[f"{head}.bias"] = sd[f"{head}.decoder.bias"]  # files that kept only the decoder's copy

    model = BertPretrainingModel(config)
    expected = model.state_dict()
    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for group, pairs in hf_key_map(config, prefix).items():
        needed = [k for _, hf_keys in pairs for k in hf_keys]
        missing = [k for k in needed if k not in sd]
        if missing and (group == "backbone" or len(missing) < len(needed)):
            raise ValueError(f"{source} lacks {len(missing)} {group} weight(s) that config "
                             f"({config.arch}, {config.num_layers} layers) needs, e.g. {missing[:3]}")
        if missing:
            log.info("%s has no %s weights; they keep their random init", source, group)
            continue
        for our_key, hf_keys in pairs:
            t = torch.cat([sd[k] for k in hf_keys], dim=0) if len(hf_keys) > 1 else sd[hf_keys[0]]
            if t.shape != expected[our_key].shape:
                raise ValueError(f"{source}: {' + '.join(hf_keys)} has shape {tuple(t.shape)} but the config "
                                 f"needs {tuple(expected[our_key].shape)}; config.json and the weights disagree")
            ours[our_key] = t
            used.update(hf_keys)
    _check_leftovers(sd, used, tied, prefix, source)
    # strict=False only for the tied decoder weight and the groups logged above as absent.
    result = model.load_state_dict(ours, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    return model


def _legacy_name(key: str) -> str:
    """TF-era checkpoints call LayerNorm parameters gamma / beta."""
    if key.endswith("LayerNorm.gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith("LayerNorm.beta"):
        return key[: -len("beta")] + "bias"
    return key


def _check_leftovers(sd, used: set[str], tied: dict[str, str], prefix: str, source: str) -> None:
    word = f"{prefix}embeddings.word_embeddings.weight"
    for tied_key in tied:
        if tied_key in sd and tied_key.endswith("decoder.weight") and not torch.equal(sd[tied_key], sd[word]):
            raise ValueError(f"{source}: {tied_key} differs from {word}; an untied MLM decoder is not supported")
    leftovers = sorted(k for k in sd if k not in used and k not in tied and not k.endswith(_BUFFERS))
    encoder = [k for k in leftovers if k.startswith((f"{prefix}encoder.", f"{prefix}embeddings."))]
    if encoder:
        raise ValueError(f"{source} has encoder weights the config does not use, e.g. {encoder[:3]}; "
                         "config.json (num_hidden_layers, num_hidden_groups) and the weights disagree")
    if leftovers:
        log.warning("%s: ignoring %d weight(s) we have no place for (task heads?), e.g. %s",
                    source, len(leftovers), leftovers[:3])


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
        raise ValueError(f"{source}: model_type is {arch!r}; only 'bert' and 'albert' can be imported")
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
    sd = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
    tokenizer_files: list[Path] = []
    if tokenizer_dir is not None:
        tokenizer_files = [Path(tokenizer_dir) / n for n in TOKENIZER_FILES if (Path(tokenizer_dir) / n).is_file()]
        if not any(f.name in ("vocab.txt", "tokenizer.json") for f in tokenizer_files):
            raise ValueError(f"tokenizer_dir {tokenizer_dir} has neither vocab.txt nor tokenizer.json")

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})  # HF requires the format tag
        for f in tokenizer_files:
            shutil.copyfile(f, tmp / f.name)

    return write_dir_atomically(Path(out_dir), write, overwrite)


def import_hf(model_dir: str | Path, **overrides) -> tuple[BertPretrainingModel, ModelConfig]:
    """Load an HF BERT / ALBERT directory (config.json + safetensors or pytorch_model.bin), in eval mode."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{config_path} does not exist; is {model_dir} a Hugging Face model directory?") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from None
    config = config_from_hf(hf, source=str(config_path), **overrides)
    state_dict, weights_path = _read_weights(model_dir)
    model = from_hf_state_dict(state_dict, config, source=str(weights_path))
    return model.eval(), config


def _read_weights(model_dir: Path) -> tuple[dict[str, torch.Tensor], Path]:
    single, index, pickle = (model_dir / n for n in
                             ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))
    try:
        if single.is_file():
            return load_file(str(single)), single
        if index.is_file():  # sharded: {"weight_map": {key: shard file}}
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            return {k: v for s in shards for k, v in load_file(str(model_dir / s)).items()}, index
        if pickle.is_file():
            return torch.load(pickle, map_location="cpu", weights_only=True), pickle
    except Exception as exc:  # corrupt or truncated files: say which one
        raise ValueError(f"cannot read weights in {model_dir}: {type(exc).__name__}: {exc}") from None
    present = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
    raise ValueError(f"{model_dir} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin "
                     f"(found: {present})")
