"""VocabConfig: how a WordPiece vocabulary is trained from a corpus dataset."""

from __future__ import annotations

from pydantic import Field

from bertplat.config import StageConfig

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class VocabConfig(StageConfig):
    """WordPiece training with BERT's pipeline (HF tokenizers), and the gate's thresholds."""

    vocab_size: int = Field(default=30522, ge=len(SPECIAL_TOKENS) + 1, le=1_000_000,
                            description="Size of the vocabulary, special tokens included (BERT: 30522).")
    pad_to_multiple_of: int | None = Field(
        default=None, ge=1,
        description="Round the size up to a multiple of this (64 suits GPU matrix shapes: 30522 -> 30528); "
        "the extra slots, and any the corpus was too small to fill, become [unusedN] tokens.")
    lowercase: bool = Field(default=True, description="Lowercase text (uncased BERT); false for a cased vocabulary.")
    strip_accents: bool | None = Field(
        default=None, description="Strip accents; default follows lowercase, as in the original BERT.")
    min_frequency: int = Field(default=2, ge=1, description="Minimum frequency of a pair to be merged into a token.")
    limit_alphabet: int | None = Field(
        default=1000, ge=1,
        description="Most distinct characters kept in the initial alphabet (HF default 1000). Raise it for "
        "Chinese/Japanese corpora, whose characters are words: 8000 keeps the common CJK characters.")
    max_input_chars_per_word: int = Field(default=100, ge=1, description="Longer words become [UNK] (BERT: 100).")
    heldout_fraction: float = Field(
        default=0.01, gt=0.0, lt=0.5,
        description="Share of documents (chosen by doc_id, so stable) kept out of training to measure the gate's "
        "unknown-token rate, fertility and whole-word coverage.")
    heldout_max_docs: int = Field(default=5000, ge=10, description="At most this many held-out documents are measured.")
    max_unk_rate: float = Field(default=0.005, ge=0.0, le=1.0,
                                description="Gate: the share of held-out tokens that are [UNK] must stay below this.")
    max_fertility: float = Field(default=2.5, gt=1.0,
                                 description="Gate: pieces per word (pre-tokenized unit) on held-out text must stay below this.")
    min_whole_word_share: float = Field(default=0.5, ge=0.0, le=1.0,
                                        description="Gate: at least this share of held-out words must be a single token.")
    min_learned_share: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Gate: the corpus must fill at least this share of the vocabulary with learned tokens "
        "(a smaller corpus than the vocabulary needs fails, rather than padding silently).")

    def target_size(self) -> int:
        if not self.pad_to_multiple_of:
            return self.vocab_size
        m = self.pad_to_multiple_of
        return -(-self.vocab_size // m) * m
