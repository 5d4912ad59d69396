"""An S3-compatible bucket as the home of the data root: ``BERTPLAT_DATA_DIR=s3://bucket/prefix``.

The bucket holds the same layout as a local data root (``lake/``, ``models/``, ``runs/``). Stages keep
reading and writing local files: a local *mirror* of the data root (``BERTPLAT_CACHE_DIR``, default
``~/.cache/bertplat/s3/<bucket>/<prefix>``) holds what this machine made or read, and the bucket is the
truth for what exists.

The commit protocol cannot use a directory rename, which object stores do not have. A version is
written under its final prefix, every data file first, and its ``_manifest.json`` last: one PUT, which
S3 makes visible whole or not at all. A prefix without a manifest is not a version to any reader, the
catalog or ``find``; :meth:`ObjectStore.sweep` removes such prefixes once they are older than a grace
period (a writer on another machine may still be uploading one). Versions are content-addressed and
never change once committed, so a mirror copy that holds the manifest is a faithful copy.

Credentials, region and endpoint come from the usual AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible servers). The client is
pyarrow's own ``S3FileSystem``: no other dependency.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

MANIFEST = "_manifest.json"
SCHEMES = ("s3://",)
_CHUNK = 8 << 20


class ObjectStoreError(RuntimeError):
    """The bucket cannot be reached or used; the message says which bucket, where and what to check."""


def is_object_uri(uri: str) -> bool:
    return str(uri).startswith(SCHEMES)


def mirror_dir(data_dir: str, cache_dir: str | None = None) -> Path:
    """The local mirror of an object-store data root."""
    parsed = urlparse(data_dir)
    base = Path(cache_dir).expanduser() if cache_dir else Path.home() / ".cache" / "bertplat" / parsed.scheme
    return (base / parsed.netloc / parsed.path.strip("/")).resolve()


def _endpoint() -> tuple[str | None, str | None]:
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        return None, None
    parsed = urlparse(url if "://" in url else f"https://{url}")
    return parsed.netloc, parsed.scheme


@functools.lru_cache(maxsize=16)
def _filesystem(endpoint: str | None, scheme: str | None, region: str) -> pafs.S3FileSystem:
    # credentials: pyarrow reads the standard AWS chain (variables, ~/.aws, instance roles) itself
    return pafs.S3FileSystem(region=region, endpoint_override=endpoint, scheme=scheme or "https",
                             allow_bucket_creation=False, check_directory_existence_before_creation=False,
                             retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=5))


class ObjectStore:
    """The data root ``s3://bucket/prefix``: keys are paths relative to it (``lake/corpus/x/<fp>``)."""

    def __init__(self, uri: str):
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"data_dir {uri!r}: an object-store data root is s3://BUCKET[/PREFIX]")
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        endpoint, scheme = _endpoint()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.endpoint = endpoint
        self.fs = _filesystem(endpoint, scheme, region)

    def __reduce__(self):  # workers rebuild the client from the URI and their own environment
        return (ObjectStore, (self.uri,))

    # -- names -----------------------------------------------------------------------------------
    def key(self, rel: str | os.PathLike[str]) -> str:
        rel = str(rel).strip("/")
        return "/".join(p for p in (self.bucket, self.prefix, rel) if p)

    def url(self, rel: str | os.PathLike[str]) -> str:
        return "s3://" + self.key(rel)

    def _fail(self, what: str, exc: BaseException) -> ObjectStoreError:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return ObjectStoreError(
            f"object store s3://{self.bucket}{where}: {what} failed: {exc}. Check that the bucket exists, that "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for MinIO or another S3-compatible "
            "server) are set, and that the server is reachable")

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._fail(what, exc) from exc

    def check(self) -> None:
        """Fail now, saying what to do, when the bucket is missing or the server cannot be reached."""
        info = self._call(f"looking up the bucket {self.bucket}", self.fs.get_file_info, self.bucket)
        if info.type == pafs.FileType.NotFound:
            where = f" at {self.endpoint}" if self.endpoint else ""
            raise ObjectStoreError(f"object store s3://{self.bucket}{where}: the bucket does not exist. Create it "
                                   f"(aws s3 mb s3://{self.bucket}, or mc mb for MinIO), or point BERTPLAT_DATA_DIR "
                                   "at a bucket that exists")

    # -- reading ---------------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        info = self._call(f"looking up {self.url(rel)}", self.fs.get_file_info, self.key(rel))
        return info.type == pafs.FileType.File

    def read_bytes(self, rel: str) -> bytes:
        with self._call(f"reading {self.url(rel)}", self.fs.open_input_stream, self.key(rel)) as f:
            return f.read()

    def children(self, rel: str) -> list[str]:
        """Names of the immediate 'directories' under ``rel`` (common prefixes)."""
        infos = self._call(f"listing {self.url(rel)}", self.fs.get_file_info,
                           pafs.FileSelector(self.key(rel), recursive=False, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def files(self, rel: str) -> list[pafs.FileInfo]:
        """Every object under ``rel``, recursively; ``path`` relative to ``rel``."""
        base = self.key(rel)
        infos = self._call(f"listing {self.url(rel)}", self.fs.get_file_info,
                           pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return [i for i in infos if i.type == pafs.FileType.File]

    def download_dir(self, rel: str, local: Path, last: str = MANIFEST) -> Path:
        """Copy the version at ``rel`` to ``local``, unless ``local`` already holds its ``last`` file: into a
        temporary sibling, ``last`` after everything else, then renamed into place (readers of the mirror
        see the whole version or none)."""
        local = Path(local)
        if (local / last).is_file():
            return local
        base = self.key(rel)
        infos = self.files(rel)
        if not any(i.path == f"{base}/{last}" for i in infos):
            raise FileNotFoundError(f"{self.url(rel)} holds no {last}: it is not a committed version")
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.download-{os.getpid()}-{time.monotonic_ns()}")
        try:
            ordered = sorted(infos, key=lambda i: (i.path.endswith("/" + last), i.path))
            for info in ordered:
                target = tmp / info.path[len(base) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                with self._call(f"reading {info.path}", self.fs.open_input_stream, info.path) as src, \
                        open(target, "wb") as dst:
                    while block := src.read(_CHUNK):
                        dst.write(block)
            if local.exists():  # an incomplete local copy (no manifest): replace it
                shutil.rmtree(local)
            os.rename(tmp, local)
        except FileExistsError:
            pass  # another process mirrored it first: same content
        except OSError as exc:
            if not (local / last).is_file():
                raise
            del exc  # lost a race to a concurrent download
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return local

    # -- writing ---------------------------------------------------------------------------------
    def put_file(self, local: Path, rel: str) -> None:
        with open(local, "rb") as src, self._call(f"writing {self.url(rel)}", self.fs.open_output_stream,
                                                  self.key(rel)) as dst:
            while block := src.read(_CHUNK):
                dst.write(block)

    def upload_dir(self, local: Path, rel: str, last: str | None = MANIFEST) -> None:
        """Upload every file under ``local`` to ``rel``; ``last`` (the commit marker) after all others.
        Objects under ``rel`` that ``local`` does not hold (a killed earlier attempt's) are deleted before
        the marker is written, so a committed prefix holds exactly the version."""
        local = Path(local)
        files = sorted(p for p in local.rglob("*") if p.is_file())
        names = {p.relative_to(local).as_posix() for p in files}
        base = self.key(rel)
        stale = [i.path for i in self.files(rel) if i.path[len(base) + 1:] not in names]
        if stale:
            self._call(f"removing stale objects under {self.url(rel)}", self.fs.delete_file, stale[0])
            for path in stale[1:]:
                self._call(f"removing {path}", self.fs.delete_file, path)
        marker = local / last if last else None
        for path in files:
            if path != marker:
                self.put_file(path, f"{rel}/{path.relative_to(local).as_posix()}")
        if marker is not None and marker.is_file():
            self.put_file(marker, f"{rel}/{last}")

    def delete_dir(self, rel: str, first: str | None = MANIFEST) -> None:
        """Remove everything under ``rel``, the commit marker ``first`` so no reader sees a half-deleted
        version."""
        if first:
            try:
                self._call(f"removing {self.url(rel)}/{first}", self.fs.delete_file, f"{self.key(rel)}/{first}")
            except FileNotFoundError:
                pass
        for info in self.files(rel):
            try:
                self._call(f"removing {info.path}", self.fs.delete_file, info.path)
            except FileNotFoundError:
                pass

    def sweep(self, rel: str, stale_after_s: float) -> list[str]:
        """Remove the version prefixes directly under ``rel`` that hold no manifest and whose newest object
        is older than ``stale_after_s``: what killed runs left. Returns the removed prefixes."""
        removed = []
        now = time.time()
        for child in self.children(rel):
            if self.exists(f"{rel}/{child}/{MANIFEST}"):
                continue  # committed: one request, not a listing of the version
            infos = self.files(f"{rel}/{child}")
            if not infos:
                continue
            newest = max(i.mtime.timestamp() for i in infos if i.mtime is not None)
            if now - newest >= stale_after_s:
                self.delete_dir(f"{rel}/{child}", first=None)
                removed.append(f"{rel}/{child}")
        return removed

