"""The DuckDB catalog: every dataset version with its lineage, and a view over every dataset.

``catalog.duckdb`` is an index of the lake, never the only copy of anything: ``Catalog.rebuild()``
recreates it from the versions' manifests. Views are named ``<table>_<name>`` (``corpus_enwiki``,
``rejects_enwiki``, ``vocab_base``) and point at the newest registered version; ``rejects`` unions
the rejects of every dataset.

Our own statements are parameterised. View definitions cannot take parameters, so the names and
paths that go into them are validated (names by :func:`bertplat.lake.check_name`, paths by being
inside the lake root) and quoted.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from bertplat.lake import DatasetHandle, Lake, check_kind, check_name, read_manifest

UNION_VIEWS = ("rejects",)  # table kinds that also get one view over all datasets

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    kind VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    created_at TIMESTAMPTZ,
    registered_at TIMESTAMPTZ NOT NULL,
    bertplat_version VARCHAR,
    config JSON,
    counts JSON,
    validation_passed BOOLEAN,
    PRIMARY KEY (kind, name, fingerprint)
);
CREATE TABLE IF NOT EXISTS lineage (
    kind VARCHAR NOT NULL, name VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL,
    parent_kind VARCHAR NOT NULL, parent_name VARCHAR NOT NULL, parent_fingerprint VARCHAR NOT NULL,
    PRIMARY KEY (kind, name, fingerprint, parent_kind, parent_name, parent_fingerprint)
);
CREATE TABLE IF NOT EXISTS dataset_tables (
    kind VARCHAR NOT NULL, name VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL,
    table_kind VARCHAR NOT NULL, pattern VARCHAR NOT NULL,
    PRIMARY KEY (kind, name, fingerprint, table_kind)
);
"""


class CatalogLocked(RuntimeError):
    """Another process holds the catalog open for writing for longer than we are willing to wait."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Catalog:
    """Opens ``catalog.duckdb`` briefly for each operation, so concurrent runs and readers can
    share it; a locked file is retried for ``lock_timeout_s``."""

    def __init__(self, path: Path, lake: Lake, lock_timeout_s: float = 60.0):
        self.path = Path(path)
        self.lake = lake
        self.lock_timeout_s = lock_timeout_s

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if read_only and not self.path.exists():
            read_only = False  # first use: create it
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise CatalogLocked(
                        f"the catalog {self.path} is locked by another process ({exc}). Close the other "
                        "DuckDB session, then run `bertplat catalog rebuild` to index what was written."
                    ) from exc
                time.sleep(0.2)
        try:
            if not read_only:
                con.execute(_SCHEMA)
            yield con
        finally:
            con.close()

    # -- registering -------------------------------------------------------------------------
    def register(self, handle: DatasetHandle) -> None:
        """Index a committed version (from its manifest) and point its views at it."""
        manifest = read_manifest(handle)
        with self.connect() as con:
            _insert_version(con, handle, manifest, registered_at=dt.datetime.now(dt.timezone.utc))
            self._refresh_views(con)

    def rebuild(self) -> int:
        """Re-index every complete version in the lake and recreate all views; returns the count."""
        count = 0
        with self.connect() as con:
            for table in ("datasets", "lineage", "dataset_tables"):
                con.execute(f"DELETE FROM {table}")
            for handle in self.lake.all_versions():
                manifest = read_manifest(handle)
                # Rebuilt from scratch, "newest" means most recently created.
                _insert_version(con, handle, manifest, registered_at=manifest.get("created_at"))
                count += 1
            self._refresh_views(con)
        return count

    def _refresh_views(self, con: duckdb.DuckDBPyConnection) -> None:
        rows = con.execute(
            """
            SELECT d.kind, d.name, d.fingerprint, t.table_kind, t.pattern
            FROM datasets d JOIN dataset_tables t USING (kind, name, fingerprint)
            QUALIFY row_number() OVER (PARTITION BY d.kind, d.name, t.table_kind
                                       ORDER BY d.registered_at DESC) = 1
            ORDER BY d.kind, d.name, t.table_kind
            """
        ).fetchall()
        existing = {r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'").fetchall()}
        union_parts: dict[str, list[str]] = {}
        wanted = set()
        for kind, name, fp, table_kind, glob in rows:
            source = self._parquet_source(kind, name, fp, glob)
            view = f"{table_kind}_{name}"
            wanted.add(view)
            con.execute(f"CREATE OR REPLACE VIEW {quote_ident(view)} AS SELECT * FROM {source}")
            if table_kind in UNION_VIEWS:
                union_parts.setdefault(table_kind, []).append(
                    f"SELECT {quote_literal(kind)} AS dataset_kind, {quote_literal(name)} AS dataset, "
                    f"{quote_literal(fp)} AS fingerprint, * FROM {source}"
                )
        for table_kind, parts in union_parts.items():
            wanted.add(table_kind)
            con.execute(f"CREATE OR REPLACE VIEW {quote_ident(table_kind)} AS "
                        + " UNION ALL BY NAME ".join(parts))
        for stale in existing - wanted:
            con.execute(f"DROP VIEW IF EXISTS {quote_ident(stale)}")

    def _parquet_source(self, kind: str, name: str, fp: str, glob: str) -> str:
        root = self.lake.version_dir(kind, name, fp)
        target = (root / glob).resolve() if "*" not in glob else root / glob
        if root not in (target, *target.parents):
            raise ValueError(f"table glob {glob!r} of {kind}/{name} escapes its version directory")
        hive = "true" if "=" in glob else "false"
        return (f"read_parquet({quote_literal(str(target))}, union_by_name = true, "
                f"hive_partitioning = {hive})")

    # -- querying ----------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the catalog; the connection stays open for the relation's life.

        Use placeholders (``?`` or ``$name``) and ``params`` for values, never string formatting.
        """
        if not self.path.exists():
            with self.connect():
                pass  # create the empty catalog
        con = duckdb.connect(str(self.path), read_only=True)
        return con.sql(sql, params=params)

    def fetch(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
              ) -> tuple[list[str], list[tuple]]:
        """Run a query and return (column names, rows), closing the connection."""
        with self.connect(read_only=True) as con:
            cursor = con.execute(sql, params or [])
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()

    def versions(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT kind, name, fingerprint, created_at, counts, path FROM datasets "
               + ("WHERE kind = ? " if kind else "") + "ORDER BY kind, name, created_at")
        columns, rows = self.fetch(sql, [check_kind(kind)] if kind else None)
        return [dict(zip(columns, row)) for row in rows]

    def lineage(self, kind: str, name: str) -> list[tuple]:
        """Every ancestor (kind, name, fingerprint) of the newest version of a dataset."""
        handle = self.lake.latest(check_kind(kind), check_name(name))
        _, rows = self.fetch(
            """
            WITH RECURSIVE up(kind, name, fingerprint) AS (
                SELECT ?, ?, ?
                UNION
                SELECT l.parent_kind, l.parent_name, l.parent_fingerprint
                FROM lineage l JOIN up USING (kind, name, fingerprint)
            ) SELECT * FROM up
            """,
            [kind, name, handle.fingerprint],
        )
        return rows


def _insert_version(con: duckdb.DuckDBPyConnection, handle: DatasetHandle, manifest: dict[str, Any],
                    registered_at: Any) -> None:
    key = [handle.kind, handle.name, handle.fingerprint]
    con.execute("DELETE FROM datasets WHERE kind = ? AND name = ? AND fingerprint = ?", key)
    con.execute("DELETE FROM dataset_tables WHERE kind = ? AND name = ? AND fingerprint = ?", key)
    con.execute("DELETE FROM lineage WHERE kind = ? AND name = ? AND fingerprint = ?", key)
    validation = manifest.get("validation") or {}
    passed = all(c.get("passed", False) for c in validation.get("checks", [])) if validation else None
    con.execute(
        "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [*key, str(handle.path), manifest.get("created_at"), registered_at, manifest.get("bertplat_version"),
         json.dumps(manifest.get("config")), json.dumps(manifest.get("counts")), passed],
    )
    for table_kind, glob in (manifest.get("tables") or {}).items():
        con.execute("INSERT INTO dataset_tables VALUES (?, ?, ?, ?, ?)", [*key, table_kind, glob])
    for parent in manifest.get("parents") or []:
        con.execute("INSERT OR IGNORE INTO lineage VALUES (?, ?, ?, ?, ?, ?)",
                    [*key, parent["kind"], parent["name"], parent["fingerprint"]])
