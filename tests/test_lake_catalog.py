"""The lake (atomic, content-addressed versions) and the DuckDB catalog (views, lineage, safety)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertplat.catalog import Catalog
from bertplat.lake import Lake, check_name, fingerprint, sweep_stale_temporaries


@pytest.fixture()
def lake(settings):
    return Lake(settings.data_dir)


@pytest.fixture()
def catalog(settings, lake):
    return Catalog(settings.catalog_file, lake)


def make_version(lake, kind, name, fp, rows, parents=(), rejects=None):
    with lake.writer(kind, name, fp) as w:
        pq.write_table(pa.table({"x": rows}), w.path("part-00000.parquet"))
        tables = {kind: "part-*.parquet"}
        if rejects is not None:
            pq.write_table(pa.table({"reason": rejects}), w.path("rejects/part-0.parquet"))
            tables["rejects"] = "rejects/*.parquet"
        return w.commit({"config": {}, "counts": {"rows": len(rows)}, "tables": tables,
                         "parents": [p.model_dump(include={"kind", "name", "fingerprint"}) for p in parents]})


@pytest.mark.parametrize("bad", ["", "a b", "x\"; DROP TABLE datasets; --", "../escape", "a/b", "x" * 65, "-lead", "é"])
def test_dataset_names_cannot_inject_or_escape(bad):
    with pytest.raises(ValueError, match="invalid dataset name"):
        check_name(bad)


def test_fingerprint_is_stable_and_sensitive():
    base = fingerprint("corpus", '{"a":1}', ["f1:3:aa", "f2:4:bb"], 1)
    assert base == fingerprint("corpus", '{"a":1}', ["f1:3:aa", "f2:4:bb"], 1) and len(base) == 16
    assert base != fingerprint("corpus", '{"a":2}', ["f1:3:aa", "f2:4:bb"], 1)
    assert base != fingerprint("corpus", '{"a":1}', ["f2:4:bb", "f1:3:aa"], 1), "input order matters"
    assert base != fingerprint("vocab", '{"a":1}', ["f1:3:aa", "f2:4:bb"], 1)
    assert base != fingerprint("corpus", '{"a":1}', ["f1:3:aa", "f2:4:bb"], 2)


def test_a_failed_write_leaves_nothing(lake):
    with pytest.raises(RuntimeError):
        with lake.writer("corpus", "c", "0" * 16) as w:
            pq.write_table(pa.table({"x": [1]}), w.path("part-00000.parquet"))
            raise RuntimeError("boom")
    assert lake.find("corpus", "c", "0" * 16) is None
    assert not (lake.root / "corpus" / "c").exists(), "a failed first version leaves no dataset directory"


def test_commit_is_atomic_and_the_first_commit_wins(lake):
    h1 = make_version(lake, "corpus", "c", "1" * 16, [1, 2])
    h2 = make_version(lake, "corpus", "c", "1" * 16, [9, 9, 9])   # same fingerprint: same content by contract
    assert h1 == h2 and lake.find("corpus", "c", "1" * 16) == h1
    assert pq.read_table(h1.path / "part-00000.parquet").column("x").to_pylist() == [1, 2]
    assert [p.name for p in (lake.root / "corpus" / "c").iterdir()] == ["1" * 16]


def test_stale_temporaries_of_dead_processes_are_swept(lake):
    parent = lake.root / "corpus" / "c"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    stale = parent / f".tmp-{'2' * 16}-{socket.gethostname()}-{dead.stdout.strip()}-abc123"
    alive = parent / f".tmp-{'3' * 16}-{socket.gethostname()}-{os.getpid()}-abc123"
    stale.mkdir(parents=True)
    alive.mkdir()
    sweep_stale_temporaries(parent)
    assert not stale.exists() and alive.exists()


def test_views_point_at_the_newest_version_and_rebuild_matches(lake, catalog):
    old = make_version(lake, "corpus", "c", "a" * 16, [1], rejects=["r1"])
    catalog.register(old)
    new = make_version(lake, "corpus", "c", "b" * 16, [1, 2, 3], parents=[old], rejects=[])
    catalog.register(new)
    other = make_version(lake, "corpus", "d", "c" * 16, [5], rejects=["r2", "r3"])
    catalog.register(other)
    q = "SELECT (SELECT count(*) FROM corpus_c), (SELECT count(*) FROM rejects), (SELECT count(*) FROM rejects_d)"
    assert catalog.fetch(q)[1] == [(3, 2, 2)]
    assert sorted(catalog.lineage("corpus", "c")) == sorted([("corpus", "c", "b" * 16), ("corpus", "c", "a" * 16)])
    # the catalog is an index of the lake: delete it and rebuild
    catalog.path.unlink()
    assert catalog.rebuild() == 3
    assert catalog.fetch(q)[1] == [(3, 2, 2)]
    assert catalog.fetch("SELECT name, json_extract(counts, '$.rows')::INT FROM datasets ORDER BY name, created_at")[1] == [
        ("c", 1), ("c", 3), ("d", 1)]


def test_queries_bind_parameters_and_return_relations(lake, catalog):
    catalog.register(make_version(lake, "corpus", "c", "a" * 16, [1, 2, 3]))
    evil = "1 OR 1=1; DROP VIEW corpus_c"
    assert catalog.fetch("SELECT count(*) FROM corpus_c WHERE x::VARCHAR = ?", [evil])[1] == [(0,)]
    rel = catalog.query("SELECT sum(x) AS s FROM corpus_c WHERE x > $min", {"min": 1})
    assert isinstance(rel, duckdb.DuckDBPyRelation)
    assert rel.fetchall() == [(5,)]
    assert catalog.fetch("SELECT count(*) FROM corpus_c")[1] == [(3,)]


def test_view_paths_are_quoted(tmp_path):
    # A data root with a quote in its name must not break (or inject into) the view definitions.
    root = tmp_path / "it's here"
    lake = Lake(str(root))
    catalog = Catalog(root / "catalog.duckdb", lake)
    catalog.register(make_version(lake, "corpus", "q", "d" * 16, [7]))
    assert catalog.fetch("SELECT x FROM corpus_q")[1] == [(7,)]


def test_manifest_records_what_was_committed(lake):
    handle = make_version(lake, "corpus", "c", "e" * 16, [1])
    manifest = json.loads((handle.path / "_manifest.json").read_text())
    assert manifest["kind"] == "corpus" and manifest["fingerprint"] == "e" * 16 and manifest["created_at"]


# -- regressions (issue numbers from the bug list) ----------------------------------------------------
@pytest.mark.parametrize("bad", ["nl\n", "nl\r\n", "ok\nDROP", "\nlead"])
def test_name_with_a_trailing_newline_is_refused(bad):
    """Issue 18: the pattern's `$` matched before a final newline, so `nl\\n` was accepted."""
    with pytest.raises(ValueError, match="invalid dataset name"):
        check_name(bad)


def test_failed_first_version_leaves_no_dataset_behind(lake):
    """Issue 20: a failed write left lake/corpus/<name>/ and the name was listed as a known dataset."""
    with pytest.raises(RuntimeError):
        with lake.writer("corpus", "rand", "0" * 16) as w:
            pq.write_table(pa.table({"x": [1]}), w.path("part-00000.parquet"))
            raise RuntimeError("gate failed")
    assert lake.names("corpus") == [] and list(lake.all_versions()) == []
    with pytest.raises(LookupError, match="known corpus datasets: none"):
        lake.latest("corpus", "rand")


def test_a_directory_without_complete_versions_is_no_dataset(lake):
    """Issue 20: only names with a committed version are datasets (a run in progress, or debris, is not)."""
    (lake.root / "corpus" / "wip" / f".tmp-{'1' * 16}-host-1-abc").mkdir(parents=True)
    make_version(lake, "corpus", "real", "2" * 16, [1])
    assert lake.names("corpus") == ["real"]


def test_stale_temporary_is_swept_by_a_write_of_any_dataset(lake, catalog):
    """Issue 21: a dead run's temporary directory was only swept when the same name was written again."""
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = lake.root / "corpus" / "crashed" / f".tmp-{'4' * 16}-{socket.gethostname()}-{dead.stdout.strip()}-abc123"
    stale.mkdir(parents=True)
    make_version(lake, "vocab", "other", "5" * 16, [1])
    assert not stale.exists() and not stale.parent.exists()
    stale.mkdir(parents=True)
    catalog.rebuild()                                  # the repair command sweeps too
    assert not stale.parent.exists()
