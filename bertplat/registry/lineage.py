"""A model version's lineage, read from what the lake already records: each manifest's ``parents`` and,
for corpora and task datasets, its ``inputs`` (raw files with their sha256).

Edges are (child, parent) pairs of ``(kind, name, ref)`` nodes: a lake dataset is ``(kind, name,
fingerprint)``, a model version ``("model", name, version id)``, a raw file ``("file", path, sha256)``,
an unregistered model directory ``("model-dir", path, content hash)`` and the training run
``("run", run directory, fingerprint)``. They are stored with the version, so its lineage survives the
lake's datasets being deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bertplat.lake import KINDS, Lake, read_manifest

MANIFEST = "_manifest.json"


class Node(BaseModel, frozen=True):
    kind: str
    name: str
    ref: str

    def text(self) -> str:
        if self.kind == "file":
            return f"file {self.name} sha256:{self.ref}"
        return f"{self.kind} {self.name}@{self.ref}"


class Edge(BaseModel, frozen=True):
    child: Node
    parent: Node
    relation: str
    detail: str | None = None  # JSON


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def model_edges(root: Node, manifest: dict[str, Any], lake: Lake, hash_dir=None) -> list[Edge]:
    """Every edge from the model version ``root`` (described by its export ``manifest``) down to raw files."""
    edges: list[Edge] = []
    seen: set[Node] = set()
    _walk_model(root, manifest, lake, edges, seen, hash_dir)
    return list(dict.fromkeys(edges))


def _direct_parents(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """A fine-tune's manifest flattens its base model's parents into its own; its direct parents are the
    task dataset and the base model (the rest is reached through the base)."""
    parents = manifest.get("parents") or []
    if "base_model" in manifest:
        return [p for p in parents if p.get("kind") in ("tasks", "model")][:2]
    return parents


def _walk_model(node: Node, manifest: dict[str, Any], lake: Lake, edges: list[Edge], seen: set[Node],
                hash_dir) -> None:
    if node in seen:
        return
    seen.add(node)
    if manifest.get("source_path"):  # an imported model: a root, with where it came from
        edges.append(Edge(child=node, parent=Node(kind="source", name=str(manifest["source_path"]), ref=node.ref),
                          relation="imported_from"))
    if manifest.get("run_dir"):
        edges.append(Edge(child=node, parent=Node(kind="run", name=str(manifest["run_dir"]), ref=node.ref),
                          relation="run"))
    for p in _direct_parents(manifest):
        kind = p.get("kind")
        if kind == "model":
            _model_parent(node, p, lake, edges, seen, hash_dir)
        elif kind in KINDS and p.get("name") and p.get("fingerprint"):
            parent = Node(kind=kind, name=p["name"], ref=p["fingerprint"])
            edges.append(Edge(child=node, parent=parent, relation=kind))
            _walk_dataset(parent, lake, edges, seen)


def _model_parent(node: Node, p: dict[str, Any], lake: Lake, edges: list[Edge], seen: set[Node], hash_dir) -> None:
    path = Path(p["path"]) if p.get("path") else None
    base_manifest = _read(path / MANIFEST) if path else {}
    if p.get("fingerprint") and base_manifest:
        parent = Node(kind="model", name=p["name"], ref=p["fingerprint"])
        edges.append(Edge(child=node, parent=parent, relation="base_model", detail=json.dumps({"path": str(path)})))
        _walk_model(parent, base_manifest, lake, edges, seen, hash_dir)
    elif path is not None:  # a model directory bertplat did not make and the registry did not import
        ref = hash_dir(path) if hash_dir and path.is_dir() else "unknown"
        edges.append(Edge(child=node, parent=Node(kind="model-dir", name=str(path), ref=ref), relation="base_model",
                          detail=json.dumps({"path": str(path)})))


def _walk_dataset(node: Node, lake: Lake, edges: list[Edge], seen: set[Node]) -> None:
    if node in seen:
        return
    seen.add(node)
    handle = lake.find(node.kind, node.name, node.ref)
    if handle is None:  # deleted from the lake since: the edge to it is all we know
        return
    manifest = read_manifest(handle)
    for p in manifest.get("parents") or []:
        if p.get("kind") in KINDS and p.get("name") and p.get("fingerprint"):
            parent = Node(kind=p["kind"], name=p["name"], ref=p["fingerprint"])
            edges.append(Edge(child=node, parent=parent, relation=p["kind"]))
            _walk_dataset(parent, lake, edges, seen)
    for inp in manifest.get("inputs") or []:
        sha = inp.get("sha256")
        where = inp.get("path") or inp.get("rel") or inp.get("name")
        if sha and where:
            detail = {k: inp[k] for k in ("bytes", "size", "split", "source", "name") if k in inp}
            edges.append(Edge(child=node, parent=Node(kind="file", name=str(where), ref=sha), relation="raw_file",
                              detail=json.dumps(detail)))


def lineage_tree(root: Node, edges: list[Edge], max_files: int = 8) -> list[str]:
    """The lineage as an indented tree of lines; a node reached twice is shown once (later: "see above");
    at most ``max_files`` raw files per dataset, then a count."""
    children: dict[Node, list[Edge]] = {}
    for e in edges:
        children.setdefault(e.child, []).append(e)
    lines = [root.text()]
    shown: set[Node] = {root}

    def walk(node: Node, prefix: str) -> None:
        below = children.get(node, [])
        files = [e for e in below if e.parent.kind == "file"]
        rest = [e for e in below if e.parent.kind != "file"]
        items: list[str | Edge] = [*rest, *files[:max_files]]
        if len(files) > max_files:
            items.append(f"... {len(files) - max_files} more raw files")
        for i, item in enumerate(items):
            last = i == len(items) - 1
            branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
            if isinstance(item, str):
                lines.append(prefix + branch + item)
                continue
            again = item.parent in shown and children.get(item.parent)
            lines.append(prefix + branch + item.parent.text() + (" (see above)" if again else ""))
            if not again:
                shown.add(item.parent)
                walk(item.parent, prefix + indent)

    walk(root, "")
    return lines
