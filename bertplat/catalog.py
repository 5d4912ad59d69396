"""The DuckDB catalog: every dataset version with its lineage, and a view over every dataset.

``catalog.duckdb`` is an index of the lake, never the only copy of anything: ``Catalog.rebuild()``
recreates it from the versions' manifests, and ``Catalog.check()`` says whether the two agree. Views
are named ``<table>_<name>`` (``corpus_enwiki``, ``rejects_enwiki``, ``vocab_base``) and point at the
newest registered version; ``rejects`` unions the rejects of every dataset.

Registering a version is one transaction: its ``datasets`` row, tables, lineage and views appear
together or not at all. DuckDB lets one process write a file only while nobody else has it open,
so a reader (a long ``bertplat sql``) locks writers out; registration then waits a bounded time and,
if the catalog is still busy, leaves a *pending* marker (``<catalog>.pending/``) and returns
``"deferred"``. The manifest in the lake is the truth: the next registration or ``rebuild`` indexes
whatever is pending.

Queries are read-only and confined by default (:meth:`Catalog.query`, :meth:`Catalog.fetch`): one
``SELECT`` per call, on a read-only connection that may read the lake and the catalog and nothing
else, so a query cannot write a file (``COPY ... TO``), run a second statement, or read
``/etc/passwd``. Code that needs more asks with ``unrestricted=True``.

Our own statements are parameterised. View definitions cannot take parameters, so the names and
paths that go into them are validated (names by :func:`bertplat.lake.check_name`, paths by being
inside the lake root) and quoted.

On an object-store lake (``s3://``) the views read the bucket through pyarrow datasets registered with
each DuckDB connection the catalog opens (DuckDB's ``httpfs`` extension is not installed: it ships as a
package only for DuckDB versions older than the one bertplat runs on). The catalog file itself stays on
local disk, as an index of the bucket that any machine can rebuild.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import duckdb

from bertplat.lake import DatasetHandle, Lake, check_kind, check_name, write_json_atomic
from bertplat.registry.schema import REGISTRY_SCHEMA, registry_views

log = logging.getLogger(__name__)

UNION_VIEWS = ("rejects",)  # table kinds that also get one view over all datasets
Registration = Literal["indexed", "deferred"]

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

_LATEST_TABLES = """
SELECT d.kind, d.name, d.fingerprint, t.table_kind, t.pattern
FROM datasets d JOIN dataset_tables t USING (kind, name, fingerprint)
QUALIFY row_number() OVER (PARTITION BY d.kind, d.name, t.table_kind ORDER BY d.registered_at DESC) = 1
ORDER BY d.kind, d.name, t.table_kind
"""

MODEL_KIND = "model"  # registered models: in the registry tables, listed with the datasets
_MODEL_ROWS = """
SELECT 'model' AS kind, v.name, v.version_id AS fingerprint, v.registered_at AS created_at,
       to_json(struct_pack(version := 'v' || v.number, files := (SELECT count(*) FROM registry_files f
                WHERE f.name = v.name AND f.version_id = v.version_id), origin := v.origin)) AS counts, v.path
FROM registry_versions v
"""

_LOCKED = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)
_USER_VIEWS = "SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary AND schema_name = 'main'"


class CatalogLocked(RuntimeError):
    """Another process holds the catalog open for writing for longer than we are willing to wait."""


class QueryRefused(ValueError):
    """A query that the confined query path does not run: not one SELECT, or it reaches outside the lake."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_name(name: str) -> str:
    """A view's name as a query writes it: bare when DuckDB takes it so, quoted otherwise (a dataset named
    ``grid-lr0p005`` gives the view ``"predictions_grid-lr0p005"``)."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else quote_ident(name)


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Catalog:
    """Opens ``catalog.duckdb`` briefly for each operation, so concurrent runs and readers can
    share it. A locked file is retried for ``lock_timeout_s`` by explicit operations (``rebuild``,
    queries) and for ``register_wait_s`` by a stage's registration, which then defers."""

    def __init__(self, path: Path, lake: Lake, lock_timeout_s: float = 60.0, register_wait_s: float = 10.0):
        self.path = Path(path)
        self.lake = lake
        self.lock_timeout_s = lock_timeout_s
        self.register_wait_s = register_wait_s

    @property
    def pending_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".pending")

    @contextmanager
    def connect(self, read_only: bool = False, timeout_s: float | None = None, confined: bool = False
                ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the catalog, closed at the end of the block. ``confined`` (read-only
        implied): see :meth:`_open_confined`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if (read_only or confined) and not self.path.exists():
            with self.connect():
                pass  # first use: create it
        con = self._open(read_only, confined, timeout_s)
        try:
            if not (read_only or confined):
                con.execute(_SCHEMA)
                con.execute(REGISTRY_SCHEMA)
            yield con
        finally:
            con.close()

    def _open(self, read_only: bool, confined: bool, timeout_s: float | None) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + (self.lock_timeout_s if timeout_s is None else timeout_s)
        while True:
            try:
                if confined:
                    return self._open_confined()
                con = duckdb.connect(str(self.path), read_only=read_only)
                try:
                    self._register_remote_tables(con)
                except BaseException:
                    con.close()
                    raise
                return con
            except duckdb.IOException as exc:
                if not _LOCKED.search(str(exc)) or time.monotonic() > deadline:
                    raise CatalogLocked(
                        f"the catalog {self.path} is locked by another process ({exc}). Close the other "
                        "DuckDB session, then run `bertplat catalog rebuild` to index what was written."
                    ) from exc
                time.sleep(0.2)

    def _open_confined(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory database with the catalog attached read-only as its default, that may read
        the lake (the views' Parquet files) and the catalog file and nothing else, and has that locked
        in so a query cannot ``SET`` it back. (An in-memory database of its own, because DuckDB shares
        one instance, and so its settings, among the connections of a process to the same file.)"""
        con = duckdb.connect(":memory:")
        try:
            con.execute("ATTACH ? AS catalog (READ_ONLY)", [str(self.path)])
            con.execute("USE catalog")
            self._register_remote_tables(con)
            roots = {str(self.lake.root), str(self.lake.root.resolve())}
            con.execute("SET allowed_directories = ?", [[r.rstrip("/") + "/" for r in sorted(roots)]])
            db = str(self.path.resolve())
            con.execute("SET allowed_paths = ?", [[db, db + ".wal"]])
            con.execute("SET enable_external_access = false")
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def _transaction(self, timeout_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection inside one transaction: everything in the block commits, or nothing."""
        with self.connect(timeout_s=timeout_s) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # a failed COMMIT has already rolled back
                raise

    def transaction(self, timeout_s: float | None = None):
        """A write connection inside one transaction (the registry's writes use it): everything in the
        block commits, or nothing. Waits up to ``timeout_s`` (default ``lock_timeout_s``) for the file."""
        return self._transaction(timeout_s=timeout_s)

    # -- an object-store lake: views over pyarrow datasets ---------------------------------------
    def _remote_name(self, kind: str, name: str, fp: str, table_kind: str) -> str:
        return f"__bucket_{kind}_{name}_{fp}_{table_kind}"

    def _register_remote_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        """Register, on this connection, the pyarrow dataset behind every view of an object-store lake."""
        if self.lake.store is None:
            return
        try:
            rows = con.execute(_LATEST_TABLES).fetchall()
        except duckdb.CatalogException:
            return  # a new catalog: no tables yet
        for kind, name, fp, table_kind, glob in rows:
            self._register_remote(con, kind, name, fp, table_kind, glob)

    def _register_remote(self, con: duckdb.DuckDBPyConnection, kind: str, name: str, fp: str, table_kind: str,
                         glob: str) -> str:
        view = self._remote_name(kind, name, fp, table_kind)
        con.register(view, self._remote_dataset(kind, name, fp, glob))
        return view

    def _remote_dataset(self, kind: str, name: str, fp: str, glob: str):
        """The files of one table of a committed version in the bucket, as a pyarrow dataset (listed once
        per process: a committed version never changes)."""
        import pyarrow.dataset as pads

        cache = self.__dict__.setdefault("_remote_cache", {})
        key = (kind, name, fp, glob)
        if key not in cache:
            store = self.lake.store
            assert store is not None
            rel = self.lake._rel(self.lake.version_dir(kind, name, fp))
            base = store.key(rel)
            pattern = glob.split("/")
            files = sorted(i.path for i in store.files(rel) if _glob_match(i.path[len(base) + 1:], pattern))
            options = {"partitioning": "hive", "partition_base_dir": base} if "=" in glob else {}
            cache[key] = pads.dataset(files, filesystem=store.fs, format="parquet", **options)
        return cache[key]

    def refresh_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """Recreate every view (datasets' and the registry's) on a write connection."""
        self._refresh_views(con)

    # -- registering -------------------------------------------------------------------------
    def register(self, handle: DatasetHandle) -> Registration:
        """Index a committed version (from its manifest) and point its views at it, in one transaction,
        together with any versions still pending. Returns ``"indexed"``, or ``"deferred"`` when another
        process kept the catalog busy for ``register_wait_s``: a pending marker then records it, and
        the next registration (or ``rebuild``) indexes it."""
        manifest = self.lake.manifest(handle)
        try:
            with self._transaction(timeout_s=self.register_wait_s) as con:
                pending = self._pending_markers()
                for _, other in pending:
                    if other != handle and self.lake.is_committed(other.kind, other.name, other.fingerprint):
                        _insert_version(con, other, self.lake.manifest(other), registered_at=_now())
                _insert_version(con, handle, manifest, registered_at=_now())
                self._refresh_views(con)
        except CatalogLocked:
            self._mark_pending(handle)
            return "deferred"
        self._clear_pending([m for m, _ in pending] + [self._marker(handle)])
        return "indexed"

    def rebuild(self) -> int:
        """Re-index every complete version in the lake and recreate all views, in one transaction;
        returns the count. Also sweeps temporary directories left by dead runs."""
        self.lake.sweep()
        count = 0
        with self._transaction() as con:
            for table in ("datasets", "lineage", "dataset_tables"):
                con.execute(f"DELETE FROM {table}")
            for handle in self.lake.all_versions():
                manifest = self.lake.manifest(handle)
                # Rebuilt from scratch, "newest" means most recently created.
                _insert_version(con, handle, manifest, registered_at=manifest.get("created_at"))
                count += 1
            self._refresh_views(con)
        self._clear_pending(list(self.pending_dir.glob("*.json")) if self.pending_dir.is_dir() else [])
        return count

    def is_pending(self, handle: DatasetHandle) -> bool:
        """Whether this version's registration was deferred and has not been applied yet."""
        return self._marker(handle).is_file()

    def pending(self) -> list[DatasetHandle]:
        """Versions whose registration was deferred (the catalog was busy) and not applied yet."""
        return [h for _, h in self._pending_markers()]

    def _marker(self, handle: DatasetHandle) -> Path:
        return self.pending_dir / f"{handle.kind}.{handle.name}.{handle.fingerprint}.json"

    def _mark_pending(self, handle: DatasetHandle) -> None:
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._marker(handle), handle.model_dump())

    def _pending_markers(self) -> list[tuple[Path, DatasetHandle]]:
        if not self.pending_dir.is_dir():
            return []
        found = []
        for marker in sorted(self.pending_dir.glob("*.json")):
            try:
                kind, name, fp = marker.stem.split(".")
                found.append((marker, self.lake.handle(kind, name, fp)))
            except ValueError:
                continue  # not ours
        return found

    def _clear_pending(self, markers: list[Path]) -> None:
        for marker in markers:
            marker.unlink(missing_ok=True)

    def _refresh_views(self, con: duckdb.DuckDBPyConnection) -> None:
        existing = {r[0] for r in con.execute(_USER_VIEWS).fetchall()}
        wanted = set()
        for view, definition in self._wanted_views(con).items():
            wanted.add(view)
            con.execute(f"CREATE OR REPLACE VIEW {quote_ident(view)} AS {definition}")
        for stale in existing - wanted:
            con.execute(f"DROP VIEW IF EXISTS {quote_ident(stale)}")

    def _wanted_views(self, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """Every view the catalog should have, by name, with its SELECT."""
        views: dict[str, str] = {}
        union_parts: dict[str, list[str]] = {}
        for kind, name, fp, table_kind, glob in con.execute(_LATEST_TABLES).fetchall():
            if not self.lake.is_committed(kind, name, fp):
                # removed from the lake behind the catalog's back: no view, rather than one that fails every
                # query and every later registration (`bertplat catalog check` names it, `rebuild` forgets it)
                log.warning("catalog: %s/%s@%s is indexed but gone from the lake; its views are left out",
                            kind, name, fp)
                continue
            source = self._parquet_source(kind, name, fp, table_kind, glob, con)
            views[f"{table_kind}_{name}"] = f"SELECT * FROM {source}"
            if table_kind in UNION_VIEWS:
                union_parts.setdefault(table_kind, []).append(
                    f"SELECT {quote_literal(kind)} AS dataset_kind, {quote_literal(name)} AS dataset, "
                    f"{quote_literal(fp)} AS fingerprint, * FROM {source}"
                )
        for table_kind, parts in union_parts.items():
            views[table_kind] = " UNION ALL BY NAME ".join(parts)
        if _has_registry(con):
            views.update(registry_views(con))
        return views

    def _parquet_source(self, kind: str, name: str, fp: str, table_kind: str, glob: str,
                        con: duckdb.DuckDBPyConnection) -> str:
        if self.lake.store is not None:  # a pyarrow dataset over the bucket, registered on this connection
            return quote_ident(self._register_remote(con, kind, name, fp, table_kind, glob))
        root = self.lake.version_dir(kind, name, fp)
        target = (root / glob).resolve() if "*" not in glob else root / glob
        if root not in (target, *target.parents):
            raise ValueError(f"table glob {glob!r} of {kind}/{name} escapes its version directory")
        hive = "true" if "=" in glob else "false"
        return (f"read_parquet({quote_literal(str(target))}, union_by_name = true, "
                f"hive_partitioning = {hive})")

    # -- checking ----------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Where the catalog and the lake disagree, one line each; empty when they agree."""
        problems = []
        in_lake = {(h.kind, h.name, h.fingerprint) for h in self.lake.all_versions()}
        with self.connect(read_only=True) as con:
            indexed = {tuple(r) for r in con.execute("SELECT kind, name, fingerprint FROM datasets").fetchall()}
            existing = {r[0] for r in con.execute(_USER_VIEWS).fetchall()}
            wanted = set(self._wanted_views(con))
            registered = con.execute("SELECT name, number, version_id, path FROM registry_versions ORDER BY 1, 2"
                                     ).fetchall() if _has_registry(con) else []
        for kind, name, fp in sorted(in_lake - indexed):
            problems.append(f"{kind}/{name}@{fp} is in the lake but not in the catalog")
        for kind, name, fp in sorted(indexed - in_lake):
            problems.append(f"{kind}/{name}@{fp} is in the catalog but not in the lake")
        problems += [f"view {v} is missing" for v in sorted(wanted - existing)]
        problems += [f"view {v} belongs to no dataset" for v in sorted(existing - wanted)]
        problems += [f"{h.ref()} is waiting to be indexed (the catalog was busy)" for h in self.pending()]
        problems += [f"model {name}@v{number} ({vid}) is registered but its directory {path} is gone"
                     for name, number, vid, path in registered if not Path(path).is_dir()]
        return problems

    # -- querying ----------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None,
              unrestricted: bool = False) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the catalog; the connection stays open for the relation's life.

        Use placeholders (``?`` or ``$name``) and ``params`` for values, never string formatting.
        By default the query must be one SELECT and may read only the lake and the catalog
        (:class:`QueryRefused` otherwise); ``unrestricted=True`` lifts that for trusted code.
        """
        if not unrestricted:
            sql = single_select(sql)
        if not self.path.exists():
            with self.connect():
                pass  # create the empty catalog
        con = self._open(read_only=True, confined=not unrestricted, timeout_s=None)
        return con.sql(sql, params=params)

    def fetch(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None,
              unrestricted: bool = False) -> tuple[list[str], list[tuple]]:
        """Run a query and return (column names, rows), closing the connection. Confined as
        :meth:`query` unless ``unrestricted``."""
        if not unrestricted:
            sql = single_select(sql)
        with self.connect(read_only=True, confined=not unrestricted) as con:
            cursor = con.execute(sql, params or [])
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()

    def versions(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every dataset version, and every registered model version (kind ``model``, its version id as
        the fingerprint), optionally of one kind."""
        if kind and kind != MODEL_KIND:
            check_kind(kind)
        with self.connect(read_only=True) as con:
            models = _has_registry(con)
        parts = []
        if kind != MODEL_KIND:
            parts.append("SELECT kind, name, fingerprint, created_at, counts, path FROM datasets"
                         + (" WHERE kind = $kind" if kind else ""))
        if models and kind in (None, MODEL_KIND):
            parts.append(_MODEL_ROWS)
        if not parts:
            return []
        sql = "SELECT * FROM (" + " UNION ALL ".join(parts) + ") ORDER BY kind, name, created_at"
        columns, rows = self.fetch(sql, {"kind": kind} if kind and kind != MODEL_KIND else None)
        return [dict(zip(columns, row)) for row in rows]

    def lineage(self, kind: str, name: str) -> list[tuple]:
        """Every ancestor (kind, name, fingerprint) of the newest version of a dataset or registered model
        (for a model: down to the raw input files, kind ``file``, name its path, fingerprint its sha256)."""
        check_name(name)
        with self.connect(read_only=True) as con:
            models = _has_registry(con)
            newest = con.execute("SELECT version_id FROM registry_versions WHERE name = ? ORDER BY number DESC "
                                 "LIMIT 1", [name]).fetchall() if models and kind == MODEL_KIND else []
        if kind == MODEL_KIND:
            if not newest:
                from bertplat.lake import DatasetNotFound

                raise DatasetNotFound(f"no registered model named {name!r} in {self.path}; `bertplat models list` "
                                      "shows the registered models")
            fp = newest[0][0]
        else:
            fp = self.lake.latest(check_kind(kind), name).fingerprint
        edges = "SELECT kind, name, fingerprint, parent_kind, parent_name, parent_fingerprint FROM lineage"
        if models:
            edges += (" UNION SELECT child_kind, child_name, child_ref, parent_kind, parent_name, parent_ref "
                      "FROM registry_lineage")
        _, rows = self.fetch(
            f"""
            WITH RECURSIVE edges AS ({edges}),
            up(kind, name, fingerprint) AS (
                SELECT ?, ?, ?
                UNION
                SELECT l.parent_kind, l.parent_name, l.parent_fingerprint
                FROM edges l JOIN up USING (kind, name, fingerprint)
            ) SELECT * FROM up
            """,
            [kind, name, fp],
        )
        return rows


def _glob_match(relative: str, pattern: list[str]) -> bool:
    """DuckDB's glob on a relative path: ``*`` within one path component."""
    parts = relative.split("/")
    return len(parts) == len(pattern) and all(fnmatch.fnmatchcase(p, g) for p, g in zip(parts, pattern))


def _has_registry(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the registry's tables exist (a catalog written before the registry has none until its next
    write)."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'registry_versions'"
                            ).fetchall()[0][0])


def single_select(sql: str) -> str:
    """``sql`` if it is exactly one SELECT (``WITH``, ``FROM``-first, ``DESCRIBE``, ``SUMMARIZE`` and
    ``VALUES`` count), else :class:`QueryRefused` saying why. Syntax errors are DuckDB's to report."""
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise QueryRefused(f"the query holds {len(statements)} statements; give exactly one SELECT per call")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefused(f"{kind.name} statements are not run here: queries over the catalog are read-only, "
                           "one SELECT that reads the lake's datasets and the catalog, and writes nothing")
    return sql


_DENIED = re.compile(r'Cannot access (?:file|directory) "([^"]*)"')


def refusal_reason(exc: duckdb.Error, lake: Lake) -> str | None:
    """A person's sentence for DuckDB's refusal to touch a path outside the lake, else None."""
    if not isinstance(exc, duckdb.PermissionException):
        return None
    match = _DENIED.search(str(exc))
    where = match.group(1) if match else "a file"
    return (f"the query reads {where}, outside the lake ({lake.root}); queries over the catalog read only "
            "the lake's datasets (the views) and the catalog")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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
        [*key, handle.uri, manifest.get("created_at"), registered_at, manifest.get("bertplat_version"),
         json.dumps(manifest.get("config")), json.dumps(manifest.get("counts")), passed],
    )
    for table_kind, glob in (manifest.get("tables") or {}).items():
        con.execute("INSERT INTO dataset_tables VALUES (?, ?, ?, ?, ?)", [*key, table_kind, glob])
    for parent in manifest.get("parents") or []:
        con.execute("INSERT OR IGNORE INTO lineage VALUES (?, ?, ?, ?, ?, ?)",
                    [*key, parent["kind"], parent["name"], parent["fingerprint"]])
