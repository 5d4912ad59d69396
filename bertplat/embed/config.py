"""EmbedConfig: how a model turns a corpus or task dataset into an embeddings dataset."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bertplat.config import StageConfig

# Fields that decide how fast the vectors come, not what they are: left out of the fingerprint.
EXECUTION_FIELDS = frozenset({"max_tokens", "max_batch_size", "threads", "device", "cluster", "onednn"})


class EmbedConfig(StageConfig):
    """Pooling, truncation, input selection, speed knobs, the int8 agreement bar and the gate's norms."""

    unit: Literal["documents", "sentences"] = Field(
        default="documents",
        description="For a corpus: one vector per document (its text) or per sentence (its sentences list). "
        "Ignored for a task dataset, which gives one vector per row.")
    text_column: str = Field(default="text", description="For a task dataset: the column to embed (text, "
                             "text_pair, question, context).")
    splits: tuple[str, ...] | None = Field(default=None, description="For a task dataset: only these splits "
                                           "(default all).")
    store_text: bool = Field(default=True, description="Keep the embedded text beside its vector, so search "
                             "results and near-duplicate pairs can be read without a join.")
    pooling: Literal["auto", "cls", "mean", "max", "mean_sqrt_len"] = Field(
        default="auto",
        description="How token states become one vector. auto: what the model's 1_Pooling/config.json says "
        "(sentence-transformers directories), else mean over real tokens.")
    normalize: bool | None = Field(
        default=None, description="L2-normalise the vectors. Default: yes when the model's modules.json "
        "lists a Normalize module, else no.")
    max_length: int | None = Field(
        default=None, ge=8, le=8192,
        description="Tokens per sequence, [CLS] and [SEP] included. Default: max_seq_length of "
        "sentence_bert_config.json, else the model's max_position_embeddings.")
    long_texts: Literal["truncate", "window"] = Field(
        default="truncate",
        description="Texts longer than max_length: truncate (as sentence-transformers does), or embed "
        "windows of max_length tokens and average their vectors.")
    window_stride: int | None = Field(
        default=None, ge=1, description="With long_texts=window: tokens between window starts "
        "(default: half a window).")
    max_tokens: int | None = Field(
        default=None, ge=512, description="Padded tokens per batch (rows x longest row): bounds memory whatever "
        "the lengths. Batches are sorted by length. Default: 1024 on CPU, where a batch's activations then stay in "
        "cache (16,384 ran 12% slower in float32 and 25% slower in int8 on SST-2), 16384 on a GPU.")
    max_batch_size: int = Field(default=512, ge=1, description="At most this many sequences per batch.")
    shard_rows: int = Field(default=16384, ge=16, description="Rows per Parquet shard; a killed run resumes at "
                            "the first unfinished shard.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when there is a GPU.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="Compute dtype. auto: bfloat16 on GPU, float32 on CPU. bfloat16 on CPU "
        "(with onednn): the matrix products in bfloat16 with float32 accumulation, everything else in float32; "
        "1.6-1.7x float32's speed on a CPU with AVX512-BF16 or AMX, every vector within cosine 0.9999 of "
        "float32's on all-MiniLM-L6-v2 (a warning says when the CPU lacks those instructions). Vectors are stored "
        "as float32 either way.")
    threads: int | None = Field(default=None, ge=1, description="CPU threads for torch (default: all cores).")
    onednn: bool = Field(
        default=True, description="float32 on CPU: run the Linear layers on oneDNN with their weights packed once "
        "and each FFN's GELU fused into its first product (about 9% faster on all-MiniLM-L6-v2; the vectors agree "
        "with torch's to float32 rounding). Off, or where this torch has no oneDNN: torch's own Linear (and "
        "bfloat16 on CPU then runs the whole model in bfloat16).")
    cluster: str | None = Field(
        default=None, description="Dask scheduler to embed the shards on (tcp://host:8786; default "
        "$BERTPLAT_DASK_ADDRESS, else this process). Each worker process loads the model once and embeds whole "
        "shards; the vectors and the fingerprint are the same as here.")
    quantize: Literal["none", "int8"] = Field(
        default="none", description="int8: dynamic int8 quantisation of the Linear layers (CPU only); "
        "refused when its agreement with float32 on a sample is below the thresholds.")
    int8_scheme: Literal["per_token", "fbgemm"] = Field(
        default="per_token",
        description="per_token: int8 weights per output channel and int8 activations per token (each token its "
        "own scale), int32 accumulation, scales applied in float32. fbgemm: torch's quantize_dynamic (one "
        "activation scale per batch), faster but less faithful (mean cosine 0.966 on all-MiniLM-L6-v2).")
    int8_sample: int = Field(default=512, ge=16, description="Texts (the first of the input) on which int8 is "
                             "compared with float32 before anything is embedded.")
    int8_min_mean_cosine: float = Field(default=0.99, gt=0.0, le=1.0,
                                        description="Refuse int8 when the mean cosine to float32 is below this.")
    int8_min_cosine: float = Field(default=0.95, gt=-1.0, le=1.0,
                                   description="Refuse int8 when any sampled row's cosine to float32 is below this.")
    norm_tolerance: float = Field(default=1e-3, gt=0.0, lt=0.5,
                                  description="Gate: with normalize, every norm must lie within 1 +- this.")
    min_norm: float = Field(default=1e-6, ge=0.0, description="Gate: without normalize, every norm must be "
                            "above this (a zero vector means an empty or broken row).")
    max_norm: float = Field(default=1e4, gt=0.0, description="Gate: without normalize, every norm must be "
                            "below this.")

    @model_validator(mode="after")
    def _int8_computes_in_float32(self) -> EmbedConfig:
        if self.quantize == "int8" and self.dtype == "bfloat16":
            raise ValueError("quantize=int8 runs int8 products with float32 scales and activations; it does not "
                             "combine with dtype=bfloat16. Choose one: quantize=int8 (dtype auto), or dtype=bfloat16")
        return self

    def content_json(self) -> str:
        """The part of the config that decides the vectors (the fingerprint's share)."""
        import json

        data = self.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))
        return json.dumps(data, sort_keys=True, separators=(",", ":"))
