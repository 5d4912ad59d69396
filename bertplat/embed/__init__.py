"""Embeddings: any BERT-family model turns a corpus or task dataset into vectors in the lake;
DuckDB answers top-k and near-duplicate queries over them."""

from bertplat.embed.config import EmbedConfig
from bertplat.embed.stage import EmbedResult, Int8Refused, run_embed

__all__ = ["EmbedConfig", "EmbedResult", "Int8Refused", "run_embed"]
