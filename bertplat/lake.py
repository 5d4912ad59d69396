"""The data lake: content-addressed, atomically written dataset versions.

Layout (see ARCHITECTURE.md)::

    <root>/lake/<kind>/<name>/<fingerprint>/   part-*.parquet ... and _manifest.json

A version directory is complete exactly when its ``_manifest.json`` exists, and it only ever
appears under its final name by a rename of a finished temporary directory. A run killed at any
point therefore leaves nothing that looks complete; its temporary directory is swept by the next
write of any dataset (or by ``bertplat catalog rebuild``), and a dataset directory left without any
complete version is removed with it, so a failed run leaves nothing visible.

On an object store (``data_dir = s3://bucket/prefix``, see :mod:`bertplat.objectstore`) the bucket holds
the same layout and is the truth for what exists; stages read and write a local mirror of it. A
version's files are uploaded under its final prefix and its manifest last, as the commit marker.
"""

from __future__ import annotations

import datetime as dt
import errno
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
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from bertplat import __version__
from bertplat.objectstore import ObjectStore, is_object_uri, mirror_dir
from bertplat.settings import is_local_uri, local_path

if TYPE_CHECKING:
    from bertplat.catalog import Catalog

KINDS = ("corpus", "vocab", "examples", "tasks", "predictions", "embeddings")
MANIFEST = "_manifest.json"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_FP_RE = re.compile(r"[0-9a-f]{16}")


class DatasetNotFound(LookupError):
    """A dataset or version that the lake does not hold."""


def check_name(name: str) -> str:
    """A dataset name: letters, digits, '_' and '-', starting with a letter or digit, at most 64."""
    # fullmatch: with match, "$" also accepts a trailing newline ("nl\n").
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
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
    uri: str  # the version directory: a local path, or s3://... on an object-store lake
    mirror: str | None = None  # object-store lake: where this machine keeps its copy of the version

    @property
    def path(self) -> Path:
        """The version directory as a local path (stages that need local files use this). On an
        object-store lake this is the local mirror, copied from the bucket on first use (a committed version
        never changes, so a copy that holds the manifest is exact)."""
        if self.mirror is None:
            return local_path(self.uri)
        mirror = Path(self.mirror)
        if not (mirror / MANIFEST).is_file():
            ObjectStore(self.uri).download_dir("", mirror)
        return mirror

    @property
    def remote(self) -> bool:
        return self.mirror is not None

    def file(self, relative: str) -> Path:
        return self.path / relative

    def ref(self) -> str:
        return f"{self.kind}/{self.name}@{self.fingerprint}"


class Lake:
    """The dataset store under ``<data_dir>/lake``: a local directory, or an S3-compatible bucket
    (``s3://bucket/prefix``) with a local mirror under ``cache_dir``. ``data_dir`` is always the local
    directory stages write to; ``store`` is the bucket, or None."""

    def __init__(self, data_dir: str | Path, cache_dir: str | None = None):
        data_dir = str(data_dir)
        self.store: ObjectStore | None = None
        if is_object_uri(data_dir):
            self.store = ObjectStore(data_dir)
            self.store.check()
            self.data_dir = mirror_dir(data_dir, cache_dir)
        elif is_local_uri(data_dir):
            self.data_dir = local_path(data_dir)
        else:
            raise ValueError(f"data_dir {data_dir!r}: use a local path or s3://BUCKET[/PREFIX]")
        self.uri = data_dir.rstrip("/") if self.store else str(self.data_dir)
        self.root = self.data_dir / "lake"

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    def _rel(self, path: Path) -> str:
        """A local path under data_dir as a key relative to the data root."""
        return Path(path).relative_to(self.data_dir).as_posix()

    # -- directories outside the lake (models/, runs/) on an object store -------------------------
    def publish(self, directory: Path, marker: str | None = MANIFEST) -> None:
        """Upload a finished directory under data_dir (an export, a run) to the bucket, ``marker`` last;
        nothing to do on a local data root."""
        if self.store is not None and Path(directory).is_dir():
            self.store.upload_dir(Path(directory), self._rel(directory), last=marker)

    def fetch(self, directory: Path, marker: str = MANIFEST) -> bool:
        """Make sure this machine has ``directory`` (under data_dir) when the bucket holds it committed
        (its ``marker`` there); returns whether the local directory now holds the marker."""
        directory = Path(directory)
        if self.store is not None and not (directory / marker).is_file() \
                and self.store.exists(f"{self._rel(directory)}/{marker}"):
            self.store.download_dir(self._rel(directory), directory, last=marker)
        return (directory / marker).is_file()

    def fetch_newest(self, parent: Path) -> Path | None:
        """On an object store: the committed directory under ``parent`` (models/<name>/) with the newest
        manifest, fetched; None on a local data root or when the bucket holds none."""
        if self.store is None:
            return None
        rel = self._rel(parent)
        dated = []
        for child in self.store.children(rel):
            if self.store.exists(f"{rel}/{child}/{MANIFEST}"):
                manifest = json.loads(self.store.read_bytes(f"{rel}/{child}/{MANIFEST}"))
                dated.append((str(manifest.get("created_at", "")), child))
        if not dated:
            return None
        newest = Path(parent) / max(dated)[1]
        self.fetch(newest)
        return newest

    def fetch_files(self, directory: Path) -> None:
        """Copy the files the bucket holds under ``directory`` that this machine lacks (a run directory,
        which has no commit marker: its checkpoints are each written whole)."""
        if self.store is None:
            return
        rel = self._rel(directory)
        base = self.store.key(rel)
        for info in self.store.files(rel):
            target = Path(directory) / info.path[len(base) + 1:]
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{secrets.token_hex(3)}.tmp")
                tmp.write_bytes(self.store.read_bytes(f"{rel}/{info.path[len(base) + 1:]}"))
                os.replace(tmp, target)

    # -- locating versions -------------------------------------------------------------------
    def version_dir(self, kind: str, name: str, fp: str) -> Path:
        check_kind(kind)
        check_name(name)
        if not isinstance(fp, str) or not _FP_RE.fullmatch(fp):
            raise ValueError(f"invalid fingerprint {fp!r}")
        path = (self.root / kind / name / fp).resolve()
        # Names are validated above, so this cannot fail; it is the last line of defence anyway.
        if self.root.resolve() not in path.parents:
            raise ValueError(f"dataset path {path} escapes the lake root {self.root}")
        return path

    def handle(self, kind: str, name: str, fp: str) -> DatasetHandle:
        local = self.version_dir(kind, name, fp)
        if self.store is None:
            return DatasetHandle(kind=kind, name=name, fingerprint=fp, uri=str(local))
        return DatasetHandle(kind=kind, name=name, fingerprint=fp, uri=self.store.url(self._rel(local)),
                             mirror=str(local))

    def is_committed(self, kind: str, name: str, fp: str) -> bool:
        """Whether the version exists complete (on an object store: its manifest is in the bucket)."""
        local = self.version_dir(kind, name, fp)
        if self.store is None:
            return (local / MANIFEST).is_file()
        return self.store.exists(f"{self._rel(local)}/{MANIFEST}")

    def find(self, kind: str, name: str, fp: str) -> DatasetHandle | None:
        """The complete version, or None when it does not exist (or is not complete)."""
        return self.handle(kind, name, fp) if self.is_committed(kind, name, fp) else None

    def manifest(self, handle: DatasetHandle) -> dict[str, Any]:
        """A version's manifest, without copying the version (from the mirror when it is there)."""
        if handle.mirror is None or (Path(handle.mirror) / MANIFEST).is_file():
            return read_manifest_path(Path(handle.mirror or handle.path))
        assert self.store is not None
        return json.loads(self.store.read_bytes(f"{self._rel(Path(handle.mirror))}/{MANIFEST}"))

    def _fingerprints(self, kind: str, name: str) -> list[str]:
        """Fingerprint-named entries of a dataset, committed or not."""
        base = self.root / kind / name
        if self.store is not None:
            return [c for c in self.store.children(self._rel(base)) if _FP_RE.fullmatch(c)]
        return [e.name for e in base.iterdir() if _FP_RE.fullmatch(e.name)] if base.is_dir() else []

    def versions(self, kind: str, name: str) -> list[DatasetHandle]:
        """Complete versions of a dataset, oldest first (by manifest creation time)."""
        check_kind(kind)
        check_name(name)
        found = []
        for fp in self._fingerprints(kind, name):
            if self.is_committed(kind, name, fp):
                handle = self.handle(kind, name, fp)
                found.append((self.manifest(handle).get("created_at", ""), handle))
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
        """Datasets of this kind that have at least one complete version."""
        base = self.root / check_kind(kind)
        if self.store is not None:
            candidates = self.store.children(self._rel(base))
        else:
            candidates = [p.name for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
        return sorted(n for n in candidates if _NAME_RE.fullmatch(n)
                      and any(self.is_committed(kind, n, fp) for fp in self._fingerprints(kind, n)))

    def sweep(self, stale_after_s: float = 3600.0, dataset: tuple[str, str] | None = None) -> list[str]:
        """Remove temporary version directories of dead runs on this host anywhere in the lake, and
        dataset directories that are left empty. On an object store, also the version prefixes without a
        manifest whose newest object is older than ``stale_after_s`` (a writer elsewhere may still be
        uploading a younger one): of one ``(kind, name)`` only when ``dataset`` names it (what a write does,
        so that it lists one dataset, not the whole bucket). Returns the object-store prefixes removed."""
        removed: list[str] = []
        if self.store is not None:
            for kind in KINDS if dataset is None else (dataset[0],):
                names = self.store.children(self._rel(self.root / kind)) if dataset is None else [dataset[1]]
                for name in names:
                    removed += self.store.sweep(self._rel(self.root / kind / name), stale_after_s)
        for kind in KINDS:
            base = self.root / kind
            for entry in base.iterdir() if base.is_dir() else []:
                if entry.is_dir():
                    sweep_stale_temporaries(entry)
                    _remove_if_empty(entry)
        return removed

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
        self.sweep(dataset=(kind, name))
        tmp = final.parent / f".tmp-{fp}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        tmp.mkdir(parents=True)  # parents: a concurrent sweep may have removed an empty dataset directory
        writer = VersionWriter(self.handle(kind, name, fp), tmp, final, self)
        try:
            yield writer
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if not writer.committed:
                _remove_if_empty(final.parent)  # a failed first version leaves no dataset behind


class VersionWriter:
    """Files go into ``tmp``; ``commit(manifest)`` writes the manifest last and renames."""

    def __init__(self, handle: DatasetHandle, tmp: Path, final: Path, lake: Lake | None = None):
        self.handle = handle
        self.lake = lake
        self.tmp = tmp
        self.final = final
        self.committed = False
        self.catalog_status: str | None = None  # "indexed" or "deferred" once committed with a catalog

    def path(self, relative: str) -> Path:
        target = self.tmp / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def commit(self, manifest: dict[str, Any], catalog: Catalog | None = None) -> DatasetHandle:
        """Write the manifest, rename into place and, given a catalog, register the version there.

        Commit and registration are one unit: when registration fails (a full disk, say), the rename
        is undone, so the lake and the catalog are both as they were. A busy catalog is no failure:
        registration is deferred (``catalog_status == "deferred"``)."""
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
        store = self.lake.store if self.lake is not None else None
        uploaded = False
        if store is not None:
            # The bucket is the truth: files under the final prefix, the manifest last, as the commit
            # marker. Another run that committed this fingerprint first made the same content: keep theirs.
            rel = self.lake._rel(self.final)  # type: ignore[union-attr]
            if not store.exists(f"{rel}/{MANIFEST}"):
                store.upload_dir(self.tmp, rel)
                uploaded = True
        ours = True
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            # Another run committed the same fingerprint first: same inputs, same config, same
            # content. Keep theirs.
            if not (self.final / MANIFEST).is_file():
                raise
            ours = False
        if catalog is not None:
            try:
                self.catalog_status = catalog.register(self.handle)
            except BaseException:
                if uploaded:
                    store.delete_dir(rel)  # type: ignore[union-attr]  # manifest first: no reader sees it
                if ours:
                    os.rename(self.final, self.tmp)  # un-commit; the writer removes tmp
                raise
        self.committed = True
        return self.handle


def read_manifest_path(version_dir: Path) -> dict[str, Any]:
    with open(version_dir / MANIFEST, encoding="utf-8") as f:
        return json.load(f)


def read_manifest(handle: DatasetHandle) -> dict[str, Any]:
    """A version's manifest (on an object-store lake this copies the version to the mirror; a
    :class:`Lake`'s ``manifest()`` reads the manifest alone)."""
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


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty (or already gone): keep it


OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}
_OUT_OF_SPACE_TEXT = ("no space left on device", "disk quota exceeded", "os error 28", "errno 28")
_QUOTED_PATH = re.compile(r"""["'](/[^"']+)["']""")


def out_of_space(exc: BaseException) -> tuple[bool, str | None]:
    """Whether ``exc`` (or an exception it was raised from) is a full disk or an exhausted quota, and
    the path it names if any. Looks at errno and, for libraries that only say it in words (pyarrow,
    DuckDB, tokenizers), at the message."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if (isinstance(current, OSError) and current.errno in OUT_OF_SPACE) or \
                any(t in text.lower() for t in _OUT_OF_SPACE_TEXT):
            path = getattr(current, "filename", None)
            if path is None and (match := _QUOTED_PATH.search(text)):
                path = match.group(1)
            return True, None if path is None else str(path)
        current = current.__cause__ or current.__context__
    return False, None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
