"""Streaming examples shards into training batches: disjoint slices, shuffled, length-bucketed, seekable.

No Lightning here; :mod:`bertplat.pretrain.datamodule` wires it up. The design follows MosaicML
streaming's "canonical nodes": the sample order is defined over a fixed number of data *streams*, not
over the processes that happen to read them, so the global batch and a resume position mean the same
thing whatever the number of devices and workers.

- A *unit* is a slice of at most ``UNIT_ROWS`` rows of one Parquet row group (row groups are the
  examples stage's windows, thousands of examples each; slicing lets a small dataset feed many streams).
- Epoch ``e`` deals a seeded permutation of all units round-robin to the streams, so within an epoch
  the streams' slices are disjoint and together complete. Streams cycle epochs on their own (infinite).
- A stream groups its units into *blocks* of about ``shuffle_buffer`` examples; a block is shuffled,
  sorted by length into batches when bucketing (little padding), and the batch order is shuffled. The
  leftover ``rows % batch`` examples of a block sit out that epoch (different ones every epoch).
- Every random choice is keyed by (seed, stream, epoch, block[, batch]), masks included: the collator
  is reseeded for each batch. A stream's future is therefore a pure function of its *position* (sub-batches
  emitted), and :meth:`StreamPlan.locate` seeks to a position from Parquet metadata alone, reading only
  the block it lands in; skipped batches are never collated, let alone run through the model.
- A (rank, worker) *slot* reads ``streams / slots`` streams and yields their sub-batches concatenated:
  with 2 streams, one process with micro batch 8 sees exactly the batches that two DDP ranks with micro
  batch 4 see together.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset, get_worker_info

from bertplat.examples.collator import IGNORE_INDEX, MLMCollator, StaticCollator
from bertplat.vocab.tokenizer import VocabInfo

UNIT_ROWS = 2048  # rows per unit at most: enough units for many streams, few re-reads of a row group
# Tags keep the seed sequences of different purposes apart.
TAG_EPOCH, TAG_BLOCK, TAG_MASK, TAG_VAL = 1, 2, 3, 4
INFO_KEYS = ("num_tokens", "sum_sq_tokens", "num_masked", "window_masked")  # plain ints, not model inputs


@dataclass(frozen=True)
class Unit:
    """Rows ``[start, stop)`` of row group ``row_group`` of one Parquet file."""

    path: str
    row_group: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def list_units(files: Sequence[Path], max_rows: int = UNIT_ROWS) -> list[Unit]:
    """The units of some shards, in file and row-group order, from the Parquet footers only."""
    units = []
    for path in sorted(files):
        meta = pq.ParquetFile(path).metadata
        for rg in range(meta.num_row_groups):
            n = meta.row_group(rg).num_rows
            cuts = np.linspace(0, n, -(-n // max_rows) + 1).round().astype(int) if n else []
            units += [Unit(str(path), rg, int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
    return units


@dataclass
class ExampleBlock:
    """Examples as flat arrays: example i is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    offsets: np.ndarray  # (n + 1,)
    segment_a_len: np.ndarray  # (n,)
    nsp: np.ndarray | None  # (n,) next_sentence_label
    masked_positions: tuple[np.ndarray, np.ndarray] | None  # (flat, offsets), static masking only
    masked_labels: np.ndarray | None

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def examples(self, rows: np.ndarray) -> list[dict]:
        out = []
        for i in rows.tolist():
            ex = {"input_ids": self.ids[self.offsets[i]:self.offsets[i + 1]], "segment_a_len": int(self.segment_a_len[i])}
            if self.nsp is not None:
                ex["next_sentence_label"] = int(self.nsp[i])
            if self.masked_positions is not None:
                flat, off = self.masked_positions
                ex["masked_positions"] = flat[off[i]:off[i + 1]]
                ex["masked_label_ids"] = self.masked_labels[off[i]:off[i + 1]]
            out.append(ex)
        return out


def _flat_list(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    arr = col.combine_chunks()
    lengths = np.asarray(pc.list_value_length(arr), dtype=np.int64)
    return np.asarray(arr.flatten()), np.concatenate([[0], np.cumsum(lengths)])


class BlockReader:
    """Reads units into an :class:`ExampleBlock`, keeping the last two row groups (units of one group
    often follow each other)."""

    def __init__(self, columns: Sequence[str]):
        self.columns = list(columns)
        self._cache: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()

    def _group(self, path: str, rg: int) -> pa.Table:
        key = (path, rg)
        if key not in self._cache:
            self._cache[key] = pq.ParquetFile(path).read_row_group(rg, columns=self.columns)
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[key]

    def read(self, units: Sequence[Unit]) -> ExampleBlock:
        table = pa.concat_tables([self._group(u.path, u.row_group).slice(u.start, u.rows) for u in units])
        ids, offsets = _flat_list(table.column("input_ids"))
        names = set(table.column_names)
        static = None
        labels = None
        if "masked_positions" in names:
            static = _flat_list(table.column("masked_positions"))
            labels = np.asarray(table.column("masked_label_ids").combine_chunks().flatten())
        nsp = np.asarray(table.column("next_sentence_label")) if "next_sentence_label" in names else None
        return ExampleBlock(ids, offsets, np.asarray(table.column("segment_a_len")), nsp, static, labels)


class BatchCollator:
    """Turns rows of a block into model tensors: dynamic masks keyed by the batch, or static masks."""

    def __init__(self, vocab: VocabInfo, static: bool, mask_prob: float, whole_word: bool,
                 max_predictions: int | None):
        self.static = static
        self.pad_id = vocab.pad_id
        self._collator = StaticCollator(vocab.pad_id) if static else MLMCollator(
            vocab.size, vocab.mask_id, vocab.pad_id, vocab.special_ids, mask_prob=mask_prob,
            max_predictions=max_predictions, whole_word=whole_word,
            continuation_lut=vocab.continuation if whole_word else None)

    def __call__(self, block: ExampleBlock, rows: np.ndarray, key: Sequence[int]) -> dict:
        if not self.static:
            self._collator.reseed(list(key))  # masks depend on the batch's key only: seekable
        return self._collator(block.examples(rows))


def concat_batches(parts: Sequence[dict], pad_id: int) -> dict:
    """Stack collated batches of different widths: (B_i, L_i) -> (sum B_i, max L_i), padded as the collator pads."""
    if len(parts) == 1:
        return dict(parts[0])
    width = max(p["input_ids"].shape[1] for p in parts)
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE_INDEX}
    out = {k: torch.cat([F.pad(p[k], (0, width - p[k].shape[1]), value=v) for p in parts]) for k, v in fill.items()}
    if "next_sentence_label" in parts[0]:
        out["next_sentence_label"] = torch.cat([p["next_sentence_label"] for p in parts])
    return out


def add_batch_info(batch: dict) -> dict:
    """Counts the module needs without a device sync: real tokens, sum of squared lengths (attention
    FLOPs), and labelled tokens; computed on the CPU tensors before transfer."""
    lengths = batch["attention_mask"].sum(1)
    batch["num_tokens"] = int(lengths.sum())
    batch["sum_sq_tokens"] = int((lengths * lengths).sum())
    batch["num_masked"] = int((batch["labels"] != IGNORE_INDEX).sum())
    return batch


def plan_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucketing: bool) -> np.ndarray:
    """Rows of a block as (n_batches, batch_size): shuffled, sorted by length if bucketing, batches shuffled."""
    n_batches = len(lengths) // batch_size
    order = rng.permutation(len(lengths))[: n_batches * batch_size]
    if bucketing:  # stable sort of a shuffled order: ties stay random
        order = order[np.argsort(lengths[order], kind="stable")]
    return order.reshape(n_batches, batch_size)[rng.permutation(n_batches)]


class StreamPlan:
    """Which units, blocks and batches stream ``stream`` of ``streams`` visits: Parquet metadata only."""

    def __init__(self, units: Sequence[Unit], streams: int, stream: int, seed: int, block_examples: int,
                 batch_size: int):
        if not 0 <= stream < streams:
            raise ValueError(f"stream {stream} is not in [0, {streams})")
        if len(units) < streams:
            raise ValueError(f"{len(units)} units of examples cannot feed {streams} data streams; use fewer "
                             "devices x workers (or data_streams), or more examples")
        self.units, self.streams, self.stream = list(units), streams, stream
        self.seed, self.block_examples, self.batch_size = seed, block_examples, batch_size

    def blocks(self, epoch: int) -> list[list[Unit]]:
        order = np.random.default_rng([self.seed, TAG_EPOCH, epoch]).permutation(len(self.units))
        blocks: list[list[Unit]] = [[]]
        rows = 0
        for i in order[self.stream::self.streams].tolist():
            if rows >= self.block_examples:
                blocks.append([])
                rows = 0
            blocks[-1].append(self.units[i])
            rows += self.units[i].rows
        return blocks

    def batches_in(self, block: Sequence[Unit]) -> int:
        return sum(u.rows for u in block) // self.batch_size

    def locate(self, position: int) -> tuple[int, int, int]:
        """(epoch, block, batch within block) of sub-batch number ``position``, from metadata alone."""
        epoch = 0
        while True:
            counts = [self.batches_in(b) for b in self.blocks(epoch)]
            if sum(counts) == 0:
                raise ValueError(f"data stream {self.stream} of {self.streams} gets no full batch of "
                                 f"{self.batch_size} in epoch {epoch}; use a smaller micro batch or fewer streams")
            if position < sum(counts):
                for block, n in enumerate(counts):
                    if position < n:
                        return epoch, block, position
                    position -= n
            position -= sum(counts)
            epoch += 1

    def block_rng(self, epoch: int, block: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, TAG_BLOCK, self.stream, epoch, block])

    def mask_key(self, epoch: int, block: int, batch: int) -> list[int]:
        return [self.seed, TAG_MASK, self.stream, epoch, block, batch]


def stream_batches(plan: StreamPlan, reader: BlockReader, collate: BatchCollator, position: int,
                   bucketing: bool) -> Iterator[dict]:
    """Sub-batches of one stream forever, starting at ``position`` (sub-batches already emitted)."""
    epoch, first_block, skip = plan.locate(position)
    while True:
        blocks = plan.blocks(epoch)
        for b in range(first_block, len(blocks)):
            if plan.batches_in(blocks[b]) <= skip:  # nothing left in it (only when seeking): not even read
                skip -= plan.batches_in(blocks[b])
                continue
            data = reader.read(blocks[b])
            batches = plan_batches(data.lengths, plan.batch_size, plan.block_rng(epoch, b), bucketing)
            for i in range(skip, len(batches)):
                yield collate(data, batches[i], plan.mask_key(epoch, b, i))
            skip = 0
        epoch, first_block = epoch + 1, 0


@dataclass(frozen=True)
class StreamLayout:
    """How ``streams`` are dealt to ``world_size`` ranks x ``workers`` loader workers (slots)."""

    streams: int
    world_size: int
    workers: int  # loader workers per rank; 1 when collating in the training process

    def __post_init__(self) -> None:
        if self.streams % self.slots:
            raise ValueError(f"data_streams={self.streams} must be a multiple of devices x workers = "
                             f"{self.world_size} x {self.workers}; each (device, worker) reads an equal share")

    @property
    def slots(self) -> int:
        return self.world_size * self.workers

    def streams_of(self, rank: int, worker: int) -> list[int]:
        return list(range(rank * self.workers + worker, self.streams, self.slots))

    def advance(self, positions: dict[int, int], micro_batches: int, worker_offset: int) -> dict[int, int]:
        """Stream positions after every rank consumed ``micro_batches`` more batches. A loader with workers
        yields batch i from its worker i % workers, which plays slot worker (i + worker_offset) % workers."""
        out = dict(positions)
        for w in range(self.workers):
            first = (w - worker_offset) % self.workers  # first i with (i + offset) % workers == w
            taken = max(0, -(-(micro_batches - first) // self.workers))
            for rank in range(self.world_size):
                for s in self.streams_of(rank, w):
                    out[s] = out.get(s, 0) + taken
        return out


def _slot(layout: StreamLayout, worker_offset: int = 0) -> tuple[int, int]:
    info = get_worker_info()
    worker = info.id if info is not None else 0
    n = info.num_workers if info is not None else 1
    if n != layout.workers:
        raise RuntimeError(f"the loader has {n} workers but the data layout was made for {layout.workers}")
    return worker, (worker + worker_offset) % layout.workers


def sub_batch_size(layout: StreamLayout, micro_batch_size: int) -> int:
    """Examples each stream adds to a micro batch."""
    per_slot = layout.streams // layout.slots
    if micro_batch_size % per_slot:
        raise ValueError(f"micro_batch_size {micro_batch_size} must be a multiple of the {per_slot} data "
                         f"streams each device/worker reads (data_streams={layout.streams}, slots={layout.slots})")
    return micro_batch_size // per_slot


def check_layout(units: Sequence[Unit], layout: StreamLayout, seed: int, micro_batch_size: int,
                 block_examples: int) -> None:
    """Raise ValueError unless every stream of ``layout`` yields full batches."""
    sub = sub_batch_size(layout, micro_batch_size)
    for s in range(layout.streams):
        StreamPlan(units, layout.streams, s, seed, block_examples, sub).locate(0)


class TrainStreams(IterableDataset):
    """Infinite micro batches of one rank: each (rank, worker) slot zips its streams' sub-batches."""

    def __init__(self, units: Sequence[Unit], columns: Sequence[str], collate: BatchCollator,
                 layout: StreamLayout, rank: int, seed: int, micro_batch_size: int, block_examples: int,
                 bucketing: bool, positions: dict[int, int] | None = None, worker_offset: int = 0):
        self.units, self.columns, self.collate, self.layout = list(units), list(columns), collate, layout
        self.rank, self.seed, self.bucketing = rank, seed, bucketing
        self.sub_batch, self.block_examples = sub_batch_size(layout, micro_batch_size), block_examples
        self.positions, self.worker_offset = dict(positions or {}), worker_offset

    def plan(self, stream: int) -> StreamPlan:
        return StreamPlan(self.units, self.layout.streams, stream, self.seed, self.block_examples, self.sub_batch)

    def __iter__(self) -> Iterator[dict]:
        _, slot_worker = _slot(self.layout, self.worker_offset)
        reader = BlockReader(self.columns)
        streams = [stream_batches(self.plan(s), reader, self.collate, self.positions.get(s, 0), self.bucketing)
                   for s in self.layout.streams_of(self.rank, slot_worker)]
        for parts in zip(*streams):
            yield add_batch_info(concat_batches(parts, self.collate.pad_id))


class ValidationBatches(IterableDataset):
    """The first ``n_examples`` of the validation split, sorted by length into batches; batch i goes to
    slot i % slots. The whole set is masked in one collator call with a fixed seed, so the examples and
    their masks are the same whatever the layout and the batch size."""

    def __init__(self, units: Sequence[Unit], columns: Sequence[str], collate: BatchCollator,
                 layout: StreamLayout, rank: int, seed: int, batch_size: int, n_examples: int):
        self.units, self.columns, self.collate, self.layout = list(units), list(columns), collate, layout
        self.rank, self.seed, self.batch_size, self.n_examples = rank, seed, batch_size, n_examples

    def __iter__(self) -> Iterator[dict]:
        worker, _ = _slot(self.layout)
        take, rows = [], 0
        for u in self.units:  # only as many units as it takes
            if rows >= self.n_examples:
                break
            take.append(u)
            rows += u.rows
        if not take:
            return
        block = BlockReader(self.columns).read(take)
        order = np.argsort(block.lengths[: self.n_examples], kind="stable")
        full = self.collate(block, order, [self.seed, TAG_VAL])  # (n, L) for the whole set
        lengths = full["attention_mask"].sum(1)
        for start in range(self.batch_size * (self.rank * self.layout.workers + worker), len(order),
                           self.batch_size * self.layout.slots):
            stop = start + self.batch_size
            width = -(-int(lengths[start:stop].max()) // 8) * 8  # sorted rows: trim the padding back
            batch = {k: (v[start:stop, :width] if v.dim() == 2 else v[start:stop]).contiguous() for k, v in full.items()}
            yield add_batch_info(batch)
