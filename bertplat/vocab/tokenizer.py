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


@dataclass(frozen=True)
class Alphabet:
    """The characters a WordPiece vocabulary starts from, fixed before training (see `plan_alphabet`)."""

    chars: list[str]          # the initial alphabet, code-point order
    continuations: list[str]  # those that also occur inside a word, so get a '##' form


def new_trainer(cfg: VocabConfig, alphabet: Alphabet | None = None) -> trainers.WordPieceTrainer:
    """HF's WordPiece trainer; with an ``alphabet``, one that gives the same vocabulary in every run.

    HF's trainer numbers the ``##`` characters in hash-map order (random per process) and breaks ties
    between equal-count merges by those numbers, and it cuts the alphabet at ``limit_alphabet`` with an
    unstable sort, so the same corpus gives different tokens from run to run (huggingface/tokenizers
    #1794; 22-34 of 4,000 tokens differed on 3,000 demo documents). Passing the alphabet as the
    initial one and its ``##`` forms as leading special tokens gives every character a fixed number
    before training starts; the ``##`` tokens are the same ones the trainer would add, so the size
    budget is unchanged.
    """
    special, options, limit = list(SPECIAL_TOKENS), {}, cfg.limit_alphabet
    if alphabet is not None:
        special += [CONTINUATION_PREFIX + c for c in alphabet.continuations]
        options["initial_alphabet"] = alphabet.chars
        # The initial alphabet outranks every counted character, so a limit of its size keeps exactly it.
        limit = len(alphabet.chars) if limit else None
    if limit is not None:  # the trainer takes no None for "no limit"
        options["limit_alphabet"] = limit
    return trainers.WordPieceTrainer(vocab_size=cfg.target_size(), min_frequency=cfg.min_frequency,
                                     special_tokens=special, continuing_subword_prefix=CONTINUATION_PREFIX,
                                     show_progress=False, **options)


class CharacterCounts:
    """Counts of raw code points over the training texts, and of those that follow a word character.

    Counting the raw text is a bincount (about 80M characters/s); BERT's normaliser runs on each
    distinct character afterwards, in `plan_alphabet`, because normalising the text itself would cost
    as much as the training's own pass.
    """

    SIZE = 0x110000

    def __init__(self, tok: Tokenizer):
        self._tok = tok
        self.total = np.zeros(self.SIZE, np.int64)
        self.inside = np.zeros(self.SIZE, np.int64)  # times the character follows a word character
        self._seen = np.zeros(self.SIZE, bool)
        self.joins = np.zeros(self.SIZE, bool)  # does not split a word: a letter, or a character normalised away
        self.normalised: dict[int, str] = {}

    def add(self, texts: list[str]) -> None:
        if not texts:
            return
        cps = np.frombuffer("\n".join(texts).encode("utf-32-le"), dtype=np.uint32)
        counts = np.bincount(cps, minlength=self.SIZE)
        for cp in np.flatnonzero((counts > 0) & ~self._seen).tolist():
            self._classify(cp)
        self.total += counts
        joins = self.joins[cps]
        self.inside += np.bincount(cps[1:][joins[1:] & joins[:-1]], minlength=self.SIZE)

    def _classify(self, cp: int) -> None:
        self._seen[cp] = True
        norm = self._tok.normalizer.normalize_str(chr(cp))
        self.normalised[cp] = norm
        self.joins[cp] = not norm or all(_is_word_char(self._tok, c) for c in norm)


def _is_word_char(tok: Tokenizer, c: str) -> bool:
    """Neither whitespace nor punctuation to BERT's pre-tokeniser: it can sit inside a word."""
    return len(tok.pre_tokenizer.pre_tokenize_str(f"a{c}a")) == 1


def plan_alphabet(counts: CharacterCounts, limit: int | None) -> Alphabet:
    """The normalised characters of the corpus, the ``limit`` most frequent (ties by code point) when
    there are more, and the ones among them that occur after another character of the same word."""
    total: dict[str, int] = {}
    inside: set[str] = set()
    for cp, norm in counts.normalised.items():
        n = int(counts.total[cp])
        chars = [c for c in norm if not c.isspace()]
        for c in chars:
            total[c] = total.get(c, 0) + n
        if counts.joins[cp] and chars:
            inside.update(chars[1:])  # a character normalised into several stays one word (Hangul jamo)
            if counts.inside[cp]:
                inside.add(chars[0])
    ranked = sorted(total, key=lambda c: (-total[c], c))
    chars = sorted(ranked[:limit] if limit else ranked)
    return Alphabet(chars=chars, continuations=[c for c in chars if c in inside])


def finish_tokenizer(tok: Tokenizer, cfg: VocabConfig) -> Tokenizer:
    """Give the trained tokens their canonical ids, pad the vocabulary to its target size with
    [unusedN] tokens and add the pair template."""
    vocab = tok.get_vocab()
    missing = max(0, cfg.target_size() - len(vocab))
    return tokenizer_from_vocab(canonical_order(vocab) + [f"[unused{i}]" for i in range(missing)], cfg)


def canonical_order(vocab: dict[str, int]) -> list[str]:
    """The special tokens, the single characters, their ``##`` forms (each group in code-point order),
    then the learned tokens in the order the trainer merged them (the most frequent pairs first).

    With an alphabet planned before training (`plan_alphabet`), every id is the same from run to run;
    without one the characters are still numbered by their code point here, whatever order the
    trainer gave them.
    """
    def key(token: str) -> tuple[int, str, int]:
        if token in SPECIAL_TOKENS:
            return 0, "", vocab[token]
        if len(token.removeprefix(CONTINUATION_PREFIX)) != 1:
            return 3, "", vocab[token]
        return (2 if token.startswith(CONTINUATION_PREFIX) else 1), token, 0

    return sorted(vocab, key=key)


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
