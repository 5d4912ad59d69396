"""What the registry commands print: the models table, one version in full, two versions side by side,
the lineage tree, and the integrity check of every version."""

from __future__ import annotations

import io
import json
from typing import Any

from pydantic import BaseModel

from bertplat.catalog import Catalog
from bertplat.progress import NullProgress, Progress
from bertplat.registry.lineage import Node, lineage_tree
from bertplat.registry.promotion import drifted_files
from bertplat.registry.refs import VersionRow, fetch_versions, find_version, has_registry
from bertplat.registry.store import version_edges, version_evaluations

LIST_COLUMNS = ["name", "version", "version_id", "origin", "aliases", "metrics", "registered_at"]


def render_table(columns: list[str], rows: list[tuple], width: int = 160) -> str:
    """A rich table as plain text (what the CLI prints, and what the demo can print)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold", max_width=60)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, color_system=None).print(table)
    return buf.getvalue().rstrip()


def _headline(evals: list[dict[str, Any]]) -> str:
    """The version's metrics on its newest task, compactly (split metric value, ...)."""
    if not evals:
        return "none"
    shown = [f"{e['split']} {e['metric']} {e['value']:.3f}" for e in evals if e["split"] != "train"]
    return ", ".join(shown[:4]) + (f" (+{len(shown) - 4})" if len(shown) > 4 else "") if shown else "train only"


def list_rows(catalog: Catalog, name: str | None = None) -> list[tuple]:
    with catalog.connect(read_only=True) as con:
        if not has_registry(con):
            return []
        rows = []
        for v in sorted(fetch_versions(con, name), key=lambda v: (v.name, -v.number)):
            aliases = ",".join(a for (a,) in con.execute(
                "SELECT alias FROM registry_aliases WHERE name = ? AND version_id = ? ORDER BY 1",
                [v.name, v.version_id]).fetchall())
            rows.append((v.name, f"v{v.number}", v.version_id, v.origin, aliases,
                         _headline(version_evaluations(con, v.name, v.version_id)),
                         str(v.registered_at)[:19]))
    return rows


def models_table(catalog: Catalog, name: str | None = None) -> str:
    """``bertplat models list`` as text: one row per version, newest first, with aliases and metrics."""
    rows = list_rows(catalog, name)
    if not rows:
        return "no models registered yet (fine-tune or pretrain one with registration on, or `bertplat models import`)"
    return render_table(LIST_COLUMNS, rows) + f"\n{len(rows)} versions of {len({r[0] for r in rows})} models"


def show_text(catalog: Catalog, ref: str) -> str:
    with catalog.connect(read_only=True) as con:
        v = find_version(con, ref)
        evals = version_evaluations(con, v.name, v.version_id)
        files = con.execute("SELECT file, bytes, sha256 FROM registry_files WHERE name = ? AND version_id = ? "
                            "ORDER BY file", [v.name, v.version_id]).fetchall()
        aliases = con.execute("SELECT alias FROM registry_aliases WHERE name = ? AND version_id = ? ORDER BY 1",
                              [v.name, v.version_id]).fetchall()
        edges = version_edges(con, v.name, v.version_id)
    prov = json.loads(v.provenance) if isinstance(v.provenance, str) else (v.provenance or {})
    out = [f"{v.label} ({v.version_id}), {v.origin}" + (f", {v.task_type}" if v.task_type else ""),
           f"  path: {v.path}", f"  registered {str(v.registered_at)[:19]} by {v.registered_by}",
           f"  aliases: {', '.join(a for (a,) in aliases) or 'none'}",
           f"  code: git {prov.get('git_commit') or 'unknown'}" + (" (dirty)" if prov.get("git_dirty") else "")
           + "; " + ", ".join(f"{k} {prov[k]}" for k in ("bertplat", "torch", "tokenizers") if prov.get(k))]
    if v.source_path:
        out.append(f"  imported from: {v.source_path}")
    if v.run_dir:
        out.append(f"  run: {v.run_dir}")
    out.append("")
    out.append(render_table(["task", "split", "metric", "value"],
                            [(f"{e['task_name']}@{e['task_fingerprint']}", e["split"], e["metric"], f"{e['value']:.4f}")
                             for e in evals]) if evals else "no evaluations")
    out += ["", "lineage:", *("  " + line for line in lineage_tree(Node(kind="model", name=v.name, ref=v.version_id),
                                                                      edges))]
    out += ["", f"{len(files)} files ({sum(f[1] for f in files):,} bytes), sha256 recorded:"]
    out += [f"  {f[2][:16]}  {f[1]:>12,}  {f[0]}" for f in files]
    return "\n".join(out)


def lineage_text(catalog: Catalog, ref: str) -> str:
    with catalog.connect(read_only=True) as con:
        v = find_version(con, ref)
        edges = version_edges(con, v.name, v.version_id)
    files = {e.parent for e in edges if e.parent.kind == "file"}
    return "\n".join([*lineage_tree(Node(kind="model", name=v.name, ref=v.version_id), edges, max_files=1000),
                      f"{len(edges)} edges, {len(files)} raw files with their sha256"])


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def compare_text(catalog: Catalog, a: str, b: str) -> str:
    """Metrics side by side with B - A, refusing pairs evaluated on different task versions; then the
    fields where their configs differ."""
    with catalog.connect(read_only=True) as con:
        va, vb = find_version(con, a), find_version(con, b)
        ea, eb = version_evaluations(con, va.name, va.version_id), version_evaluations(con, vb.name, vb.version_id)
    key = lambda e: (e["task_name"], e["task_fingerprint"], e["split"], e["metric"])  # noqa: E731
    ma, mb = {key(e): e["value"] for e in ea}, {key(e): e["value"] for e in eb}
    common = sorted(set(ma) & set(mb))
    out = [f"A = {va.label} ({va.version_id}), B = {vb.label} ({vb.version_id})", ""]
    if common:
        out.append(render_table(["task", "split", "metric", "A", "B", "B - A"], [
            (f"{t}@{fp}", s, m, f"{ma[k]:.4f}", f"{mb[k]:.4f}", f"{mb[k] - ma[k]:+.4f}")
            for k in common for t, fp, s, m in [k]]))
    else:
        ta = sorted({f"{e['task_name']}@{e['task_fingerprint']}" for e in ea})
        tb = sorted({f"{e['task_name']}@{e['task_fingerprint']}" for e in eb})
        if ea and eb:
            raise ValueError(f"{va.label} and {vb.label} have no evaluation on a common task dataset version ({va.label}: "
                             f"{', '.join(ta)}; {vb.label}: {', '.join(tb)}); metrics on different task versions are "
                             f"not comparable. Evaluate both on one version (`bertplat evaluate --model {vb.label} "
                             f"--task {ta[0]}`)")
        out.append(f"no metrics to compare: {va.label if not ea else vb.label} has no evaluations")
    ca, cb = _flat(_load(va.config)), _flat(_load(vb.config))
    diff = [(k, _short(ca.get(k)), _short(cb.get(k))) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]
    out += ["", render_table(["config field", "A", "B"], diff) if diff else "configs: identical"]
    return "\n".join(out)


def _load(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) else (text or {})


def _short(v: Any) -> str:
    s = "—" if v is None else json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:57] + "..."


class VerifyResult(BaseModel):
    checked: int
    files: int
    drift: dict[str, list[str]]  # version label -> files missing, added or changed

    @property
    def ok(self) -> bool:
        return not self.drift

    def summary(self) -> str:
        if self.ok:
            return f"verified {self.checked} versions ({self.files} files): every file matches its recorded sha256"
        lines = [f"DRIFT in {len(self.drift)} of {self.checked} versions:"]
        lines += [f"  {label}: {', '.join(files[:10])}" for label, files in self.drift.items()]
        lines.append("a drifted version cannot be promoted; restore its files, or re-export the model and register "
                     "it as a new version")
        return "\n".join(lines)


def verify(catalog: Catalog, progress: Progress | None = None) -> VerifyResult:
    """Re-hash every file of every registered version and report each that differs from the registry."""
    progress = progress or NullProgress()
    with catalog.connect(read_only=True) as con:
        versions: list[VersionRow] = fetch_versions(con) if has_registry(con) else []
        drift, files = {}, 0
        with progress.task("verifying model versions", total=len(versions), unit="versions") as bar:
            for v in versions:
                changed = drifted_files(con, v)
                files += con.execute("SELECT count(*) FROM registry_files WHERE name = ? AND version_id = ?",
                                     [v.name, v.version_id]).fetchall()[0][0]
                if changed:
                    drift[f"{v.label} ({v.version_id})"] = changed
                bar.advance(1)
    return VerifyResult(checked=len(versions), files=files, drift=drift)
