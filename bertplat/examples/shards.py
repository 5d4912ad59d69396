"""One unit of parallel examples work: a run of corpus row groups ("windows") tokenised with
``encode_batch`` (Rust), packed and masked with numpy, written as one Parquet row group per window
and split. Runs in a worker process; holds one window at a time, so memory does not grow with the
corpus.

Each window's random stream is ``SeedSequence([seed, window, split])``: the examples depend on the
window's documents and the seed only, never on the number of workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bertplat.examples.config import ExamplesConfig
from bertplat.examples.create import create_pretraining_examples
from bertplat.examples.data import PackedInstances, TokenizedDocs
from bertplat.examples.gate import check_examples_table
from bertplat.examples.masking import MaskingSpec, prediction_budget
from bertplat.splits import in_holdout
from bertplat.vocab.tokenizer import VocabInfo, load_tokenizer

SPLITS = ("train", "validation")
LENGTH_BIN = 8  # sequence-length histogram bin width, tokens
ENCODE_SLICE = 4096  # sentences per encode_batch call


def examples_schema(cfg: ExamplesConfig, id_type: pa.DataType) -> pa.Schema:
    fields = [pa.field("input_ids", pa.list_(id_type), nullable=False),
              pa.field("segment_a_len", pa.uint16(), nullable=False)]
    if cfg.objective != "mlm":
        fields.append(pa.field("next_sentence_label", pa.int8(), nullable=False))
    fields.append(pa.field("doc_id", pa.string(), nullable=False))   # segment A's document
    if cfg.masking == "static":
        fields += [pa.field("masked_positions", pa.list_(pa.uint16()), nullable=False),
                   pa.field("masked_label_ids", pa.list_(id_type), nullable=False)]
    return pa.schema(fields)


@dataclass
class Window:
    index: int     # global window number (sorted parts, then row groups): seeds the random stream
    part: str      # corpus shard path
    row_group: int


@dataclass
class ExamplesTask:
    index: int
    windows: list[Window]


@dataclass
class SplitStats:
    instances: int = 0
    tokens: int = 0                   # real tokens, special tokens included
    labels_one: int = 0
    documents: int = 0
    length_hist: list[int] = field(default_factory=list)
    masked: int = 0                   # static: predicted positions, and how they were replaced
    masked_as_mask: int = 0
    masked_kept: int = 0
    maskable: int = 0
    mask_budget: int = 0              # static: predictions the budget asks for (capped by max_predictions)

    def add(self, other: SplitStats) -> None:
        for name in ("instances", "tokens", "labels_one", "documents", "masked", "masked_as_mask", "masked_kept",
                     "maskable", "mask_budget"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.length_hist = [a + b for a, b in zip(self.length_hist or [0] * len(other.length_hist),
                                                  other.length_hist)]


@dataclass
class TaskResult:
    index: int
    files: dict[str, str] = field(default_factory=dict)
    stats: dict[str, SplitStats] = field(default_factory=dict)
    input_bytes: int = 0
    failures: list = field(default_factory=list)   # the gate's row-group checks that failed


_tokenizers: dict[str, object] = {}


def init_worker(threads: int) -> None:
    # Rust threads per worker process; set before the tokenizer's thread pool first starts.
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    # Arrow's default allocator keeps freed memory for reuse; a worker handles one window at a time,
    # so returning it to the system keeps each process's footprint near one window's worth.
    pa.set_memory_pool(pa.system_memory_pool())


def _tokenizer(vocab_dir: str):
    if vocab_dir not in _tokenizers:
        _tokenizers[vocab_dir] = load_tokenizer(Path(vocab_dir))
    return _tokenizers[vocab_dir]


def tokenize_documents(tok, sentences: pa.ListArray, doc_ids: list[str]) -> TokenizedDocs:
    """The documents' sentences through ``encode_batch_fast`` (no special tokens) into flat arrays."""
    flat = pc.list_flatten(sentences)
    # in slices, so that the tokenizer's Encoding objects (ids, tokens, masks) never pile up in memory
    pieces, lengths = [], []
    for start in range(0, len(flat), ENCODE_SLICE):
        ids = [e.ids for e in tok.encode_batch_fast(flat.slice(start, ENCODE_SLICE).to_pylist(),
                                                    add_special_tokens=False)]
        n = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        pieces.append(np.fromiter((i for s in ids for i in s), dtype=np.int32, count=int(n.sum())))
        lengths.append(n)
    token_ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    per_doc = np.asarray(pc.list_value_length(sentences).fill_null(0), dtype=np.int64)
    return TokenizedDocs(token_ids, np.concatenate([[0], np.cumsum(lengths)]),
                         np.concatenate([[0], np.cumsum(per_doc)]), doc_ids)


def build_window(tok, info: VocabInfo, cfg: ExamplesConfig, sentences: pa.ListArray, doc_ids: pa.Array,
                 window: int) -> dict[str, tuple[PackedInstances, TokenizedDocs]]:
    """Examples for each split of one window; the split is by document, so no document is in both."""
    held = in_holdout(doc_ids, cfg.validation_fraction)
    spec = None
    if cfg.masking == "static":
        spec = MaskingSpec(vocab_size=info.size, mask_token_id=info.mask_id, special_token_ids=info.special_ids,
                           mask_prob=cfg.mask_prob, max_predictions=cfg.max_predictions,
                           whole_word=cfg.whole_word_masking, continuation_lut=info.continuation)
    out = {}
    for split_id, split in enumerate(SPLITS):
        keep = pa.array(held if split == "validation" else ~held)
        docs = tokenize_documents(tok, sentences.filter(keep), doc_ids.filter(keep).to_pylist())
        if docs.n_docs == 0 or len(docs.token_ids) == 0:
            continue
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, window, split_id]))
        inst = create_pretraining_examples(
            docs, cfg.objective, max_seq_length=cfg.max_seq_length, cls_token_id=info.cls_id,
            sep_token_id=info.sep_id, rng=rng, short_seq_prob=cfg.short_seq_prob, dupe_factor=cfg.dupe_factor,
            masking=spec, balance_nsp=cfg.balance_nsp, budget_basis=cfg.mask_budget_basis)
        if len(inst):
            out[split] = (inst, docs)
    return out


def to_table(inst: PackedInstances, docs: TokenizedDocs, schema: pa.Schema) -> pa.Table:
    id_type = schema.field("input_ids").type.value_type
    cols = {
        "input_ids": pa.ListArray.from_arrays(pa.array(inst.offsets.astype(np.int32)),
                                              pa.array(inst.input_ids.astype(id_type.to_pandas_dtype()))),
        "segment_a_len": pa.array(inst.segment_a_len.astype(np.uint16)),
    }
    if "next_sentence_label" in schema.names:
        cols["next_sentence_label"] = pa.array(inst.next_sentence_label.astype(np.int8))
    cols["doc_id"] = pa.array(np.asarray(docs.doc_ids, dtype=object)[inst.doc_index], pa.string())
    if "masked_positions" in schema.names:
        offsets = pa.array(inst.masked_offsets.astype(np.int32))
        cols["masked_positions"] = pa.ListArray.from_arrays(offsets, pa.array(inst.masked_positions.astype(np.uint16)))
        cols["masked_label_ids"] = pa.ListArray.from_arrays(
            offsets, pa.array(inst.masked_label_ids.astype(id_type.to_pandas_dtype())))
    return pa.Table.from_pydict(cols, schema=schema)


def split_stats(inst: PackedInstances, docs: TokenizedDocs, info: VocabInfo, cfg: ExamplesConfig) -> SplitStats:
    lengths = inst.lengths
    bins = np.arange(0, cfg.max_seq_length + LENGTH_BIN, LENGTH_BIN)
    stats = SplitStats(instances=len(inst), tokens=int(lengths.sum()), documents=docs.n_docs,
                       length_hist=np.histogram(lengths, bins=bins)[0].tolist())
    if inst.next_sentence_label is not None:
        stats.labels_one = int(inst.next_sentence_label.sum())
    if inst.is_masked:
        rows = np.repeat(np.arange(len(inst)), np.diff(inst.masked_offsets))
        flat = inst.offsets[rows] + inst.masked_positions
        now = inst.input_ids[flat]
        stats.masked = len(flat)
        stats.masked_as_mask = int((now == info.mask_id).sum())
        stats.masked_kept = int((now == inst.masked_label_ids).sum())
        # maskable tokens: the non-special ones, counted on the original ids
        original = inst.input_ids.copy()
        original[flat] = inst.masked_label_ids
        special = np.zeros(info.size, dtype=bool)
        special[list(info.special_ids)] = True
        maskable = ~special[original]
        stats.maskable = int(maskable.sum())
        # what the rows ask for, from their lengths alone: the gate compares it with what was masked
        per_row = np.add.reduceat(maskable.astype(np.int64), inst.offsets[:-1])  # (rows,)
        n = lengths if cfg.mask_budget_basis == "length" else per_row
        stats.mask_budget = int(np.where(n > 0, prediction_budget(n, cfg.mask_prob, cfg.max_predictions), 0).sum())
    return stats


def run_task(task: ExamplesTask, cfg: ExamplesConfig, vocab_dir: str, out_dir: str) -> TaskResult:
    tok = _tokenizer(vocab_dir)
    info = VocabInfo.from_tokenizer(tok)
    schema = examples_schema(cfg, pa.from_numpy_dtype(info.id_dtype))
    result = TaskResult(task.index, stats={s: SplitStats() for s in SPLITS})
    writers: dict[str, pq.ParquetWriter] = {}
    groups: dict[str, int] = {}   # row groups written per split
    try:
        for window in task.windows:
            group = pq.ParquetFile(window.part).read_row_group(window.row_group, columns=["doc_id", "sentences"])
            result.input_bytes += group.nbytes
            built = build_window(tok, info, cfg, group.column("sentences").combine_chunks(),
                                 group.column("doc_id").combine_chunks(), window.index)
            for split, (inst, docs) in built.items():
                if split not in writers:
                    name = f"split={split}/part-{task.index:05d}.parquet"
                    (Path(out_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                    writers[split] = pq.ParquetWriter(Path(out_dir) / name, schema, compression="zstd")
                    groups[split] = 0
                    result.files[split] = name
                table = to_table(inst, docs, schema)
                where = f"{result.files[split]} row group {groups[split]}"
                result.failures += check_examples_table(table, cfg, info, where)   # the gate, per row group
                writers[split].write_table(table, row_group_size=len(table))
                groups[split] += 1
                result.stats[split].add(split_stats(inst, docs, info, cfg))
    finally:
        for w in writers.values():
            w.close()
    return result
