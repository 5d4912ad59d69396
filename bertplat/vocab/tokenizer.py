"""BERT's WordPiece tokenizer, composed from named parts of HF ``tokenizers`` (as in its
``implementations/bert_wordpiece.py``), and the files that make it loadable everywhere.

Pipeline: BertNormalizer (clean text, CJK characters as single tokens, lowercase and accent
stripping for uncased) -> BertPreTokenizer -> WordPiece -> ``[CLS] A [SEP] B [SEP]`` post-processor
-> WordPiece decoder. The directory it is saved to (``tokenizer.json``, ``vocab.txt``,
``tokenizer_config.json``, ``special_tokens_map.json``) loads with ``tokenizers.Tokenizer.from_file``
and with ``transformers.BertTokenizerFast.from_pretrained``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from bertplat.vocab.config import SPECIAL_TOKENS, VocabConfig

CONTINUATION_PREFIX = "##"


def new_tokenizer(cfg: VocabConfig) -> Tokenizer:
    """An untrained tokenizer with BERT's normaliser, pre-tokeniser and decoder."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=cfg.max_input_chars_per_word))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=cfg.strip_accents, lowercase=cfg.lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    return tok


def new_trainer(cfg: VocabConfig) -> trainers.WordPieceTrainer:
    return trainers.WordPieceTrainer(vocab_size=cfg.target_size(), min_frequency=cfg.min_frequency,
                                     limit_alphabet=cfg.limit_alphabet, special_tokens=list(SPECIAL_TOKENS),
                                     continuing_subword_prefix=CONTINUATION_PREFIX, show_progress=False)


def finish_tokenizer(tok: Tokenizer, cfg: VocabConfig) -> Tokenizer:
    """Pad the vocabulary to its target size with [unusedN] tokens and add the pair template."""
    vocab = tok.get_vocab()
    missing = cfg.target_size() - len(vocab)
    if missing <= 0:
        return _add_post_processor(tok)
    ordered = sorted(vocab, key=vocab.__getitem__) + [f"[unused{i}]" for i in range(missing)]
    return tokenizer_from_vocab(ordered, cfg)


def tokenizer_from_vocab(tokens: list[str], cfg: VocabConfig) -> Tokenizer:
    """The full BERT pipeline over a given vocabulary (token i has id i), e.g. a saved vocab.txt."""
    tok = new_tokenizer(cfg)
    tok.model = models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]",
                                 max_input_chars_per_word=cfg.max_input_chars_per_word)
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if t in tokens])
    return _add_post_processor(tok)


def _add_post_processor(tok: Tokenizer) -> Tokenizer:
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return tok


def save_tokenizer_dir(tok: Tokenizer, cfg: VocabConfig, directory: Path, max_length: int = 512) -> None:
    """tokenizer.json, vocab.txt (one token per line, in id order), tokenizer_config.json and
    special_tokens_map.json: what HF's BertTokenizerFast expects."""
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    vocab = tok.get_vocab(with_added_tokens=True)
    ordered = sorted(vocab, key=vocab.__getitem__)
    assert [vocab[t] for t in ordered] == list(range(len(ordered))), "ids must be dense"
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in ordered), encoding="utf-8")
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer", "do_lower_case": cfg.lowercase,
        "strip_accents": cfg.strip_accents, "tokenize_chinese_chars": True, "do_basic_tokenize": True,
        "model_max_length": max_length, "clean_up_tokenization_spaces": False, **specials,
    }, indent=2))


@dataclass(frozen=True)
class VocabInfo:
    """What later stages need to know about a vocabulary, without re-reading it each time."""

    size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    continuation: np.ndarray  # (size,) bool: True for '##' pieces (whole-word masking)

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id)

    @property
    def id_dtype(self) -> np.dtype:
        """The narrowest unsigned type that holds every id (uint16 for vocabularies up to 65,536)."""
        return np.dtype(np.uint16 if self.size <= 1 << 16 else np.uint32)

    @classmethod
    def from_tokenizer(cls, tok: Tokenizer) -> VocabInfo:
        vocab = tok.get_vocab(with_added_tokens=True)
        continuation = np.zeros(len(vocab), dtype=bool)
        for token, i in vocab.items():
            continuation[i] = token.startswith(CONTINUATION_PREFIX) and len(token) > len(CONTINUATION_PREFIX)
        ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"the tokenizer lacks the special tokens {missing}")
        return cls(len(vocab), ids["[PAD]"], ids["[UNK]"], ids["[CLS]"], ids["[SEP]"], ids["[MASK]"], continuation)


def load_tokenizer(directory: Path) -> Tokenizer:
    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a vocabulary directory")
    return Tokenizer.from_file(str(path))
