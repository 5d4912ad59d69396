"""`ModelConfig`: the one object that describes a BERT or ALBERT encoder.

Follows nanoGPT's `GPTConfig` (a dataclass that is the model's only constructor argument) and
litgpt's `Config` (named presets, `from_file`, the config saved beside every checkpoint). Field
names are ours; the Hugging Face names live only in `bertplat.model.convert`.

Presets follow the BERT paper (base, large), the "Well-Read Students Learn Better" miniatures
(Turc et al. 2019: tiny, mini, small, medium) and ALBERT v2 (albert-base).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

ARCHS = ("bert", "albert")
HIDDEN_ACTS = ("gelu", "gelu_new")

# name -> fields that differ from the defaults; vocab_size always comes from the caller (the tokenizer).
_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=2, hidden_size=128, num_heads=2, intermediate_size=512),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024),
    "small": dict(num_layers=4, hidden_size=512, num_heads=8, intermediate_size=2048),
    "medium": dict(num_layers=8, hidden_size=512, num_heads=8, intermediate_size=2048),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072),
    "large": dict(num_layers=24, hidden_size=1024, num_heads=16, intermediate_size=4096),
    # ALBERT v2: factorised embeddings (E=128), one layer shared 12 times, tanh GELU, no dropout.
    "albert-base": dict(arch="albert", num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                        embedding_size=128, share_layers=True, hidden_act="gelu_new",
                        hidden_dropout=0.0, attention_dropout=0.0),
}


@dataclass(frozen=True)
class ModelConfig:
    """Shape and behaviour of a BERT/ALBERT encoder with its pretraining heads."""

    arch: str = "bert"  # "bert" or "albert"; decides the checkpoint layout and the E->H projection
    vocab_size: int = 30522  # rows of the word embedding; must match the tokenizer
    hidden_size: int = 768  # H: width of every encoder layer
    num_layers: int = 12  # L: encoder layers applied (ALBERT applies one shared layer L times)
    num_heads: int = 12  # attention heads; H must divide evenly by it
    intermediate_size: int = 3072  # FFN inner width, usually 4*H
    max_position_embeddings: int = 512  # longest sequence the learned positions cover
    type_vocab_size: int = 2  # segment ids (sentence A / B)
    embedding_size: int | None = None  # E: embedding width; None = H. ALBERT factorises with E < H
    share_layers: bool = False  # ALBERT cross-layer sharing: one layer's weights used L times
    hidden_dropout: float = 0.1  # after embeddings, attention output and FFN output
    attention_dropout: float = 0.1  # on attention probabilities (inside SDPA)
    layer_norm_eps: float = 1e-12  # BERT's TF value; HF checkpoints expect it
    initializer_range: float = 0.02  # std of the normal init of every weight matrix
    pre_ln: bool = False  # False = post-LN as in BERT; True = pre-LN (+ final LayerNorm), not HF-exportable
    pad_token_id: int = 0  # its embedding row starts at zero and gets no gradient from the lookup
    hidden_act: str = "gelu"  # "gelu" (exact erf, BERT) or "gelu_new" (tanh approximation, ALBERT)
    sop_or_nsp_head: bool = True  # build the 2-way NSP (BERT) / SOP (ALBERT) head on the pooled output
    unpad: bool = True  # drop padding tokens after the embeddings when an attention mask is given

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid ModelConfig:\n  - " + "\n  - ".join(problems))

    # ---- derived values -------------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
        """E: the width of the embedding tables (hidden_size unless ALBERT factorises it)."""
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def layer_params(self) -> int:
        """Parameters of one encoder layer: QKV + output projection, FFN, two LayerNorms."""
        h, i = self.hidden_size, self.intermediate_size
        return (3 * h * h + 3 * h) + (h * h + h) + (2 * h * i + i + h) + 4 * h

    def flops_per_token(self, seq_len: int, masked_fraction: float = 0.0) -> float:
        """Training FLOPs (forward + backward) per token, for MFU.

        Follows the PaLM paper (Chowdhury et al. 2022, appendix B): ``6 * N + 12 * L * H * T`` where
        N counts the non-embedding parameters *as applied* (ALBERT's shared layer counts L times,
        plus its E->H projection), and ``12 * L * H * T`` is the attention score and value matmuls
        (2 matmuls x 2 FLOPs x T keys x H, times 3 for forward + backward). BERT attention is
        bidirectional, so nothing is halved for causality. Embedding lookups, the pooler and the
        NSP head are left out (they are per sequence or free). ``masked_fraction`` > 0 adds the
        MLM head (transform + vocabulary projection) at that fraction of tokens, which is where our
        model computes it; leave it at 0 to compare models that compute the head differently.
        """
        if seq_len <= 0:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        h, e, v = self.hidden_size, self.embedding_dim, self.vocab_size
        n = self.num_layers * self.layer_params()
        if self.arch == "albert":
            n += e * h + h  # embedding_hidden_mapping_in runs on every token
        head = h * e + e + e * v  # transform dense + decoder
        return 6.0 * (n + masked_fraction * head) + 12.0 * self.num_layers * h * seq_len

    # ---- construction and serialisation ---------------------------------------------------------
    @classmethod
    def preset(cls, name: str, vocab_size: int, **overrides: Any) -> ModelConfig:
        """A named size (tiny, mini, small, medium, base, large, albert-base) with overrides on top."""
        if name not in _PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(_PRESETS)}")
        return cls.from_dict({**_PRESETS[name], "vocab_size": vocab_size, **overrides})

    @staticmethod
    def preset_names() -> tuple[str, ...]:
        return tuple(_PRESETS)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` applied and validated again (the config itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a mapping; unknown keys are an error (a typo must not fall back to a default)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    def to_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"model config file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"model config file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"model config file {path} must hold a JSON object, not {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"model config file {path}: {exc}") from None


def _problems(c: ModelConfig) -> list[str]:
    """Every reason ``c`` is unusable, phrased for the person who wrote it."""
    out: list[str] = []
    ints = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
            "max_position_embeddings", "type_vocab_size")
    for name in ints:
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            out.append(f"{name} must be a positive integer, got {value!r}")
    if out:  # the checks below do arithmetic on these
        return out
    if c.arch not in ARCHS:
        out.append(f"arch must be one of {ARCHS}, got {c.arch!r}")
    if c.hidden_size % c.num_heads:
        out.append(f"hidden_size {c.hidden_size} is not divisible by num_heads {c.num_heads}; "
                   f"pick a head count that divides it (e.g. hidden_size // 64)")
    if c.embedding_size is not None and (not isinstance(c.embedding_size, int) or c.embedding_size < 1):
        out.append(f"embedding_size must be None or a positive integer, got {c.embedding_size!r}")
    elif c.arch == "bert" and c.embedding_size not in (None, c.hidden_size):
        out.append(f"embedding_size {c.embedding_size} != hidden_size {c.hidden_size} needs arch='albert' "
                   "(BERT has no embedding projection)")
    if c.arch == "bert" and c.share_layers:
        out.append("share_layers=True needs arch='albert' (BERT checkpoints have one weight set per layer)")
    for name in ("hidden_dropout", "attention_dropout"):
        p = getattr(c, name)
        if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            out.append(f"{name} must be a probability in [0, 1), got {p!r}")
    if not c.layer_norm_eps > 0:
        out.append(f"layer_norm_eps must be > 0, got {c.layer_norm_eps!r}")
    if not c.initializer_range > 0:
        out.append(f"initializer_range must be > 0, got {c.initializer_range!r}")
    if not isinstance(c.pad_token_id, int) or not 0 <= c.pad_token_id < c.vocab_size:
        out.append(f"pad_token_id must be an id in [0, vocab_size={c.vocab_size}), got {c.pad_token_id!r}")
    if c.hidden_act not in HIDDEN_ACTS:
        out.append(f"hidden_act must be one of {HIDDEN_ACTS}, got {c.hidden_act!r}")
    for name in ("share_layers", "pre_ln", "sop_or_nsp_head", "unpad"):
        if not isinstance(getattr(c, name), bool):
            out.append(f"{name} must be true or false, got {getattr(c, name)!r}")
    return out
