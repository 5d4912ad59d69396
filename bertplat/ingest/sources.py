"""Finding input files, opening them through any compression, and recognising their format.

Sources are files, directories (walked recursively, in sorted order, following symbolic links) and
glob patterns. Each file gets a *relative name* (``<source basename>/<path inside it>``) that
identifies it in provenance columns and fingerprints independently of where the data sits on this
machine. A symbolic link inside a directory that loops (to itself, or to a directory above it) or
points nowhere becomes a reject naming the link; the rest of the directory is read.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from bertplat.lake import sha256_file
from bertplat.paths import resolve_package_path

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC = [(b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd")]
_EXTENSION_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                      ".parquet": "parquet", ".pq": "parquet"}
_TEXT_EXTENSIONS = {".txt", ".text"}


class SourceError(ValueError):
    """A source path that cannot be used at all (missing, unreadable, matches nothing)."""


@dataclass(frozen=True)
class InputFile:
    path: str        # absolute path on this machine
    relname: str     # '<source basename>/<path inside the source>', stable across machines
    source: str      # the source argument's display name
    size: int
    sha256: str = ""
    reject_reason: str = ""   # set when the file is known to be unusable before it is opened
    reject_detail: str = ""   # (a symbolic link loop, a broken link): the worker reports it as a reject

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
            bad = path if isinstance(path, _BadLink) else None
            if bad is None:
                real = os.path.realpath(path)
                if real in seen:
                    continue  # the same file named twice (overlapping globs) is read once
                seen.add(real)
                try:
                    size = os.stat(path).st_size
                except OSError as exc:
                    if (bad := _bad_link(path)) is None:
                        raise SourceError(f"cannot stat {path}: {exc.strerror}") from None
            if bad is not None:
                files.append(InputFile(path=os.path.abspath(bad.path), relname=rel, source=display, size=0,
                                       reject_reason=bad.reason, reject_detail=bad.detail))
            else:
                files.append(InputFile(path=os.path.abspath(path), relname=rel, source=display, size=size))
    return files


@dataclass(frozen=True)
class _BadLink:
    """A symbolic link found in a directory that cannot be read as a file: reported, not fatal."""

    path: str
    reason: str      # a reject reason: 'symlink_loop' or 'unreadable'
    detail: str


def _bad_link(path: str) -> _BadLink | None:
    """Why the symbolic link ``path`` cannot be followed (a loop, or a target that does not exist);
    None when ``path`` is not a link or its target can be stat'ed."""
    if not os.path.islink(path):
        return None
    target = os.readlink(path)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _BadLink(path, "symlink_loop", f"symbolic link loop: {path} -> {target} never reaches a "
                            "file (it leads back to itself, directly or through other links); remove the link "
                            "or point it at a real file")
        if exc.errno == errno.ENOENT:
            return _BadLink(path, "unreadable", f"broken symbolic link: {path} -> {target}, which does not "
                            "exist; remove the link or restore its target")
    return None


def _expand(source: str, include, exclude):
    try:
        src = os.path.expanduser(resolve_package_path(source))
    except FileNotFoundError as exc:
        raise SourceError(str(exc)) from None
    if glob.has_magic(src):
        matches = sorted(p for p in glob.glob(src, recursive=True)
                         if os.path.isfile(p) or _bad_link(p) is not None)
        if not matches:
            raise SourceError(f"the pattern {source!r} matches no files")
        base = _glob_base(src)
        display = source
        for path in matches:
            yield path, _relname(path, base), display
        return
    if not os.path.lexists(src):
        raise SourceError(f"input path {source!r} does not exist")
    if (bad := _bad_link(src)) is not None:
        raise SourceError(f"input path {source!r}: {bad.detail}")
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
        here = os.path.realpath(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        loops = [d for d in dirnames if _links_to_ancestor(os.path.join(dirpath, d), here)]
        dirnames[:] = [d for d in dirnames if d not in loops]   # following them would never end
        for name in sorted(filenames + loops):
            if name.startswith("."):
                continue
            if not any(fnmatch.fnmatch(name, pat) for pat in include):
                continue
            if any(fnmatch.fnmatch(name, pat) for pat in exclude):
                continue
            path = os.path.join(dirpath, name)
            if name in loops:
                yield _BadLink(path, "symlink_loop", f"symbolic link loop: {path} -> {os.readlink(path)} "
                               f"is the directory {os.path.realpath(path)}, which contains the link itself; "
                               "it was not followed (remove the link, or --exclude it)")
            else:
                yield _bad_link(path) or path


def _links_to_ancestor(path: str, real_parent: str) -> bool:
    """``path`` is a symbolic link to its own directory or to one above it."""
    if not os.path.islink(path):
        return False
    target = os.path.realpath(path)
    return real_parent == target or real_parent.startswith(target.rstrip(os.sep) + os.sep)


def _glob_base(pattern: str) -> str:
    """The directory above the first path component with a wildcard."""
    parts = Path(os.path.abspath(pattern)).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.path.dirname(os.path.join(*fixed)) if fixed else "/"


def _relname(path: str | _BadLink, base: str) -> str:
    path = path.path if isinstance(path, _BadLink) else path
    return os.path.relpath(os.path.abspath(path), base).replace(os.sep, "/")


def hash_inputs(files: list[InputFile]) -> list[InputFile]:
    """The same files with their content hashes filled in (streamed, a few GB/s)."""
    out = []
    for f in files:
        if f.reject_reason:
            out.append(replace(f, sha256=f"rejected:{f.reject_reason}"))
            continue
        try:
            digest = sha256_file(f.path)
        except FileNotFoundError:
            raise SourceError(f"input file {f.path} disappeared while reading the inputs") from None
        except OSError as exc:
            # Unreadable (permissions, a device, an I/O error): the worker reports it as a reject.
            digest = f"unreadable:{exc.errno}"
        out.append(replace(f, sha256=digest))
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
    if suffix in _TEXT_EXTENSIONS:   # the name says text: '{' or '<doc ' at the start is just text
        return "gutenberg" if looks_like_gutenberg(head) else "text"
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
