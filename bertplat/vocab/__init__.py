"""WordPiece vocabulary training (HF tokenizers) with BERT's pipeline, validated."""

from bertplat.vocab.config import SPECIAL_TOKENS, VocabConfig
from bertplat.vocab.stage import VocabResult, run_vocab
from bertplat.vocab.tokenizer import VocabInfo, load_tokenizer

__all__ = ["SPECIAL_TOKENS", "VocabConfig", "VocabInfo", "VocabResult", "load_tokenizer", "run_vocab"]
