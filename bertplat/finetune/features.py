"""Task features: text, pairs, words and question/context pairs to model inputs, with the model's own
tokenizer, and predictions mapped back to what the task data holds (labels per word, answer text).

Follows the references people compare against:

- pairs are truncated longest-first exactly as BERT's ``_truncate_seq_pair`` does (the longer side
  loses a token, a tie takes it from the second). The Rust tokenizer's ``longest_first`` splits the
  budget differently (the extra token goes to the second segment), so truncation is done here;
- NER: the first sub-word of each word carries the word's label; the others get ``IGNORE`` (-100)
  in the loss and are skipped in decoding, so words come back whole (as HF's ``run_ner`` and
  BERT's paper do). A word the tokenizer turns into no token at all, or that truncation cut, is
  predicted as the outside label and still counted by the metric;
- QA: Google's ``run_squad.py``: the question truncated to ``max_query_length`` tokens, the context
  in windows that start every ``doc_stride`` tokens, each token scored only in the window where it
  has the most context; answers mapped back to character offsets of the original context.

Inputs are returned as ``segment_a_len`` (the length of ``[CLS] A [SEP]``) as in the pretraining
examples, so one collator builds token type ids for both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

IGNORE = -100  # label of positions the loss and the decoding skip


# ---- the tokenizer ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The tokenizer of a Hugging Face-layout model directory: ``tokenizer.json``, or ``vocab.txt`` with
    BERT's pipeline (lower-casing as ``tokenizer_config.json`` says, default uncased)."""
    model_dir = Path(model_dir)
    if (model_dir / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    elif (model_dir / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        cfg_file = model_dir / "tokenizer_config.json"
        cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
        lower = bool(cfg.get("do_lower_case", True))
        tok = BertWordPieceTokenizer(str(model_dir / "vocab.txt"), lowercase=lower,
                                     strip_accents=cfg.get("strip_accents"))._tokenizer
    else:
        raise FileNotFoundError(f"{model_dir} has no tokenizer.json or vocab.txt: a model directory must carry "
                                "its tokenizer (export it with the model, or copy the vocab files beside config.json)")
    tok.no_padding()
    tok.no_truncation()
    return tok


def special_ids(tok: Tokenizer) -> SpecialIds:
    ids = {name: tok.token_to_id(token) for name, token in (("cls", "[CLS]"), ("sep", "[SEP]"), ("pad", "[PAD]"))}
    missing = [f"[{k.upper()}]" for k, v in ids.items() if v is None]
    if missing:
        raise ValueError(f"the tokenizer has no {', '.join(missing)} token: bertplat fine-tunes BERT-family models, "
                         "whose vocabularies have [CLS], [SEP] and [PAD]")
    return SpecialIds(**ids)  # type: ignore[arg-type]


def _pieces(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]


# ---- sequences and pairs ------------------------------------------------------------------------------
def truncate_pair(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of each segment BERT's ``_truncate_seq_pair`` keeps within ``budget`` tokens:
    it removes one token at a time from the longer segment, from the second on a tie."""
    excess = len_a + len_b - budget
    if excess <= 0:
        return len_a, len_b
    if abs(len_a - len_b) >= excess:  # only the longer one loses tokens
        return (len_a - excess, len_b) if len_a > len_b else (len_a, len_b - excess)
    short = min(len_a, len_b)
    rest = excess - abs(len_a - len_b)  # both now at `short`; the second loses first, then they alternate
    return short - rest // 2, short - (rest + 1) // 2


@dataclass
class SequenceFeatures:
    """Model inputs for single sentences or pairs. ``input_ids[i]`` is ``[CLS] A [SEP] (B [SEP])``."""

    input_ids: list[np.ndarray]
    segment_a_len: np.ndarray  # (N,) int32: len([CLS] A [SEP]); tokens after it are segment B
    truncated: np.ndarray  # (N,) bool: the example lost tokens to max_length

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_sequences(tok: Tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None,
                     max_length: int = 128) -> SequenceFeatures:
    """``[CLS] text [SEP]`` or ``[CLS] text [SEP] pair [SEP]``, truncated to ``max_length`` tokens."""
    sp = special_ids(tok)
    a_ids = _pieces(tok, texts)
    b_ids = _pieces(tok, pairs) if pairs is not None else None
    if b_ids is not None and len(b_ids) != len(a_ids):
        raise ValueError(f"{len(a_ids)} texts but {len(b_ids)} text pairs")
    out, seg_a, cut = [], np.empty(len(a_ids), np.int32), np.zeros(len(a_ids), bool)
    for i, a in enumerate(a_ids):
        if b_ids is None:
            keep_a, b = min(len(a), max_length - 2), []
            cut[i] = keep_a < len(a)
            ids = [sp.cls, *a[:keep_a], sp.sep]
        else:
            b = b_ids[i]
            keep_a, keep_b = truncate_pair(len(a), len(b), max_length - 3)
            cut[i] = keep_a + keep_b < len(a) + len(b)
            ids = [sp.cls, *a[:keep_a], sp.sep, *b[:keep_b], sp.sep]
        out.append(np.asarray(ids, np.int32))
        seg_a[i] = keep_a + 2
    return SequenceFeatures(out, seg_a, cut)


# ---- words (token classification) ---------------------------------------------------------------------
@dataclass
class WordFeatures:
    """Inputs for token classification. ``labels[i][t]`` is the label id of the word whose first piece is
    token t, else IGNORE; ``word_index[i][t]`` is that word's index (-1 on other tokens)."""

    input_ids: list[np.ndarray]
    labels: list[np.ndarray] | None
    word_index: list[np.ndarray]
    n_words: np.ndarray  # (N,) words in the source sentence
    words_kept: np.ndarray  # (N,) words that got a first piece inside max_length

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_words(tok: Tokenizer, words: Sequence[Sequence[str]], labels: Sequence[Sequence[int]] | None = None,
                 max_length: int = 128) -> WordFeatures:
    """Pre-split words (CoNLL tokens, Chinese characters) to pieces; the first piece carries the label."""
    sp = special_ids(tok)
    encodings = tok.encode_batch([list(w) for w in words], is_pretokenized=True, add_special_tokens=False)
    ids_out, labels_out, index_out = [], [] if labels is not None else None, []
    n_words = np.array([len(w) for w in words], np.int32)
    kept = np.zeros(len(words), np.int32)
    for i, enc in enumerate(encodings):
        word_ids = [w for w in enc.word_ids[: max_length - 2]]
        ids = np.asarray([sp.cls, *enc.ids[: max_length - 2], sp.sep], np.int32)
        first = np.full(len(ids), -1, np.int32)
        previous = None
        for t, w in enumerate(word_ids, start=1):
            if w is not None and w != previous:
                first[t] = w
            previous = w
        ids_out.append(ids)
        index_out.append(first)
        kept[i] = int((first >= 0).sum())
        if labels_out is not None:
            gold = np.asarray(labels[i], np.int64)  # type: ignore[index]
            if len(gold) != len(words[i]):
                raise ValueError(f"sentence {i}: {len(words[i])} words but {len(gold)} labels")
            lab = np.full(len(ids), IGNORE, np.int64)
            lab[first >= 0] = gold[first[first >= 0]]
            labels_out.append(lab)
    return WordFeatures(ids_out, labels_out, index_out, n_words, kept)


def word_predictions(word_index: np.ndarray, token_predictions: np.ndarray, n_words: int, outside: int) -> np.ndarray:
    """Per-word predicted label ids from per-token ones: each word takes its first piece's prediction;
    words without a piece inside the model's window are predicted ``outside``."""
    out = np.full(n_words, outside, np.int64)
    mask = word_index >= 0
    out[word_index[mask]] = token_predictions[mask]
    return out


# ---- extractive QA ------------------------------------------------------------------------------------
@dataclass
class QAFeatures:
    """One row per window. ``context_offsets[f]`` are (start, end) character offsets in the original context
    for every token of window f (-1 for question and special tokens); ``max_context[f]`` is True where the
    window is the one in which that token has the most context (Google's ``_check_is_max_context``)."""

    input_ids: list[np.ndarray]
    segment_a_len: np.ndarray  # (F,)
    example_index: np.ndarray  # (F,) the example each window belongs to
    context_offsets: list[np.ndarray]  # (T_f, 2) int32
    max_context: list[np.ndarray]  # (T_f,) bool
    start_positions: np.ndarray | None = None  # (F,) token index of the answer start, 0 ([CLS]) if not inside
    end_positions: np.ndarray | None = None
    windows_per_example: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.input_ids)


def _char_span_to_tokens(offsets: np.ndarray, start_char: int, end_char: int) -> tuple[int, int] | None:
    """First and last context token overlapping [start_char, end_char), or None if none does."""
    inside = np.nonzero((offsets[:, 1] > start_char) & (offsets[:, 0] < end_char))[0]
    return (int(inside[0]), int(inside[-1])) if len(inside) else None


def encode_qa(tok: Tokenizer, questions: Sequence[str], contexts: Sequence[str], max_length: int = 384,
              doc_stride: int = 128, max_query_length: int = 64,
              answer_starts: Sequence[int | None] | None = None,
              answer_texts: Sequence[str | None] | None = None) -> QAFeatures:
    """Question/context pairs to windows. With answers (training), each window's start/end positions are
    the answer's tokens when the whole answer lies inside the window, else 0 ([CLS]), as in BERT."""
    sp = special_ids(tok)
    q_ids = [ids[:max_query_length] for ids in _pieces(tok, questions)]
    ctx_enc = tok.encode_batch(list(contexts), add_special_tokens=False)
    ids_out, seg, ex_idx, offs_out, maxc_out, starts, ends = [], [], [], [], [], [], []
    per_example = np.zeros(len(contexts), np.int32)
    for i, (q, enc) in enumerate(zip(q_ids, ctx_enc)):
        c_ids = enc.ids
        c_off = np.asarray(enc.offsets, np.int32).reshape(-1, 2)
        room = max_length - len(q) - 3
        if room < 1:
            raise ValueError(f"max_length {max_length} leaves no room for the context after a {len(q)}-token question; "
                             "raise max_length or lower max_query_length")
        windows = _windows(len(c_ids), room, doc_stride)
        span = None
        if answer_starts is not None and answer_texts is not None and answer_texts[i] is not None:
            s_char = int(answer_starts[i])  # type: ignore[arg-type]
            span = _char_span_to_tokens(c_off, s_char, s_char + len(answer_texts[i]))  # type: ignore[arg-type]
        for k, (w_start, w_len) in enumerate(windows):
            head = len(q) + 2
            ids_out.append(np.asarray([sp.cls, *q, sp.sep, *c_ids[w_start:w_start + w_len], sp.sep], np.int32))
            seg.append(head)
            ex_idx.append(i)
            off = np.full((head + w_len + 1, 2), -1, np.int32)
            off[head:head + w_len] = c_off[w_start:w_start + w_len]
            offs_out.append(off)
            mc = np.zeros(head + w_len + 1, bool)
            mc[head:head + w_len] = [_is_max_context(windows, k, w_start + j) for j in range(w_len)]
            maxc_out.append(mc)
            if span is not None and w_start <= span[0] and span[1] < w_start + w_len:
                starts.append(head + span[0] - w_start)
                ends.append(head + span[1] - w_start)
            else:
                starts.append(0)
                ends.append(0)
        per_example[i] = len(windows)
    labelled = answer_starts is not None
    return QAFeatures(ids_out, np.asarray(seg, np.int32), np.asarray(ex_idx, np.int32), offs_out, maxc_out,
                      np.asarray(starts, np.int64) if labelled else None,
                      np.asarray(ends, np.int64) if labelled else None, per_example)


def _windows(n_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
    """(start, length) of each window, as Google's run_squad: a window starts every ``stride`` tokens until
    one reaches the end of the context."""
    out, start = [], 0
    while True:
        length = min(room, n_tokens - start)
        out.append((start, length))
        if start + length >= n_tokens:
            return out
        start += min(length, stride)


def _is_max_context(windows: list[tuple[int, int]], current: int, position: int) -> bool:
    """Google's ``_check_is_max_context``: the window where ``position`` has the largest min(left, right)
    context, plus a small bonus for longer windows."""
    best, best_score = None, None
    for k, (start, length) in enumerate(windows):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best, best_score = k, score
    return best == current


@dataclass(frozen=True)
class Answer:
    text: str
    start_char: int  # -1 for the null answer
    score: float  # start logit + end logit of the best non-null span
    null_score: float  # [CLS] start + end logit, the smallest over the example's windows


def best_answers(features: QAFeatures, contexts: Sequence[str], start_logits: Sequence[np.ndarray],
                 end_logits: Sequence[np.ndarray], n_best: int = 20, max_answer_length: int = 30) -> list[Answer]:
    """The best span of each example over all its windows: the ``n_best`` largest start and end logits of
    each window, spans inside the context, start ≤ end, at most ``max_answer_length`` tokens, the start
    token in its max-context window; the answer is the original context's text between the offsets."""
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    for f in range(len(features)):
        i = int(features.example_index[f])
        s_log, e_log = np.asarray(start_logits[f]), np.asarray(end_logits[f])
        offsets, maxc = features.context_offsets[f], features.max_context[f]
        null[i] = min(null.get(i, np.inf), float(s_log[0] + e_log[0]))
        top_s = np.argsort(-s_log, kind="stable")[:n_best]
        top_e = np.argsort(-e_log, kind="stable")[:n_best]
        for s in top_s:
            if offsets[s, 0] < 0 or not maxc[s]:
                continue
            for e in top_e:
                if offsets[e, 0] < 0 or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(s_log[s] + e_log[e])
                if i not in best or score > best[i][0]:
                    best[i] = (score, int(offsets[s, 0]), int(offsets[e, 1]))
    answers = []
    for i, context in enumerate(contexts):
        if i in best:
            score, a, b = best[i]
            answers.append(Answer(context[a:b], a, score, null.get(i, float("-inf"))))
        else:
            answers.append(Answer("", -1, float("-inf"), null.get(i, float("-inf"))))
    return answers


def apply_null_threshold(answers: Sequence[Answer], threshold: float) -> list[str]:
    """SQuAD v2.0: predict no answer when the null score beats the best span's by more than ``threshold``."""
    return ["" if a.null_score - a.score > threshold else a.text for a in answers]


def tune_null_threshold(answers: Sequence[Answer], span_f1: Sequence[float], has_answer: Sequence[bool]) -> float:
    """The threshold that maximises mean F1 on dev, as ``evaluate-v2.0.py``'s ``find_best_thresh``:
    ``span_f1[i]`` is the F1 of the best span's text; abstaining scores 1 exactly when there is no answer."""
    diffs = np.array([a.null_score - a.score for a in answers], np.float64)
    gain_answer = np.asarray(span_f1, np.float64)
    gain_null = (~np.asarray(has_answer, bool)).astype(np.float64)
    order = np.argsort(diffs, kind="stable")
    # threshold t answers the examples with diff <= t; try every observed diff (and -inf: abstain on all)
    total = gain_null.sum()
    best_score, best_t = total, float(diffs.min() - 1.0) if len(diffs) else 0.0
    running = total
    for rank, k in enumerate(order):
        running += gain_answer[k] - gain_null[k]
        tied_with_next = rank + 1 < len(order) and diffs[order[rank + 1]] == diffs[k]
        if not tied_with_next and running > best_score:  # a threshold answers all of a tie or none
            best_score, best_t = running, float(diffs[k])
    return best_t
