"""The examples dataset as a Lightning DataModule, with the data position in every checkpoint.

:class:`ExamplesSource` reads what a run needs to know about an examples dataset (its config, vocabulary,
splits as units, mean length) from the manifest and the Parquet footers. :class:`PretrainDataModule`
builds the streams of :mod:`bertplat.pretrain.data` for this rank and saves the data position through
Lightning's ``state_dict`` / ``load_state_dict`` hooks.

Position bookkeeping: checkpoints are only ever taken at optimizer-step boundaries (periodic, on a
signal, at the end), so after ``global_step`` steps every rank has consumed ``global_step *
accumulate_grad_batches`` micro batches, and :meth:`StreamLayout.advance` turns that into a position
per stream. Resuming seeks every stream there. With loader workers, batches arrive round-robin from the
workers; the checkpoint also records which worker is next, and the resumed loader's workers take over
the streams in that rotation, so resumption is exact with workers too (with the same worker count;
another count keeps the stream positions but not the interleaving).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from torch.utils.data import DataLoader

from bertplat.lake import DatasetHandle, Lake, read_manifest
from bertplat.pretrain.config import PretrainConfig
from bertplat.pretrain.data import (
    BatchCollator,
    StreamLayout,
    TrainStreams,
    Unit,
    ValidationBatches,
    check_layout,
    list_units,
)
from bertplat.vocab.tokenizer import VocabInfo, load_tokenizer


@dataclass
class ExamplesSource:
    """An examples dataset as the pretraining stage sees it."""

    handle: DatasetHandle
    manifest: dict[str, Any]
    vocab: DatasetHandle
    vocab_info: VocabInfo
    train_units: list[Unit]
    val_units: list[Unit]
    columns: list[str]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @property
    def static(self) -> bool:
        return self.config.get("masking") == "static"

    @property
    def has_nsp(self) -> bool:
        return "next_sentence_label" in self.columns

    @property
    def max_seq_length(self) -> int:
        return int(self.config["max_seq_length"])

    @classmethod
    def open(cls, handle: DatasetHandle, lake: Lake) -> ExamplesSource:
        if handle.kind != "examples":
            raise ValueError(f"{handle.ref()} is a {handle.kind} dataset; pretraining reads an examples dataset")
        manifest = read_manifest(handle)
        vocab_ref = next((p for p in manifest.get("parents", []) if p.get("kind") == "vocab"), None)
        if vocab_ref is None:
            raise ValueError(f"the manifest of {handle.ref()} names no vocab parent; rebuild the examples")
        vocab = lake.find("vocab", vocab_ref["name"], vocab_ref["fingerprint"])
        if vocab is None:
            raise ValueError(f"vocab/{vocab_ref['name']}@{vocab_ref['fingerprint']}, the vocabulary of "
                             f"{handle.ref()}, is not in the lake at {lake.root}")
        info = VocabInfo.from_tokenizer(load_tokenizer(vocab.path))
        files = {s: sorted(handle.path.glob(f"split={s}/part-*.parquet")) for s in ("train", "validation")}
        for split, found in files.items():
            if not found:
                raise ValueError(f"{handle.ref()} has no {split} shards (split={split}/part-*.parquet in "
                                 f"{handle.path}); pretraining needs both splits")
        schema = pq.read_schema(files["train"][0])
        wanted = ("input_ids", "segment_a_len", "next_sentence_label", "masked_positions", "masked_label_ids")
        columns = [c for c in wanted if c in schema.names]
        return cls(handle, manifest, vocab, info, list_units(files["train"]), list_units(files["validation"]),
                   columns)

    def mean_length(self, sample_units: int = 8) -> float:
        """Mean tokens per train example, from the manifest's counts or a few units."""
        train = (self.manifest.get("counts") or {}).get("train") or {}
        if train.get("instances") and train.get("tokens"):
            return train["tokens"] / train["instances"]
        lengths = [pc.list_value_length(pq.ParquetFile(u.path).read_row_group(u.row_group, columns=["input_ids"])
                                        .column("input_ids").slice(u.start, u.rows)).to_numpy()
                   for u in self.train_units[:sample_units]]
        return float(np.concatenate(lengths).mean())


class AccumulationWindows:
    """Yields a loader's batches in windows of ``size``, each tagged with the window's labelled-token
    count, so the loss of every micro batch can be normalised by the whole optimizer step's count (the
    gradient-accumulation fix of transformers 4.46, done by looking ahead ``size`` batches)."""

    def __init__(self, loader: DataLoader, size: int):
        self.loader, self.size = loader, size

    def __iter__(self):
        it = iter(self.loader)
        while window := list(islice(it, self.size)):
            total = sum(b["num_masked"] for b in window)
            for b in window:
                b["window_masked"] = total
                yield b


class PretrainDataModule(pl.LightningDataModule):
    """Train streams and validation batches of one examples dataset for this rank."""

    def __init__(self, source: ExamplesSource, config: PretrainConfig):
        super().__init__()
        self.source, self.cfg = source, config
        self.positions: dict[int, int] = {}  # stream -> sub-batches consumed, at the resumed checkpoint
        self.worker_offset = 0
        self.resumed_micro_batches = 0
        self.layout: StreamLayout | None = None

    # ---- layout and collation -----------------------------------------------------------------
    def make_layout(self, world_size: int) -> StreamLayout:
        """The layout for ``world_size`` ranks, checked: every stream must yield batches (fail now, not
        in a worker)."""
        workers = max(1, self.cfg.num_workers)
        layout = StreamLayout(self.cfg.data_streams or world_size * workers, world_size, workers)
        check_layout(self.source.train_units, layout, self.cfg.seed, self.cfg.micro_batch_size,
                     self.cfg.shuffle_buffer)
        return layout

    def collator(self) -> BatchCollator:
        c = self.source.config
        mask_prob = self.cfg.mask_prob or c.get("mask_prob", 0.15)
        # The examples' cap on predictions holds for their own rate; a new rate is uncapped.
        cap = c.get("max_predictions_per_seq") if self.cfg.mask_prob is None else None
        return BatchCollator(self.source.vocab_info, self.source.static, mask_prob,
                             bool(c.get("whole_word_masking", False)), cap)

    def setup(self, stage: str) -> None:
        self.layout = self.make_layout(self.trainer.world_size)

    # ---- loaders ------------------------------------------------------------------------------
    def _loader(self, dataset) -> DataLoader:
        n = self.cfg.num_workers
        cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(dataset, batch_size=None, num_workers=n, pin_memory=cuda,
                          persistent_workers=False, prefetch_factor=4 if n else None)

    def train_dataloader(self) -> AccumulationWindows:
        assert self.layout is not None, "setup() runs first"
        ds = TrainStreams(self.source.train_units, self.source.columns, self.collator(), self.layout,
                          self.trainer.global_rank, self.cfg.seed, self.cfg.micro_batch_size,
                          self.cfg.shuffle_buffer, self.cfg.bucketing, self.positions, self.worker_offset)
        return AccumulationWindows(self._loader(ds), self.cfg.accumulate_grad_batches)

    def val_dataloader(self) -> DataLoader:
        assert self.layout is not None, "setup() runs first"
        ds = ValidationBatches(self.source.val_units, self.source.columns, self.collator(), self.layout,
                               self.trainer.global_rank, self.cfg.seed, self.cfg.micro_batch_size,
                               self.cfg.val_examples)
        return self._loader(ds)

    # ---- the data position in checkpoints -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        assert self.layout is not None
        consumed = self.trainer.global_step * self.cfg.accumulate_grad_batches - self.resumed_micro_batches
        return {
            "streams": self.layout.streams,
            "workers": self.layout.workers,
            "micro_batches": self.resumed_micro_batches + consumed,
            "positions": self.layout.advance(self.positions, consumed, self.worker_offset),
            "worker_offset": (self.worker_offset + consumed) % self.layout.workers,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        workers = max(1, self.cfg.num_workers)
        streams = self.cfg.data_streams or state["streams"]
        if streams != state["streams"]:
            raise ValueError(f"the checkpoint's data was dealt into {state['streams']} streams, the config asks "
                             f"for {streams}; resume with data_streams: {state['streams']}")
        # Stream positions survive any layout; the worker rotation only the same worker count.
        self.positions = {int(k): int(v) for k, v in state["positions"].items()}
        self.worker_offset = state["worker_offset"] if state["workers"] == workers else 0
        self.resumed_micro_batches = state["micro_batches"]
        # A default stream count follows the layout; pin it so that setup() keeps the checkpoint's.
        if self.cfg.data_streams is None:
            self.cfg = self.cfg.model_copy(update={"data_streams": state["streams"]})
        self.layout = self.make_layout(self.trainer.world_size)  # setup() ran before the restore
