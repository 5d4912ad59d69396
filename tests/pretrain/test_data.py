"""The data streams: disjoint and complete slices, determinism, bucketing, seeking, worker rotation, layouts."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bertplat.pretrain.data import (
    BatchCollator,
    BlockReader,
    StreamLayout,
    StreamPlan,
    TrainStreams,
    ValidationBatches,
    check_layout,
    list_units,
    plan_batches,
    stream_batches,
)
from bertplat.vocab.tokenizer import VocabInfo
from tests.pretrain.conftest import VOCAB_SIZE, example_id, write_shards

COLUMNS = ["input_ids", "segment_a_len", "next_sentence_label", "masked_positions", "masked_label_ids"]
N = 1000


def vocab(size: int = VOCAB_SIZE) -> VocabInfo:
    return VocabInfo(size, 0, 1, 2, 3, 4, np.zeros(size, dtype=bool))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """1000 examples in 2 files, row groups of 150 rows (the last of each file shorter)."""
    return write_shards(tmp_path_factory.mktemp("shards"), N, rows_per_group=150)


@pytest.fixture(scope="module")
def units(shards):
    return list_units(shards, max_rows=100)


def static() -> BatchCollator:
    return BatchCollator(vocab(), static=True, mask_prob=0.15, whole_word=False, max_predictions=None)


def dynamic() -> BatchCollator:
    return BatchCollator(vocab(), static=False, mask_prob=0.15, whole_word=False, max_predictions=None)


def ids_of(batch) -> list[int]:
    """Example numbers of a batch's rows; masked tokens are read back from the labels."""
    original = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
    return [example_id(row) for row in original.tolist()]


def streams(units, layout, rank=0, micro=8, positions=None, collate=None, offset=0, buffer=200):
    return TrainStreams(units, COLUMNS, collate or static(), layout, rank, seed=7, micro_batch_size=micro,
                        block_examples=buffer, bucketing=True, positions=positions, worker_offset=offset)


def test_units_slice_row_groups_and_cover_every_row_once(shards, units):
    # 500 rows per file in row groups of 150, 150, 150, 50; slices of at most 100 rows
    assert [u.rows for u in units[:5]] == [75, 75, 75, 75, 75]
    assert all(u.rows <= 100 for u in units)
    assert sum(u.rows for u in units) == N
    for path in {u.path for u in units}:
        for rg in {u.row_group for u in units if u.path == path}:
            spans = sorted((u.start, u.stop) for u in units if u.path == path and u.row_group == rg)
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[0][0] == 0


def test_an_epoch_deals_every_unit_to_exactly_one_stream(units):
    for epoch in range(3):
        dealt = [u for s in range(4) for block in StreamPlan(units, 4, s, 7, 200, 8).blocks(epoch) for u in block]
        assert sorted(dealt, key=str) == sorted(units, key=str)
    first = [u for b in StreamPlan(units, 4, 0, 7, 200, 8).blocks(0) for u in b]
    again = [u for b in StreamPlan(units, 4, 0, 7, 200, 8).blocks(1) for u in b]
    assert first != again  # a new permutation each epoch


def test_slots_read_disjoint_examples_that_together_cover_the_epoch(units):
    """4 slots (2 ranks x 2 workers), one epoch each: no example twice, none missing but block leftovers."""
    layout = StreamLayout(streams=4, world_size=2, workers=2)
    seen: list[int] = []
    for s in range(4):
        plan = StreamPlan(units, 4, s, 7, 200, 8)
        n = sum(plan.batches_in(b) for b in plan.blocks(0))
        for batch in islice(stream_batches(plan, BlockReader(COLUMNS), static(), 0, True), n):
            seen += ids_of(batch)
    assert len(seen) == len(set(seen))
    leftovers = sum(sum(u.rows for u in b) % 8 for s in range(4) for b in StreamPlan(units, 4, s, 7, 200, 8).blocks(0))
    assert len(seen) == N - leftovers and leftovers < 4 * 8 * 2
    assert sorted({s for r in range(2) for w in range(2) for s in layout.streams_of(r, w)}) == [0, 1, 2, 3]


def test_the_stream_is_deterministic_and_depends_on_the_seed(units):
    layout = StreamLayout(2, 1, 1)
    a = list(islice(iter(streams(units, layout, collate=dynamic())), 20))
    b = list(islice(iter(streams(units, layout, collate=dynamic())), 20))
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in ("input_ids", "labels"))
    other = TrainStreams(units, COLUMNS, dynamic(), layout, 0, seed=8, micro_batch_size=8, block_examples=200,
                         bucketing=True)
    c = list(islice(iter(other), 20))
    assert any(not torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))


def padding_share(batches) -> float:
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return 1 - real / sum(b["input_ids"].numel() for b in batches)


def test_length_bucketing_lowers_padding(units):
    layout = StreamLayout(1, 1, 1)
    kw = dict(collate=static(), layout=layout, rank=0, seed=7, micro_batch_size=16, block_examples=400)
    bucketed = list(islice(iter(TrainStreams(units, COLUMNS, bucketing=True, **kw)), 40))
    plain = list(islice(iter(TrainStreams(units, COLUMNS, bucketing=False, **kw)), 40))
    # lengths uniform in 8..64: random batches pad to ~their max (~35% waste); sorted ones to ~8 tokens
    assert padding_share(bucketed) < 0.15 < 0.25 < padding_share(plain)


def test_plan_batches_keeps_batch_size_and_sorts_within_the_block():
    rng = np.random.default_rng(0)
    lengths = np.arange(23)[::-1].copy()
    batches = plan_batches(lengths, 5, rng, bucketing=True)
    assert batches.shape == (4, 5) and len(set(batches.ravel())) == 20
    spans = sorted((lengths[b].min(), lengths[b].max()) for b in batches)
    assert all(hi - lo <= 6 for lo, hi in spans)  # 20 of 23 distinct lengths in sorted runs of 5


@pytest.mark.parametrize("position", [0, 3, 17, 25, 61, 70])
def test_seeking_a_position_yields_what_the_uninterrupted_stream_yields_next(units, position):
    """Dynamic masks included: seeking replays neither reading nor masking of the skipped batches."""
    plan = StreamPlan(units, 2, 1, 7, 200, 8)
    straight = list(islice(stream_batches(plan, BlockReader(COLUMNS), dynamic(), 0, True), position + 6))
    sought = list(islice(stream_batches(plan, BlockReader(COLUMNS), dynamic(), position, True), 6))
    for a, b in zip(straight[position:], sought):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    # the cases cover block starts, block middles and the turn of the epoch (62 batches in epoch 0)
    assert sum(plan.batches_in(b) for b in plan.blocks(0)) == 62
    assert plan.locate(62) == (1, 0, 0) and plan.locate(70) == (1, 0, 8)


def test_seeking_reads_only_the_block_it_lands_in(units, monkeypatch):
    plan = StreamPlan(units, 1, 0, 7, 200, 8)
    reads = []
    original = BlockReader.read
    monkeypatch.setattr(BlockReader, "read", lambda self, block: reads.append(len(block)) or original(self, block))
    next(stream_batches(plan, BlockReader(COLUMNS), static(), 60, True))
    assert len(reads) == 1


def test_layout_advance_counts_round_robin_workers_by_hand():
    layout = StreamLayout(streams=4, world_size=1, workers=2)  # worker 0: streams 0, 2; worker 1: 1, 3
    assert layout.streams_of(0, 0) == [0, 2] and layout.streams_of(0, 1) == [1, 3]
    # 5 micro batches from workers 0,1,0,1,0
    assert layout.advance({}, 5, worker_offset=0) == {0: 3, 2: 3, 1: 2, 3: 2}
    # resumed loader whose worker 0 plays slot worker 1: batches come from slot workers 1,0,1,0,1
    assert layout.advance({0: 1, 1: 1, 2: 1, 3: 1}, 5, worker_offset=1) == {0: 3, 2: 3, 1: 4, 3: 4}
    with pytest.raises(ValueError, match="multiple of devices x workers"):
        StreamLayout(streams=3, world_size=2, workers=1)


def test_resuming_a_loader_with_workers_continues_the_uninterrupted_sequence(units):
    """Two loader workers: stop after 5 batches, resume from the recorded positions and rotation."""
    layout = StreamLayout(streams=2, world_size=1, workers=2)

    def run(positions, offset, n):
        loader = DataLoader(streams(units, layout, positions=positions, offset=offset), batch_size=None, num_workers=2)
        return [ids_of(b) for b in islice(iter(loader), n)]

    straight = run({}, 0, 12)
    resumed = run(layout.advance({}, 5, 0), 5 % 2, 7)
    assert resumed == straight[5:]


def test_two_ranks_of_micro_batch_4_see_the_batches_of_one_process_with_8(units):
    one = list(islice(iter(streams(units, StreamLayout(2, 1, 1), micro=8, collate=dynamic())), 10))
    ranks = [list(islice(iter(streams(units, StreamLayout(2, 2, 1), rank=r, micro=4, collate=dynamic())), 10))
             for r in range(2)]
    for single, r0, r1 in zip(one, *ranks):
        assert ids_of(single) == ids_of(r0) + ids_of(r1)
        labels = single["labels"]
        width = [r["labels"].shape[1] for r in (r0, r1)]
        assert torch.equal(labels[:4, :width[0]], r0["labels"]) and torch.equal(labels[4:, :width[1]], r1["labels"])
        assert single["num_masked"] == r0["num_masked"] + r1["num_masked"]


def test_validation_set_and_masks_do_not_depend_on_the_layout_or_batch_size(units):
    def collect(layout, batch_size=8):
        out = {}
        for rank in range(layout.world_size):
            for b in ValidationBatches(units, COLUMNS, dynamic(), layout, rank, 7, batch_size, n_examples=100):
                assert b["input_ids"].shape[0] <= batch_size
                for ids, labels in zip(ids_of(b), b["labels"].tolist()):
                    out[ids] = [x for x in labels if x != -100]
        return out

    single, double = collect(StreamLayout(1, 1, 1)), collect(StreamLayout(2, 2, 1), batch_size=4)
    assert len(single) == 100 and single == double
    assert sum(map(len, single.values())) > 100  # masks were drawn (and compared)


def test_a_layout_that_cannot_be_fed_is_refused_up_front(units):
    with pytest.raises(ValueError, match="cannot feed 64 data streams"):
        check_layout(units, StreamLayout(64, 1, 1), 7, 64, 200)
    with pytest.raises(ValueError, match="micro_batch_size 6 must be a multiple of the 4"):
        check_layout(units, StreamLayout(4, 1, 1), 7, 6, 200)
    with pytest.raises(ValueError, match="no full batch of 512"):
        check_layout(units, StreamLayout(2, 1, 1), 7, 1024, 200)
