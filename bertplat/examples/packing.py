"""Instance creation (packing) as in BERT's ``create_pretraining_data.py`` (Devlin et al. 2018), vectorised.

Three objectives:

- ``nsp`` (BERT): ``create_instances_from_document`` — a per-document target length (``short_seq_prob``
  of the time a random one in [2, max_seq_length - 3]), sentences accumulated into a chunk until the
  target, a random split point ``a_end``, a random-document B half of the time (always for a
  single-sentence chunk) with the unused sentences put back, then ``truncate_seq_pair``.
- ``sop`` (ALBERT): the same chunking, B is always the continuation, and half of the pairs are swapped.
- ``mlm`` (RoBERTa FULL-SENTENCES): contiguous sentences packed up to max_seq_length - 2, crossing
  document boundaries with a [SEP] between documents; no segment B, no label.

Deviations from the reference, and why:

- NSP random documents come from the documents of the same call (a streaming window: a row group or
  a shard), not the whole corpus; with thousands of documents per window the effect is nil. The
  reference retries ``randint`` up to 10 times to avoid the current document; we draw uniformly from
  the *other* documents, which is the same distribution without the 1-in-n^10 failure. A window with a
  single document has no other document: there we do what the reference does when its retries fail
  (B from a random start in the same document, label 1); ``b_doc_index == doc_index`` flags them.
- NSP balance: a chunk of a single sentence has no B in its own document, so the reference always
  makes it a random next; trailing one-sentence chunks and one-sentence documents (60% of the
  WikiExtractor dump's articles are a bare title) then push the random share well past 50% (54% on
  typical documents, far more on Wikipedia). BERT's task is 50/50, and our gate checks 50 +- 2%, so the
  coin for the other chunks leans against the running surplus of random-next instances:
  P(random) = clip(0.5 - surplus / (2 * BALANCE_SPAN), 0, 1). Within a window the labels balance; each
  label is still drawn at random. Where one-sentence chunks are so common that even a coin of 0 cannot
  pay them back (a validation shard of bare titles: 65% random next was seen), a one-sentence chunk
  met while the surplus is at BALANCE_SPAN is left out, so a window's share stays within
  BALANCE_SPAN / n of 50%.
- SOP: ALBERT's script still draws a random-document B for single-sentence chunks (an NSP leftover).
  Without random documents we split such a sentence at a uniform random token boundary instead, so
  A/B stay in-document and ordered; a chunk that is a single one-token sentence yields no instance.
- Random draws come from a ``numpy.random.Generator`` (pre-drawn uniforms for the per-chunk choices,
  one binomial per instance for truncation), so results are not bit-identical to the reference's
  ``random.Random`` stream; the distributions are the same. ``truncate_seq_pair`` is computed in closed
  form: the reference's pop-one-token loop ends at the lengths of :func:`truncated_lengths`, and the
  number of tokens it pops from the front of a segment is Binomial(removed, 1/2).
- Documents and instances are not shuffled here (the reference shuffles both): the stage keeps shard
  order for lineage and the data loader shuffles.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Literal

import numpy as np

from bertplat.examples.data import PackedInstances, TokenizedDocs, expand_ranges

Objective = Literal["nsp", "sop", "mlm"]
# NSP label balance: the coin's probability of a random B moves by 1/(2 * BALANCE_SPAN) per instance of
# surplus, so forced random-next instances are paid back within a few dozen instances.
BALANCE_SPAN = 16
OBJECTIVES: tuple[str, ...] = ("nsp", "sop", "mlm")


class _Uniforms:
    """Uniforms drawn from the generator in blocks and consumed one at a time as Python floats.

    A numpy call per scalar costs about a microsecond; the chunk loop makes several per instance.
    """

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng, self._block = rng, block
        self._values: list[float] = []
        self._next = 0

    def random(self) -> float:
        if self._next == len(self._values):
            self._values, self._next = self._rng.random(self._block).tolist(), 0
        self._next += 1
        return self._values[self._next - 1]

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high], both inclusive (like ``random.Random.randint``)."""
        return low + int(self.random() * (high - low + 1))


def truncated_lengths(len_a: np.ndarray, len_b: np.ndarray, max_num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Segment lengths after the reference ``truncate_seq_pair`` loop, in closed form.

    The loop removes one token at a time from the longer segment (B on ties) until the pair fits: the
    longer one shrinks to the shorter one, then they alternate, so A keeps ceil(T/2) when both shrink.
    """
    len_a = np.asarray(len_a, dtype=np.int64)
    len_b = np.asarray(len_b, dtype=np.int64)
    total = max_num_tokens
    over = len_a + len_b > total
    # A either keeps what B leaves free, or is cut to its half of an alternating shrink; never grows
    new_a = np.minimum(len_a, np.maximum(total - len_b, (total + 1) // 2))
    new_a = np.where(over, new_a, len_a)
    new_b = np.where(over, total - new_a, len_b)
    return new_a, new_b


def truncate_seq_pair(
    a_start: np.ndarray, len_a: np.ndarray, b_start: np.ndarray, len_b: np.ndarray,
    max_num_tokens: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Truncate every (A, B) token span pair to at most ``max_num_tokens`` tokens, from a random end.

    Spans are (start, length) into a flat token array; returns the new (a_start, len_a, b_start, len_b).
    Each removed token comes from the front with probability 1/2, as in the reference.
    """
    new_a, new_b = truncated_lengths(len_a, len_b, max_num_tokens)
    front_a = rng.binomial(np.asarray(len_a) - new_a, 0.5)
    front_b = rng.binomial(np.asarray(len_b) - new_b, 0.5)
    return np.asarray(a_start) + front_a, new_a, np.asarray(b_start) + front_b, new_b


def _nonempty_structure(docs: TokenizedDocs) -> tuple[list[int], list[int], list[int], list[int]]:
    """Sentence bounds with empty sentences dropped, and the non-empty documents' sentence ranges.

    Returns (bounds, first, end, doc): sentence k spans tokens bounds[k]:bounds[k + 1] (empty sentences
    have no tokens, so the remaining ones still tile token_ids); document doc[j] is sentences first[j]:end[j].
    """
    so = docs.sentence_offsets
    nonempty = so[1:] > so[:-1]
    rank = np.concatenate([[0], np.cumsum(nonempty)])
    bounds = np.concatenate([so[:-1][nonempty], so[-1:]])
    first, end = rank[docs.doc_offsets[:-1]], rank[docs.doc_offsets[1:]]
    keep = np.flatnonzero(end > first)
    return bounds.tolist(), first[keep].tolist(), end[keep].tolist(), keep.tolist()


def _pair_spans(docs: TokenizedDocs, objective: str, max_num_tokens: int, short_seq_prob: float,
                rng: np.random.Generator, balance_nsp: bool = True) -> np.ndarray:
    """Run the reference chunking loop; returns (n, 7) int64 rows of
    (a_start, a_len, b_start, b_len, label, doc, b_doc) before truncation."""
    bounds, first, end, doc_of = _nonempty_structure(docs)
    u = _Uniforms(rng)
    rows: list[tuple[int, ...]] = []
    surplus = 0  # random-next minus actual-next instances so far (nsp balance, see the module docstring)
    for j in range(len(doc_of)):
        target = max_num_tokens
        if u.random() < short_seq_prob:
            target = u.randint(2, max_num_tokens)
        chunk_start, doc_end = first[j], end[j]
        while chunk_start < doc_end:
            # the chunk is the shortest run of sentences reaching the target, or the rest of the document
            chunk_end = bisect_left(bounds, bounds[chunk_start] + target, chunk_start + 1, doc_end)
            if objective == "nsp" and balance_nsp and chunk_end - chunk_start < 2 and surplus >= BALANCE_SPAN:
                # a one-sentence chunk could only be another forced random next; with the surplus already at
                # its bound (a window of mostly one-sentence documents) it is left out, see the docstring
                chunk_start = chunk_end
                continue
            if objective == "nsp":
                p_random = min(1.0, max(0.0, 0.5 - surplus / (2 * BALANCE_SPAN))) if balance_nsp else 0.5
                row, chunk_end = _nsp_pair(u, bounds, first, end, doc_of, j, chunk_start, chunk_end, target,
                                           p_random)
                surplus += 1 if row[4] else -1
            else:
                row = _sop_pair(u, bounds, chunk_start, chunk_end, doc_of[j])
            if row is not None:
                rows.append(row)
            chunk_start = chunk_end
    return np.array(rows, dtype=np.int64).reshape(-1, 7)


def _nsp_pair(u: _Uniforms, bounds: list[int], first: list[int], end: list[int], doc_of: list[int],
              j: int, cs: int, ce: int, target: int, p_random: float = 0.5) -> tuple[tuple[int, ...], int]:
    """One NSP instance from chunk [cs, ce) of document j; returns the row and where the next chunk starts.

    B is random when the chunk has one sentence (forced, as in the reference) or with ``p_random``."""
    a_end = cs + 1 if ce - cs < 2 else cs + u.randint(1, ce - cs - 1)
    a_start, a_len = bounds[cs], bounds[a_end] - bounds[cs]
    if ce - cs > 1 and u.random() >= p_random:
        return (a_start, a_len, bounds[a_end], bounds[ce] - bounds[a_end], 0, doc_of[j], doc_of[j]), ce
    n_docs = len(doc_of)
    r = j
    if n_docs > 1:  # uniform over the other documents; see the module docstring
        r = u.randint(0, n_docs - 2)
        r += int(r >= j)  # skip the current document
    start = u.randint(first[r], end[r] - 1)
    # sentences from `start` until B reaches target - len(A), or the random document ends
    stop = bisect_left(bounds, bounds[start] + target - a_len, start + 1, end[r])
    # the chunk's unused sentences are "put back": the next chunk starts right after A
    return (a_start, a_len, bounds[start], bounds[stop] - bounds[start], 1, doc_of[j], doc_of[r]), a_end


def _sop_pair(u: _Uniforms, bounds: list[int], cs: int, ce: int, doc: int) -> tuple[int, ...] | None:
    """One SOP instance from chunk [cs, ce): A, B in order, then swapped half of the time (label 1)."""
    if ce - cs >= 2:
        split = bounds[cs + u.randint(1, ce - cs - 1)]
    elif bounds[ce] - bounds[cs] >= 2:  # a single sentence: split at a token boundary (module docstring)
        split = bounds[cs] + u.randint(1, bounds[ce] - bounds[cs] - 1)
    else:
        return None
    a, b = (bounds[cs], split - bounds[cs]), (split, bounds[ce] - split)
    if u.random() < 0.5:
        return (*b, *a, 1, doc, doc)
    return (*a, *b, 0, doc, doc)


def _assemble_pairs(token_ids: np.ndarray, a_start: np.ndarray, len_a: np.ndarray, b_start: np.ndarray,
                    len_b: np.ndarray, cls_id: int, sep_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Lay out ``[CLS] A [SEP] B [SEP]`` for every instance; returns (input_ids, offsets)."""
    offsets = np.concatenate([[0], np.cumsum(len_a + len_b + 3)]).astype(np.int64)
    input_ids = np.full(int(offsets[-1]), sep_id, dtype=np.int32)
    input_ids[offsets[:-1]] = cls_id
    # A lands right after [CLS], B right after A's [SEP]; the [SEP]s are what the fill left
    src_starts = np.concatenate([a_start, b_start])
    dst_starts = np.concatenate([offsets[:-1] + 1, offsets[:-1] + len_a + 2])
    lengths = np.concatenate([len_a, len_b])
    src = expand_ranges(src_starts, lengths)
    input_ids[src + np.repeat(dst_starts - src_starts, lengths)] = token_ids[src]
    return input_ids, offsets


def _create_pairs(docs: TokenizedDocs, objective: str, max_seq_length: int, short_seq_prob: float,
                  cls_id: int, sep_id: int, rng: np.random.Generator, balance_nsp: bool) -> PackedInstances:
    max_num_tokens = max_seq_length - 3  # [CLS] A [SEP] B [SEP]
    spans = _pair_spans(docs, objective, max_num_tokens, short_seq_prob, rng, balance_nsp)
    a_start, len_a, b_start, len_b = truncate_seq_pair(*spans[:, :4].T, max_num_tokens, rng)
    input_ids, offsets = _assemble_pairs(docs.token_ids, a_start, len_a, b_start, len_b, cls_id, sep_id)
    return PackedInstances(
        input_ids=input_ids, offsets=offsets, segment_a_len=(len_a + 2).astype(np.int32),
        next_sentence_label=spans[:, 4].astype(np.int8), doc_index=spans[:, 5], b_doc_index=spans[:, 6],
        a_token_start=a_start, b_token_start=b_start,
    )


def _pack_items(bounds: np.ndarray, first: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-empty sentences (``bounds``; documents begin at sentences ``first``) cut into pieces of at most
    ``budget`` tokens: (start, length, opens_doc) per piece."""
    starts, lengths = bounds[:-1], np.diff(bounds)
    doc_start = np.zeros(len(starts), dtype=bool)
    doc_start[first] = True
    n_pieces = -(-lengths // budget)
    rank = expand_ranges(np.zeros_like(n_pieces), n_pieces)  # piece number inside its sentence
    piece_start = np.repeat(starts, n_pieces) + budget * rank
    piece_len = np.minimum(budget, np.repeat(starts + lengths, n_pieces) - piece_start)
    return piece_start, piece_len, np.repeat(doc_start, n_pieces) & (rank == 0)


def _create_full_sentences(docs: TokenizedDocs, max_seq_length: int, cls_id: int, sep_id: int) -> PackedInstances:
    budget = max_seq_length - 2  # [CLS] ... [SEP]
    bounds, first, _, doc_of = (np.asarray(x, dtype=np.int64) for x in _nonempty_structure(docs))
    piece_start, piece_len, starts_doc = _pack_items(bounds, first, budget)
    # a piece costs its tokens plus the [SEP] before it when it opens a document, except when it also
    # opens the instance, hence the extra unit of capacity for such instances
    cost = np.concatenate([[0], np.cumsum(piece_len + starts_doc)]).tolist()
    opens_doc = starts_doc.tolist()
    first_items, i = [], 0
    while i < len(opens_doc):
        first_items.append(i)
        i = bisect_right(cost, cost[i] + budget + opens_doc[i]) - 1
    first_item = np.asarray(first_items, dtype=np.int64)
    t0 = piece_start[first_item] if len(first_item) else np.zeros(0, np.int64)
    n_tok = np.diff(np.concatenate([t0, [len(docs.token_ids)]]))
    return _assemble_full_sentences(docs, t0, n_tok, piece_start[starts_doc], doc_of, cls_id, sep_id)


def _assemble_full_sentences(docs: TokenizedDocs, t0: np.ndarray, n_tok: np.ndarray, doc_token_starts: np.ndarray,
                             doc_of: np.ndarray, cls_id: int, sep_id: int) -> PackedInstances:
    """Lay out ``[CLS] tokens [SEP]`` with a [SEP] before every document start inside an instance.

    Instance i holds tokens t0[i]:t0[i] + n_tok[i]; document doc_of[k] starts at token doc_token_starts[k].
    """
    n_total = len(docs.token_ids)
    opens = np.zeros(n_total, dtype=np.int64)
    opens[doc_token_starts] = 1
    opened = np.cumsum(opens)  # document starts at or before each token
    seps_inside = (opened[t0 + n_tok - 1] - opened[t0]) if len(t0) else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_tok + seps_inside + 2)]).astype(np.int64)
    input_ids = np.full(int(offsets[-1]), sep_id, dtype=np.int32)
    input_ids[offsets[:-1]] = cls_id
    instance = np.repeat(np.arange(len(t0)), n_tok)
    token = np.arange(n_total)
    inside = token - t0[instance]
    input_ids[offsets[instance] + 1 + inside + opened - opened[t0][instance]] = docs.token_ids
    doc_rank = np.searchsorted(doc_token_starts, t0, side="right") - 1
    none = np.full(len(t0), -1, dtype=np.int64)
    return PackedInstances(
        input_ids=input_ids, offsets=offsets, segment_a_len=np.diff(offsets).astype(np.int32),
        next_sentence_label=None, doc_index=doc_of[doc_rank], b_doc_index=none,
        a_token_start=t0.astype(np.int64), b_token_start=none.copy(),
    )


def create_instances(docs: TokenizedDocs, objective: Objective, *, max_seq_length: int, cls_token_id: int,
                     sep_token_id: int, rng: np.random.Generator | None, short_seq_prob: float = 0.1,
                     balance_nsp: bool = True) -> PackedInstances:
    """Pack tokenised documents into pretraining instances (unmasked); one pass, no ``dupe_factor``.

    ``short_seq_prob`` applies to nsp/sop only, as in the reference; mlm consumes no randomness (its
    ``rng`` may be None). ``balance_nsp=False`` flips a fair coin for every chunk, exactly as the
    reference does (see the module docstring for why the default leans against the surplus).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    min_length = 3 if objective == "mlm" else 5  # room for the special tokens and one token per segment
    if max_seq_length < min_length:
        raise ValueError(f"max_seq_length={max_seq_length} is too small for {objective}; use at least {min_length}")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
    if objective == "mlm":
        return _create_full_sentences(docs, max_seq_length, cls_token_id, sep_token_id)
    if rng is None:
        raise ValueError(f"{objective} draws random split points and labels: pass a numpy Generator as rng")
    return _create_pairs(docs, objective, max_seq_length, short_seq_prob, cls_token_id, sep_token_id, rng,
                         balance_nsp)
