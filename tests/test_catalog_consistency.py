"""Issues 12 and 13: the catalog stays an exact index of the lake.

Registration is one transaction and a stage that fails for lack of space leaves the lake and the
catalog as they were (on a real, tiny tmpfs); a reader holding the catalog open (a real second
process) defers registration instead of failing the stage; `catalog check` finds disagreements."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bertplat.catalog import Catalog
from bertplat.cli import app
from bertplat.lake import Lake

runner = CliRunner()


def write_version(lake, name, fp, rows, catalog=None, tables=None):
    with lake.writer("corpus", name, fp) as w:
        pq.write_table(pa.table({"x": rows}), w.path("part-00000.parquet"))
        pq.write_table(pa.table({"reason": ["r"] * len(rows)}), w.path("rejects/part-0.parquet"))
        return w.commit({"config": {}, "counts": {"rows": len(rows)}, "parents": [],
                         "tables": tables or {"corpus": "part-*.parquet", "rejects": "rejects/*.parquet"}},
                        catalog=catalog)


def views(catalog):
    return {r[0] for r in catalog.fetch("SELECT view_name FROM duckdb_views() WHERE NOT internal")[1]}


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 2 MiB tmpfs (needs root and mount rights; skips otherwise), unmounted afterwards."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the filesystem of ``directory`` until about ``leave`` bytes are free."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        st = os.statvfs(directory)
        todo = st.f_bavail * st.f_frsize - leave
        while todo > 0:
            todo -= os.write(fd, b"\0" * min(todo, 1 << 20))
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


# -- issue 12: one transaction, a full disk ----------------------------------------------------------
def test_registration_is_one_transaction(tmp_path):
    """A version whose views cannot be made must leave no datasets row (it used to leave one without views)."""
    lake = Lake(str(tmp_path / "data"))
    catalog = Catalog(lake.data_dir / "catalog.duckdb", lake)
    write_version(lake, "good", "a" * 16, [1], catalog=catalog)
    bad = write_version(lake, "bad", "b" * 16, [1], tables={"corpus": "../../../../etc/passwd"})
    with pytest.raises(ValueError, match="escapes its version directory"):
        catalog.register(bad)
    assert catalog.fetch("SELECT name FROM datasets")[1] == [("good",)]
    assert catalog.fetch("SELECT DISTINCT name FROM dataset_tables")[1] == [("good",)]
    assert views(catalog) == {"corpus_good", "rejects_good", "rejects"}


def test_full_disk_registration_leaves_lake_and_catalog_as_they_were(tmp_path, tiny_disk):
    """The catalog's disk fills up between the lake commit and the catalog commit: the rename is undone."""
    lake = Lake(str(tmp_path / "data"))
    catalog = Catalog(tiny_disk / "catalog.duckdb", lake)
    write_version(lake, "first", "a" * 16, [1, 2], catalog=catalog)
    filler = fill(tiny_disk)
    with pytest.raises(Exception, match="No space left on device"):
        write_version(lake, "second", "b" * 16, list(range(1000)), catalog=catalog)
    filler.unlink()
    assert lake.names("corpus") == ["first"] and not (lake.root / "corpus" / "second").exists()
    assert catalog.fetch("SELECT name FROM datasets")[1] == [("first",)]
    assert views(catalog) == {"corpus_first", "rejects_first", "rejects"}
    assert catalog.check() == []


@pytest.fixture()
def random_corpus(tmp_path):
    """About 3 MB of incompressible text: more than the tiny disk holds."""
    import random
    import string

    rng = random.Random(0)
    path = tmp_path / "rand.jsonl"
    with open(path, "w") as f:
        for _ in range(3000):
            words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(150)]
            f.write(json.dumps({"text": ". ".join(" ".join(words[i:i + 15]) for i in range(0, 150, 15)) + "."}) + "\n")
    return path


@pytest.mark.slow
def test_full_disk_ingest_is_one_line_that_names_the_path(tmp_path, tiny_disk, random_corpus, monkeypatch):
    data = tiny_disk / "data"
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(data))
    result = runner.invoke(app, ["ingest", str(random_corpus), "--name", "rand", "--workers", "1"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left" in errors[0] and str(tiny_disk) in errors[0], result.output
    assert "Traceback" not in result.output and "Errno" not in result.output
    lake = Lake(str(data))
    assert lake.names("corpus") == [] and list((lake.root / "corpus").iterdir()) == []
    assert Catalog(data / "catalog.duckdb", lake).check() == []
    debug = runner.invoke(app, ["--debug", "ingest", str(random_corpus), "--name", "rand", "--workers", "1"])
    assert debug.exception is not None and "No space left on device" in str(debug.exception)


def test_catalog_check_finds_disagreement_and_says_to_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(tmp_path / "data"))
    lake = Lake(str(tmp_path / "data"))
    catalog = Catalog(lake.data_dir / "catalog.duckdb", lake)
    write_version(lake, "indexed", "a" * 16, [1], catalog=catalog)
    ok = runner.invoke(app, ["catalog", "check"])
    assert ok.exit_code == 0 and "matches the lake" in ok.output, ok.output

    write_version(lake, "unindexed", "b" * 16, [1])              # committed, never registered
    with catalog.connect() as con:
        con.execute('DROP VIEW "rejects_indexed"')
    bad = runner.invoke(app, ["catalog", "check"])
    assert bad.exit_code == 1, bad.output
    assert f"corpus/unindexed@{'b' * 16} is in the lake but not in the catalog" in bad.output
    assert "view rejects_indexed is missing" in bad.output and "run `bertplat catalog rebuild`" in bad.output
    assert runner.invoke(app, ["catalog", "rebuild"]).exit_code == 0
    assert runner.invoke(app, ["catalog", "check"]).exit_code == 0


# -- issue 13: a reader must not fail a writer ------------------------------------------------------
READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SELECT count(*) FROM datasets").fetchall()
print("ready", flush=True)
sys.stdin.read()   # hold the catalog open until the test closes our stdin
"""


class Reader:
    """A real second process with the catalog open read-only (as a long `bertplat sql` has)."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_a_reader_defers_registration_instead_of_failing_it(tmp_path):
    lake = Lake(str(tmp_path / "data"))
    catalog = Catalog(lake.data_dir / "catalog.duckdb", lake, register_wait_s=0.5)
    write_version(lake, "before", "a" * 16, [1], catalog=catalog)
    reader = Reader(catalog.path)
    try:
        writer_result = {}
        with lake.writer("corpus", "during", "b" * 16) as w:
            pq.write_table(pa.table({"x": [1, 2]}), w.path("part-00000.parquet"))
            handle = w.commit({"config": {}, "counts": {}, "parents": [], "tables": {"corpus": "part-*.parquet"}},
                              catalog=catalog)
            writer_result["status"] = w.catalog_status
        assert writer_result["status"] == "deferred" and catalog.is_pending(handle)
        assert lake.find("corpus", "during", "b" * 16) is not None     # committed in the lake all the same
        assert [h.ref() for h in catalog.pending()] == [handle.ref()]
    finally:
        reader.close()
    # the next registration indexes what is pending, in the same transaction
    assert write_version(lake, "after", "c" * 16, [1], catalog=catalog)
    assert catalog.pending() == [] and catalog.check() == []
    assert catalog.fetch("SELECT count(*) FROM corpus_during")[1] == [(2,)]


def test_a_reader_does_not_fail_an_ingest(tmp_path):
    from bertplat.ingest import IngestConfig, run_ingest

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"text": f"Document {i}. It has two sentences."}) + "\n" for i in range(20)))
    lake = Lake(str(tmp_path / "data"))
    catalog = Catalog(lake.data_dir / "catalog.duckdb", lake, register_wait_s=0.5)
    with catalog.connect():
        pass
    reader = Reader(catalog.path)
    try:
        result = run_ingest([str(src)], "busy", IngestConfig.build({}, {"workers": 1}), lake, catalog)
    finally:
        reader.close()
    assert lake.find("corpus", "busy", result.dataset.fingerprint) is not None
    assert catalog.is_pending(result.dataset)
    assert catalog.rebuild() == 1 and catalog.pending() == []
    assert catalog.fetch("SELECT count(*) FROM corpus_busy")[1] == [(20,)]


@pytest.mark.slow
def test_a_reader_defers_a_cli_ingest_and_the_cli_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(tmp_path / "data"))
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"text": f"Document {i}. It has two sentences."}) + "\n" for i in range(20)))
    assert runner.invoke(app, ["sql", "SELECT 1"]).exit_code == 0            # creates the catalog
    reader = Reader(tmp_path / "data" / "catalog.duckdb")
    try:
        result = runner.invoke(app, ["ingest", str(src), "--name", "busy", "--workers", "1"])
    finally:
        reader.close()
    assert result.exit_code == 0, result.output
    assert "deferred" in result.output and "bertplat catalog rebuild" in result.output
    listed = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM datasets", "-o", "json"])
    assert "not indexed yet" in listed.output
    assert runner.invoke(app, ["catalog", "rebuild"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["sql", "SELECT count(*) AS n FROM corpus_busy", "-o", "json"]).output) == [
        {"n": 20}]
