"""The data lake: content-addressed, atomically written dataset versions.

Layout (see ARCHITECTURE.md)::

    <root>/lake/<kind>/<name>/<fingerprint>/   part-*.parquet ... and _manifest.json

A version directory is complete exactly when its ``_manifest.json`` exists, and it only ever
appears under its final name by a rename of a finished temporary directory. A run killed at any
point therefore leaves nothing that looks complete; its temporary directory is swept by the next
write of the same dataset.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from bertplat import __version__
from bertplat.settings import is_local_uri, local_path

KINDS = ("corpus", "vocab", "examples", "tasks", "embeddings")
MANIFEST = "_manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_FP_RE = re.compile(r"^[0-9a-f]{16}$")


class DatasetNotFound(LookupError):
    """A dataset or version that the lake does not hold."""


def check_name(name: str) -> str:
    """A dataset name: letters, digits, '_' and '-', starting with a letter or digit, at most 64."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid dataset name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a "
            "letter or digit (it becomes a directory and part of a DuckDB view name)"
        )
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def fingerprint(kind: str, config_json: str, inputs: Iterable[str], schema_version: int) -> str:
    """A version's fingerprint: its kind, config, inputs' fingerprints (in order: input order can
    matter, e.g. which of two duplicates is kept) and schema, hashed.

    The dataset *name* is deliberately left out: the same inputs and config under two names are
    the same content.
    """
    h = hashlib.sha256()
    for part in (kind, str(schema_version), config_json, *inputs):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Content hash of a local file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class DatasetHandle(BaseModel):
    """A reference to one dataset version; what stages and flows pass around instead of data."""

    model_config = ConfigDict(frozen=True)

    kind: str
    name: str
    fingerprint: str
    uri: str  # the version directory

    @property
    def path(self) -> Path:
        """The version directory as a local path (stages that need local files use this)."""
        return local_path(self.uri)

    def file(self, relative: str) -> Path:
        return self.path / relative

    def ref(self) -> str:
        return f"{self.kind}/{self.name}@{self.fingerprint}"


class Lake:
    """The dataset store under ``<data_dir>/lake``. Local paths are fully supported; object-store
    URIs are accepted where pyarrow can reach them, but atomic commit relies on a directory rename,
    which only local and POSIX-like filesystems provide."""

    def __init__(self, data_dir: str):
        if not is_local_uri(data_dir):
            raise NotImplementedError(
                f"data_dir {data_dir!r}: object-store data roots are not supported yet; the lake "
                "commits versions by directory rename, which needs a local or POSIX filesystem"
            )
        self.data_dir = local_path(data_dir)
        self.root = self.data_dir / "lake"

    # -- locating versions -------------------------------------------------------------------
    def version_dir(self, kind: str, name: str, fp: str) -> Path:
        check_kind(kind)
        check_name(name)
        if not _FP_RE.match(fp):
            raise ValueError(f"invalid fingerprint {fp!r}")
        path = (self.root / kind / name / fp).resolve()
        # Names are validated above, so this cannot fail; it is the last line of defence anyway.
        if self.root.resolve() not in path.parents:
            raise ValueError(f"dataset path {path} escapes the lake root {self.root}")
        return path

    def handle(self, kind: str, name: str, fp: str) -> DatasetHandle:
        return DatasetHandle(kind=kind, name=name, fingerprint=fp, uri=str(self.version_dir(kind, name, fp)))

    def find(self, kind: str, name: str, fp: str) -> DatasetHandle | None:
        """The complete version, or None when it does not exist (or is not complete)."""
        handle = self.handle(kind, name, fp)
        return handle if (handle.path / MANIFEST).is_file() else None

    def versions(self, kind: str, name: str) -> list[DatasetHandle]:
        """Complete versions of a dataset, oldest first (by manifest creation time)."""
        base = self.root / check_kind(kind) / check_name(name)
        found = []
        if base.is_dir():
            for entry in base.iterdir():
                if _FP_RE.match(entry.name) and (entry / MANIFEST).is_file():
                    created = read_manifest_path(entry).get("created_at", "")
                    found.append((created, self.handle(kind, name, entry.name)))
        return [h for _, h in sorted(found, key=lambda pair: pair[0])]

    def latest(self, kind: str, name: str) -> DatasetHandle:
        versions = self.versions(kind, name)
        if not versions:
            known = ", ".join(self.names(kind)) or "none"
            raise DatasetNotFound(
                f"no {kind} dataset named {name!r} in {self.root}; known {kind} datasets: {known}"
            )
        return versions[-1]

    def resolve(self, kind: str, ref: str) -> DatasetHandle:
        """``name`` (newest version) or ``name@fingerprint`` to a handle."""
        name, _, fp = ref.partition("@")
        if not fp:
            return self.latest(kind, name)
        handle = self.find(kind, name, fp)
        if handle is None:
            raise DatasetNotFound(f"no complete version {fp} of {kind} dataset {name!r} in {self.root}")
        return handle

    def names(self, kind: str) -> list[str]:
        base = self.root / check_kind(kind)
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def all_versions(self) -> Iterator[DatasetHandle]:
        for kind in KINDS:
            for name in self.names(kind):
                yield from self.versions(kind, name)

    # -- writing versions --------------------------------------------------------------------
    @contextmanager
    def writer(self, kind: str, name: str, fp: str) -> Iterator[VersionWriter]:
        """A temporary directory to fill; ``commit()`` renames it into place, anything else
        (an exception, a failed gate) removes it."""
        final = self.version_dir(kind, name, fp)
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_temporaries(final.parent)
        tmp = final.parent / f".tmp-{fp}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        tmp.mkdir()
        writer = VersionWriter(self.handle(kind, name, fp), tmp, final)
        try:
            yield writer
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


class VersionWriter:
    """Files go into ``tmp``; ``commit(manifest)`` writes the manifest last and renames."""

    def __init__(self, handle: DatasetHandle, tmp: Path, final: Path):
        self.handle = handle
        self.tmp = tmp
        self.final = final
        self.committed = False

    def path(self, relative: str) -> Path:
        target = self.tmp / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def commit(self, manifest: dict[str, Any]) -> DatasetHandle:
        body = {
            "schema_version": manifest.pop("schema_version", 1),
            "kind": self.handle.kind,
            "name": self.handle.name,
            "fingerprint": self.handle.fingerprint,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
            "bertplat_version": __version__,
            **manifest,
        }
        _fsync_tree(self.tmp)
        write_json_atomic(self.tmp / MANIFEST, body)
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            # Another run committed the same fingerprint first: same inputs, same config, same
            # content. Keep theirs.
            if not (self.final / MANIFEST).is_file():
                raise
        self.committed = True
        return self.handle


def read_manifest_path(version_dir: Path) -> dict[str, Any]:
    with open(version_dir / MANIFEST, encoding="utf-8") as f:
        return json.load(f)


def read_manifest(handle: DatasetHandle) -> dict[str, Any]:
    return read_manifest_path(handle.path)


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_tree(root: Path) -> None:
    # Data must be on disk before the manifest that vouches for it.
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def sweep_stale_temporaries(parent: Path) -> None:
    """Remove temporary version directories left by dead processes on this host."""
    host = socket.gethostname()
    for entry in parent.glob(".tmp-*"):
        parts = entry.name.split("-")
        # .tmp-<fp>-<host...>-<pid>-<rand>; hostnames may contain '-'
        if len(parts) < 5:
            continue
        entry_host, pid = "-".join(parts[2:-2]), parts[-2]
        if entry_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
