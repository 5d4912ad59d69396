"""The ingest stage as a whole: dedup, fingerprints, re-runs, parallelism, the gate, and crashes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bertplat.ingest.worker as worker
from bertplat.catalog import Catalog
from bertplat.ingest import IngestConfig, run_ingest
from bertplat.ingest.gate import validate_corpus
from bertplat.lake import Lake, read_manifest
from bertplat.validation import GateError
from tests.ingest.conftest import write

REPO = Path(__file__).resolve().parents[2]


def texts(result) -> list[str]:
    parts = sorted(result.dataset.path.glob("part-*.parquet"))
    return [t for p in parts for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()]


def synthetic_corpus(folder: Path, files: int = 6, docs: int = 300) -> Path:
    for f in range(files):
        lines = [json.dumps({"text": f"File {f} document {d}. It says {d * 7 % 13} things. "
                                     f"Then it ends with number {f * 1000 + d}."}) for d in range(docs)]
        write(folder / f"part{f:02d}.jsonl", "\n".join(lines) + "\n")
    return folder


# -- dedup -----------------------------------------------------------------------------------
def test_duplicates_across_sources_keep_the_first_in_input_order(tmp_path, ingest, catalog):
    write(tmp_path / "a" / "1.jsonl", '{"text": "Shared text."}\n{"text": "Only in a."}\n')
    write(tmp_path / "b" / "1.jsonl", '{"text": "Only in b."}\n{"text": "Shared  text."}\n{"text": "Shared text."}\n')
    result = ingest([tmp_path / "a", tmp_path / "b"])
    assert result.counts["documents_before_dedup"] == 5 and result.counts["duplicates"] == 2
    _, rows = catalog.fetch("SELECT source_file, source_record FROM corpus_t WHERE text = 'Shared text.'")
    assert rows == [("a/1.jsonl", 1)]
    _, dups = catalog.fetch("SELECT source_file, record, detail FROM rejects_t WHERE reason = 'duplicate' ORDER BY record")
    assert dups == [("b/1.jsonl", 2, "duplicate of a/1.jsonl record 1"), ("b/1.jsonl", 3, "duplicate of a/1.jsonl record 1")]


def test_no_dedup_keeps_duplicates_with_distinct_ids_and_passes_the_gate(tmp_path, ingest, catalog):
    """Issue 10 item 16: --no-dedup failed the gate ("unique doc ids across shards: observed 250,
    expected 251") whenever there was a duplicate. Copies now get ids of their own, by input order."""
    from bertplat.ingest.stage import copy_id
    from bertplat.ingest.worker import doc_ids

    write(tmp_path / "d" / "a.jsonl", '{"text": "Same."}\n{"text": "Other."}\n{"text": "Same."}\n')
    write(tmp_path / "d" / "b.jsonl", '{"text": "Same."}\n')   # a third copy, in another file
    result = ingest([tmp_path / "d"], dedup=False, task_bytes=1 << 20)
    assert result.report.passed
    assert result.counts["documents"] == 4 and result.counts["duplicates"] == 0
    assert result.stats["duplicate_copies_kept"] == 2
    _, rows = catalog.fetch("SELECT source_file, source_record, doc_id FROM corpus_t ORDER BY source_file, source_record")
    same = doc_ids(pa.array(["Same."]))[0]
    assert [r[2] for r in rows] == [same, doc_ids(pa.array(["Other."]))[0], copy_id(same, 2), copy_id(same, 3)]
    assert len({r[2] for r in rows}) == 4
    _, rejects = catalog.fetch("SELECT count(*) FROM rejects_t")
    assert rejects == [(0,)]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(["Alpha beta.", "alpha beta.", "Alpha  beta.", " Alpha beta. ", "Caf\u00e9 au lait.",
                                 "Cafe\u0301 au lait.", "Gamma.\n\nDelta.", "Gamma.\n\n\n\nDelta."]),
                min_size=1, max_size=12))
def test_dedup_invariants(tmp_path_factory, docs):
    """Unique ids; one document per distinct normalised text; the kept copy is the first."""
    tmp = tmp_path_factory.mktemp("dedup")
    f = write(tmp / "d.jsonl", "".join(json.dumps({"text": d}) + "\n" for d in docs))
    lake = Lake(str(tmp / "data"))
    result = run_ingest([str(f)], "d", IngestConfig(workers=1), lake)
    normalised = [" ".join(unicodedata.normalize("NFC", d).split(" ")).strip().replace("  ", " ") for d in docs]
    normalised = [n.replace("\n\n\n\n", "\n\n") for n in normalised]
    expected_first = list(dict.fromkeys(normalised))
    assert texts(result) == expected_first
    assert result.counts["duplicates"] == len(docs) - len(expected_first)


# -- fingerprints and re-runs ----------------------------------------------------------------
def test_fingerprint_depends_on_content_and_config_only(tmp_path):
    corpus = synthetic_corpus(tmp_path / "corpus", files=2, docs=20)
    moved = tmp_path / "elsewhere" / "corpus"
    shutil.copytree(corpus, moved)

    def fp(source, data, **cfg):
        return run_ingest([str(source)], "f", IngestConfig(**cfg), Lake(str(tmp_path / data))).dataset.fingerprint

    base = fp(corpus, "d1", workers=1)
    assert fp(moved, "d2", workers=2) == base, "location and worker count do not change the fingerprint"
    assert fp(corpus, "d3", workers=1, min_chars=5) != base
    write(moved / "part00.jsonl", '{"text": "changed"}\n')
    assert fp(moved, "d4", workers=1) != base


def test_rerun_is_a_no_op(tmp_path, ingest):
    corpus = synthetic_corpus(tmp_path / "c", files=2, docs=10)
    first = ingest([corpus])
    stamp = (first.dataset.path / "_manifest.json").stat().st_mtime_ns
    again = ingest([corpus])
    assert again.reused and not first.reused
    assert again.dataset == first.dataset and again.counts == first.counts
    assert (first.dataset.path / "_manifest.json").stat().st_mtime_ns == stamp


def test_worker_count_does_not_change_the_output(tmp_path):
    corpus = synthetic_corpus(tmp_path / "c", files=6, docs=200)
    results = []
    for workers in (1, 2):
        lake = Lake(str(tmp_path / f"data{workers}"))
        results.append(run_ingest([str(corpus)], "w", IngestConfig(workers=workers, task_bytes=1 << 20,
                                                                      batch_bytes=64 << 10), lake))
    one, two = results
    assert one.dataset.fingerprint == two.dataset.fingerprint and one.counts == two.counts
    files1 = sorted(p.name for p in one.dataset.path.glob("part-*.parquet"))
    assert files1 == sorted(p.name for p in two.dataset.path.glob("part-*.parquet"))
    for name in files1:
        assert pq.read_table(one.dataset.path / name).equals(pq.read_table(two.dataset.path / name))


def test_manifest_and_catalog_record_the_version(tmp_path, ingest, catalog):
    corpus = synthetic_corpus(tmp_path / "c", files=2, docs=10)
    result = ingest([corpus], name="m")
    manifest = read_manifest(result.dataset)
    assert [i["name"] for i in manifest["inputs"]] == ["c/part00.jsonl", "c/part01.jsonl"]
    assert all(len(i["sha256"]) == 64 and i["bytes"] > 0 for i in manifest["inputs"])
    assert manifest["counts"]["documents"] == 20 and manifest["config"]["format"] == "auto"
    assert manifest["validation"]["checks"] and manifest["stats"]["length_histogram"]
    assert (result.dataset.path / "_report" / "length_histogram.png").stat().st_size > 1000
    _, rows = catalog.fetch("SELECT kind, name, fingerprint, validation_passed FROM datasets")
    assert rows == [("corpus", "m", result.dataset.fingerprint, True)]


# -- the gate --------------------------------------------------------------------------------
def test_gate_fails_on_a_corrupt_shard_and_names_it(tmp_path, ingest):
    result = ingest([synthetic_corpus(tmp_path / "c", files=3, docs=50)], task_bytes=1 << 20)
    copy = tmp_path / "copy"
    shutil.copytree(result.dataset.path, copy)
    parts = sorted(p.name for p in copy.glob("part-*.parquet"))
    victim = copy / parts[-1]
    table = pq.read_table(victim)
    wrong = pa.array(table.column("n_sentences").to_numpy() + 1, pa.int32())
    bad = table.set_column(table.schema.get_field_index("n_sentences"), "n_sentences", wrong)
    pq.write_table(bad, victim)
    counts = dict(result.counts)
    report = validate_corpus(copy, parts, counts, IngestConfig(), dataset="corpus/t@copy")
    assert not report.passed
    failures = report.failures
    assert [f.where for f in failures] == [f"{parts[-1]} row group 0"]
    assert "n_sentences_is_list_length" in failures[0].name


def test_gate_fails_on_duplicate_ids_across_shards(tmp_path, ingest):
    result = ingest([synthetic_corpus(tmp_path / "c", files=2, docs=20)])
    copy = tmp_path / "copy"
    shutil.copytree(result.dataset.path, copy)
    (part,) = sorted(p.name for p in copy.glob("part-*.parquet"))
    shutil.copy(copy / part, copy / "part-99999-000.parquet")
    counts = dict(result.counts)
    report = validate_corpus(copy, [part, "part-99999-000.parquet"], counts, IngestConfig(), dataset="x")
    assert {f.name for f in report.failures} == {"unique doc ids across shards", "row count matches counts"}


def test_a_failing_gate_leaves_nothing_in_the_lake(tmp_path, ingest, lake, monkeypatch):
    real = worker.process_batch

    def corrupt(batch, cfg, unwrap):
        table, rejects = real(batch, cfg, unwrap)
        return table.set_column(1, table.schema.field(1), pa.array([""] * table.num_rows)), rejects

    monkeypatch.setattr(worker, "process_batch", corrupt)
    with pytest.raises(GateError, match="str_length"):
        ingest([synthetic_corpus(tmp_path / "c", files=1, docs=5)], name="broken")
    assert lake.versions("corpus", "broken") == []
    left = lake.root / "corpus" / "broken"   # removed, or empty: no temporary directory left behind
    assert not left.exists() or not any(left.iterdir())


# -- crashes ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_mid_run_leaves_nothing_complete_and_rerun_matches(tmp_path):
    corpus = synthetic_corpus(tmp_path / "c", files=40, docs=3000)
    config = write(tmp_path / "cfg.yaml", "task_bytes: 1048576\nbatch_bytes: 262144\nworkers: 2\n")
    env = {**os.environ, "BERTPLAT_DATA_DIR": str(tmp_path / "killed")}
    cmd = [sys.executable, "-m", "bertplat.cli", "ingest", str(corpus), "--name", "k", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lake_dir = tmp_path / "killed" / "lake" / "corpus" / "k"
    deadline = time.monotonic() + 120
    while not list(lake_dir.glob(".tmp-*/part-*.parquet")):
        assert proc.poll() is None, "the run finished before it could be killed; make the input larger"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = Lake(str(tmp_path / "killed"))
    assert killed.versions("corpus", "k") == [], "a killed run must not leave a complete-looking version"
    assert [p.name for p in lake_dir.iterdir() if not p.name.startswith(".tmp-")] == []

    cfg = IngestConfig.from_yaml(config)
    rerun = run_ingest([str(corpus)], "k", cfg, killed, Catalog(tmp_path / "killed" / "catalog.duckdb", killed))
    clean = run_ingest([str(corpus)], "k", cfg, Lake(str(tmp_path / "clean")))
    assert not rerun.reused
    assert rerun.dataset.fingerprint == clean.dataset.fingerprint
    assert rerun.counts == clean.counts
    assert not list(lake_dir.glob(".tmp-*")), "the dead run's temporary directory was swept"


def test_a_corpus_named_like_a_task_dataset_is_refused(tmp_path):
    """Corpus and task datasets of one name would both claim the view rejects_<name>."""
    from bertplat.ingest import IngestConfig, run_ingest
    from bertplat.lake import Lake

    lake = Lake(str(tmp_path / "data"))
    (lake.root / "tasks" / "clash" / "0123456789abcdef").mkdir(parents=True)
    (lake.root / "tasks" / "clash" / "0123456789abcdef" / "_manifest.json").write_text("{}")
    src = tmp_path / "a.txt"
    src.write_text("Some text. More text.\n")
    with pytest.raises(ValueError, match="already the name of a task dataset"):
        run_ingest([str(src)], "clash", IngestConfig(), lake)
