"""Finding input files, opening them through any compression, and recognising their format.

Sources are files, directories (walked recursively, in sorted order) and glob patterns. Each file
gets a *relative name* (``<source basename>/<path inside it>``) that identifies it in provenance
columns and fingerprints independently of where the data sits on this machine.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bertplat.lake import sha256_file

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC = [(b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd")]
_EXTENSION_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                      ".parquet": "parquet", ".pq": "parquet"}


class SourceError(ValueError):
    """A source path that cannot be used at all (missing, unreadable, matches nothing)."""


@dataclass(frozen=True)
class InputFile:
    path: str        # absolute path on this machine
    relname: str     # '<source basename>/<path inside the source>', stable across machines
    source: str      # the source argument's display name
    size: int
    sha256: str = ""

    def describe(self) -> dict:
        return {"path": self.path, "name": self.relname, "source": self.source, "bytes": self.size,
                "sha256": self.sha256}


def resolve_sources(sources: list[str], include: tuple[str, ...] = ("*",), exclude: tuple[str, ...] = ()
                    ) -> list[InputFile]:
    """Expand sources into files, in argument order then sorted path order. A missing path, an
    unreadable directory or a glob that matches nothing is an immediate error."""
    if not sources:
        raise SourceError("no input paths given")
    files: list[InputFile] = []
    seen: set[str] = set()
    for source in sources:
        for path, rel, display in _expand(source, include, exclude):
            real = os.path.realpath(path)
            if real in seen:
                continue  # the same file named twice (overlapping globs) is read once
            seen.add(real)
            try:
                size = os.stat(path).st_size
            except OSError as exc:
                raise SourceError(f"cannot stat {path}: {exc.strerror}") from None
            files.append(InputFile(path=os.path.abspath(path), relname=rel, source=display, size=size))
    return files


def _expand(source: str, include, exclude):
    src = os.path.expanduser(source)
    if glob.has_magic(src):
        matches = sorted(p for p in glob.glob(src, recursive=True) if os.path.isfile(p))
        if not matches:
            raise SourceError(f"the pattern {source!r} matches no files")
        base = _glob_base(src)
        display = source
        for path in matches:
            yield path, _relname(path, base), display
        return
    if not os.path.lexists(src):
        raise SourceError(f"input path {source!r} does not exist")
    if os.path.isdir(src):
        base = os.path.dirname(os.path.abspath(src.rstrip("/")))
        display = os.path.basename(os.path.abspath(src.rstrip("/")))
        found = False
        for path in _walk(src, include, exclude):
            found = True
            yield path, _relname(path, base), display
        if not found:
            raise SourceError(f"the directory {source!r} holds no files matching {list(include)}")
        return
    if not os.access(src, os.R_OK):
        raise SourceError(f"input file {source!r} is not readable (permission denied); fix its permissions")
    yield src, os.path.basename(src), os.path.basename(src)


def _walk(root: str, include, exclude):
    def onerror(exc: OSError):
        raise SourceError(f"cannot read directory {exc.filename}: {exc.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if not any(fnmatch.fnmatch(name, pat) for pat in include):
                continue
            if any(fnmatch.fnmatch(name, pat) for pat in exclude):
                continue
            yield os.path.join(dirpath, name)


def _glob_base(pattern: str) -> str:
    """The directory above the first path component with a wildcard."""
    parts = Path(os.path.abspath(pattern)).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.path.dirname(os.path.join(*fixed)) if fixed else "/"


def _relname(path: str, base: str) -> str:
    return os.path.relpath(os.path.abspath(path), base).replace(os.sep, "/")


def hash_inputs(files: list[InputFile]) -> list[InputFile]:
    """The same files with their content hashes filled in (streamed, a few GB/s)."""
    out = []
    for f in files:
        try:
            digest = sha256_file(f.path)
        except FileNotFoundError:
            raise SourceError(f"input file {f.path} disappeared while reading the inputs") from None
        except OSError as exc:
            # Unreadable (permissions, a device, an I/O error): the worker reports it as a reject.
            digest = f"unreadable:{exc.errno}"
        out.append(InputFile(f.path, f.relname, f.source, f.size, digest))
    return out


# -- recognising ---------------------------------------------------------------------------------
def detect_compression(path: str, head: bytes) -> str | None:
    suffix = Path(path).suffix.lower()
    if suffix in COMPRESSIONS:
        return COMPRESSIONS[suffix]
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def inner_name(path: str) -> str:
    """The file name without its compression suffix: 'wiki.jsonl.gz' -> 'wiki.jsonl'."""
    name = os.path.basename(path)
    stem, suffix = os.path.splitext(name)
    return stem if suffix.lower() in COMPRESSIONS else name


def detect_format(path: str, head: bytes) -> str:
    """The format of one file under ``--format auto``, from its name and (decompressed) first bytes."""
    name = inner_name(path).lower()
    suffix = os.path.splitext(name)[1]
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if suffix in _EXTENSION_FORMATS:
        fmt = _EXTENSION_FORMATS[suffix]
        return "wikiextractor" if fmt == "jsonl" and _is_wikiextractor_json(text) else fmt
    if text.startswith(b"<doc "):
        return "wikiextractor"
    if text.startswith(b"{"):
        return "wikiextractor" if _is_wikiextractor_json(text) else "jsonl"
    if looks_like_gutenberg(head):
        return "gutenberg"
    return "text"


_WIKIEXTRACTOR_JSON = re.compile(rb'^\{"id":\s*"[^"]*",\s*(?:"revid":\s*"[^"]*",\s*)?"url":\s*"[^"]*",\s*"title":')


def _is_wikiextractor_json(text: bytes) -> bool:
    """WikiExtractor --json objects start with id, (revid,) url and title, in that order."""
    return _WIKIEXTRACTOR_JSON.match(text) is not None


def looks_like_gutenberg(head: bytes) -> bool:
    upper = head[:65536].upper()
    return b"PROJECT GUTENBERG" in upper and (b"*** START OF" in upper or b"***START OF" in upper
                                              or b"SMALL PRINT" in upper or b"ETEXT" in upper)
