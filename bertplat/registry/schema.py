"""The registry's tables and views in ``catalog.duckdb`` (imported by ``bertplat.catalog``, so it imports
nothing of bertplat's own).

Tables (all ``registry_*``, so a model's ``model_<name>`` view can never take a table's name):

- ``registry_models``: one row per model name.
- ``registry_versions``: one row per version: its number (``v1``, ``v2``...), its id (the content
  address: the export's fingerprint, or the hash of an imported directory's files), its directory,
  where it came from, its configs and its provenance (git commit, dirty tree, library versions).
- ``registry_files``: the sha256 and size of every file of every version, taken at registration.
- ``registry_evaluations``: model version x task dataset version x split x metric -> value.
- ``registry_lineage``: the edges of the graph from a version down to raw file hashes (child -> parent,
  each a (kind, name, ref) triple; a raw file is kind ``file``, its path and its sha256).
- ``registry_aliases`` and ``registry_alias_history``: one holder per (model, alias), and every change.

Views, present once a model is registered: ``models`` (every version, newest first, with its aliases),
``evaluations`` (the metrics with their task version) and ``model_<name>`` (every version of one model,
one column per split and metric).
"""

from __future__ import annotations

from typing import Any

REGISTRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS registry_models (
    name VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_versions (
    name VARCHAR NOT NULL,
    version_id VARCHAR NOT NULL,
    number INTEGER NOT NULL,
    path VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    source_path VARCHAR,
    task_type VARCHAR,
    registered_at TIMESTAMPTZ NOT NULL,
    registered_by VARCHAR,
    run_dir VARCHAR,
    config JSON,
    provenance JSON,
    PRIMARY KEY (name, version_id),
    UNIQUE (name, number)
);
CREATE TABLE IF NOT EXISTS registry_files (
    name VARCHAR NOT NULL, version_id VARCHAR NOT NULL, file VARCHAR NOT NULL,
    bytes BIGINT NOT NULL, sha256 VARCHAR NOT NULL,
    PRIMARY KEY (name, version_id, file)
);
CREATE TABLE IF NOT EXISTS registry_evaluations (
    name VARCHAR NOT NULL, version_id VARCHAR NOT NULL,
    task_name VARCHAR NOT NULL, task_fingerprint VARCHAR NOT NULL, split VARCHAR NOT NULL,
    metric VARCHAR NOT NULL, value DOUBLE NOT NULL, evaluated_at TIMESTAMPTZ NOT NULL, source VARCHAR,
    PRIMARY KEY (name, version_id, task_name, task_fingerprint, split, metric)
);
CREATE TABLE IF NOT EXISTS registry_lineage (
    name VARCHAR NOT NULL, version_id VARCHAR NOT NULL,
    child_kind VARCHAR NOT NULL, child_name VARCHAR NOT NULL, child_ref VARCHAR NOT NULL,
    parent_kind VARCHAR NOT NULL, parent_name VARCHAR NOT NULL, parent_ref VARCHAR NOT NULL,
    relation VARCHAR, detail JSON,
    PRIMARY KEY (name, version_id, child_kind, child_name, child_ref, parent_kind, parent_name, parent_ref)
);
CREATE TABLE IF NOT EXISTS registry_aliases (
    name VARCHAR NOT NULL, alias VARCHAR NOT NULL, version_id VARCHAR NOT NULL,
    set_at TIMESTAMPTZ NOT NULL, set_by VARCHAR,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS registry_alias_history (
    name VARCHAR NOT NULL, alias VARCHAR NOT NULL, version_id VARCHAR NOT NULL,
    previous_version_id VARCHAR, action VARCHAR NOT NULL, changed_at TIMESTAMPTZ NOT NULL, changed_by VARCHAR,
    reason VARCHAR, gate JSON
);
"""

REGISTRY_TABLES = ("registry_models", "registry_versions", "registry_files", "registry_evaluations",
                   "registry_lineage", "registry_aliases", "registry_alias_history")

_MODELS_VIEW = """
SELECT v.name, 'v' || v.number AS version, v.version_id, v.origin, v.task_type,
       (SELECT string_agg(a.alias, ',' ORDER BY a.alias) FROM registry_aliases a
        WHERE a.name = v.name AND a.version_id = v.version_id) AS aliases,
       (SELECT count(*) FROM registry_evaluations e WHERE e.name = v.name AND e.version_id = v.version_id)
           AS n_metrics,
       (SELECT count(*) FROM registry_files f WHERE f.name = v.name AND f.version_id = v.version_id) AS n_files,
       (SELECT sum(f.bytes) FROM registry_files f WHERE f.name = v.name AND f.version_id = v.version_id) AS bytes,
       v.registered_at, v.registered_by, v.path
FROM registry_versions v ORDER BY v.name, v.number DESC
"""

_EVALUATIONS_VIEW = """
SELECT e.name, 'v' || v.number AS version, e.version_id, e.task_name || '@' || e.task_fingerprint AS task,
       e.task_name, e.task_fingerprint, e.split, e.metric, e.value, e.evaluated_at, e.source
FROM registry_evaluations e JOIN registry_versions v USING (name, version_id)
ORDER BY e.name, v.number, e.task_name, e.split, e.metric
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def registry_views(con: Any) -> dict[str, str]:
    """Every registry view, by name, with its SELECT; none while no model is registered (so a catalog
    without models keeps exactly its dataset views)."""
    if not con.execute("SELECT count(*) FROM registry_versions").fetchall()[0][0]:
        return {}
    views = {"models": _MODELS_VIEW, "evaluations": _EVALUATIONS_VIEW}
    for (name,) in con.execute("SELECT DISTINCT name FROM registry_versions ORDER BY 1").fetchall():
        views[f"model_{name}"] = model_view(con, name)
    return views


def model_view(con: Any, name: str) -> str:
    """Every version of ``name`` with one column per (split, metric), or (task, split, metric) when it was
    evaluated on several tasks; the newest evaluation of a cell wins."""
    cells = con.execute("SELECT DISTINCT task_name, split, metric FROM registry_evaluations WHERE name = ? "
                        "ORDER BY 1, 2, 3", [name]).fetchall()
    several = len({t for t, _, _ in cells}) > 1
    columns = []
    for task, split, metric in cells:
        label = f"{task}/{split}/{metric}" if several else f"{split}/{metric}"
        columns.append(f"(SELECT arg_max(e.value, e.evaluated_at) FROM registry_evaluations e WHERE e.name = v.name "
                       f"AND e.version_id = v.version_id AND e.task_name = {_literal(task)} AND e.split = "
                       f"{_literal(split)} AND e.metric = {_literal(metric)}) AS {_ident(label)}")
    extra = "".join(", " + c for c in columns)
    return (f"SELECT 'v' || v.number AS version, v.version_id, v.origin, "
            f"(SELECT string_agg(a.alias, ',' ORDER BY a.alias) FROM registry_aliases a WHERE a.name = v.name "
            f"AND a.version_id = v.version_id) AS aliases, v.registered_at{extra}, v.path "
            f"FROM registry_versions v WHERE v.name = {_literal(name)} ORDER BY v.number")
