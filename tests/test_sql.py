"""Issue 10: `bertplat sql` (and `Catalog.query`/`fetch` by default) reads the lake and the catalog and
nothing else, writes nothing, and runs exactly one statement; a refused statement says why."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bertplat.catalog import Catalog, QueryRefused
from bertplat.cli import app
from bertplat.lake import Lake

runner = CliRunner()


@pytest.fixture()
def lake(tmp_path, monkeypatch):
    """A data root with one committed, registered corpus `c` (5 rows), used by the CLI and the library."""
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(tmp_path / "data"))
    lake = Lake(str(tmp_path / "data"))
    catalog = Catalog(lake.data_dir / "catalog.duckdb", lake)
    with lake.writer("corpus", "c", "a" * 16) as w:
        pq.write_table(pa.table({"x": [1, 2, 3, 4, 5]}), w.path("part-00000-000.parquet"))
        handle = w.commit({"config": {}, "counts": {"rows": 5}, "tables": {"corpus": "part-*.parquet"}, "parents": []})
    catalog.register(handle)
    return lake


@pytest.fixture()
def catalog(lake):
    return Catalog(lake.data_dir / "catalog.duckdb", lake)


def sql(*args):
    return runner.invoke(app, ["sql", *args])


def refused(result, because: str):
    assert result.exit_code == 1, result.output
    assert "query refused" in result.output and because in result.output, result.output
    assert "Traceback" not in result.output


def test_sql_copy_to_a_file_is_refused(lake, tmp_path):
    out = tmp_path / "out.csv"
    refused(sql(f"COPY (SELECT * FROM datasets) TO '{out}'"), "COPY statements are not run")
    assert not out.exists()


def test_sql_runs_exactly_one_statement(lake, tmp_path):
    out = tmp_path / "x.parquet"
    refused(sql(f"SELECT 1; COPY (SELECT 42 AS x) TO '{out}' (FORMAT parquet)"), "2 statements")
    assert not out.exists()


def test_sql_copy_over_a_committed_shard_is_refused(lake, catalog):
    version = lake.root / "corpus" / "c" / ("a" * 16)
    shard, manifest = version / "part-00000-000.parquet", version / "_manifest.json"
    before = (shard.read_bytes(), manifest.read_bytes())
    refused(sql(f"COPY (SELECT 42 AS x) TO '{shard}' (FORMAT parquet)"), "read-only")
    refused(sql(f"COPY (SELECT 1 AS x) TO '{manifest}' (FORMAT json)"), "read-only")
    assert (shard.read_bytes(), manifest.read_bytes()) == before
    assert catalog.fetch("SELECT count(*) FROM corpus_c")[1] == [(5,)]


def test_sql_cannot_read_files_outside_the_lake(lake):
    result = sql("SELECT * FROM read_text('/etc/passwd')")
    refused(result, "/etc/passwd")
    assert "outside the lake" in result.output
    refused(sql("SELECT * FROM glob('/etc/*')"), "outside the lake")


@pytest.mark.parametrize("statement", [
    "SET enable_external_access = true", "ATTACH '{root}/other.duckdb' AS o", "CREATE TABLE t AS SELECT 1",
    "INSTALL httpfs", "EXPORT DATABASE '{root}/dump'", "PRAGMA profile_output = '{root}/p.txt'",
])
def test_sql_refuses_every_statement_but_select(lake, statement):
    root = lake.root
    refused(sql(statement.format(root=root)), "not run here")
    assert sorted(p.name for p in root.iterdir()) == ["corpus"]


def test_sql_still_reads_the_views_tables_and_lake_files(lake):
    result = sql("SELECT count(*) AS n, sum(x) AS s FROM corpus_c", "-o", "json")
    assert result.exit_code == 0 and json.loads(result.output) == [{"n": 5, "s": 15}], result.output
    shard = lake.root / "corpus" / "c" / ("a" * 16) / "part-00000-000.parquet"
    result = sql("SELECT count(*) AS n FROM read_parquet(?)", "-p", str(shard), "-o", "json")
    assert result.exit_code == 0 and json.loads(result.output) == [{"n": 5}], result.output
    result = sql("WITH d AS (SELECT name FROM datasets) FROM d", "-o", "json")
    assert json.loads(result.output) == [{"name": "c"}]


def test_python_query_helper_is_confined_unless_asked(catalog, tmp_path):
    with pytest.raises(QueryRefused, match="2 statements"):
        catalog.fetch("SELECT 1; SELECT 2")
    with pytest.raises(QueryRefused, match="COPY"):
        catalog.query(f"COPY (SELECT 1) TO '{tmp_path / 'q.csv'}'")
    import duckdb

    with pytest.raises(duckdb.PermissionException):
        catalog.fetch("SELECT * FROM read_text('/etc/hostname')")
    rel = catalog.query("SELECT sum(x) FROM corpus_c")
    assert rel.fetchall() == [(15,)]
    # a confined relation left open does not leak its settings into an unrestricted call, or back
    assert catalog.fetch("SELECT count(*) FROM read_text('/etc/hostname')", unrestricted=True)[1] == [(1,)]
    assert catalog.fetch("SELECT sum(x) FROM corpus_c")[1] == [(15,)]
    out = tmp_path / "asked.csv"
    catalog.fetch(f"COPY (SELECT 1 AS x) TO '{out}'", unrestricted=True)
    assert out.read_text().splitlines() == ["x", "1"]
