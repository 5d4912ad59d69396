"""Model references: ``name`` (newest), ``name@v3``, ``name@<alias>``, ``name@<version id>``; and looking
versions up in the registry's tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bertplat.catalog import Catalog
from bertplat.lake import MANIFEST, Lake, check_name
from bertplat.paths import PACKAGE_PREFIX, resolve_package_path

NUMBER_RE = re.compile(r"v([0-9]+)")
VERSION_ID_RE = re.compile(r"[0-9a-f]{16}")


class ModelNotFound(LookupError, ValueError):
    """A model name, version or alias the registry does not hold; the message lists what it does hold."""


class VersionRow(BaseModel):
    """One registered version, as ``registry_versions`` holds it."""

    name: str
    version_id: str
    number: int
    path: Path
    origin: str
    source_path: str | None = None
    task_type: str | None = None
    registered_at: Any = None
    registered_by: str | None = None
    run_dir: str | None = None
    config: Any = None
    provenance: Any = None

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.number}"


_COLUMNS = list(VersionRow.model_fields)


def check_alias(alias: str) -> str:
    """An alias: a name (letters, digits, '_', '-') that cannot be read as a version number or id."""
    try:
        check_name(alias)
    except ValueError:
        raise ValueError(f"invalid alias {alias!r}: use 1-64 letters, digits, '_' or '-' (e.g. production, "
                         "staging)") from None
    if NUMBER_RE.fullmatch(alias) or VERSION_ID_RE.fullmatch(alias):
        raise ValueError(f"invalid alias {alias!r}: it reads as a version ({'v3' if alias.startswith('v') else 'an id'}"
                         "); pick a word such as staging or production")
    return alias


def split_ref(ref: str) -> tuple[str, str]:
    """``name@spec`` -> (name, spec); spec is '' for the newest version."""
    name, _, spec = str(ref).partition("@")
    return name, spec


def fetch_versions(con: Any, name: str | None = None) -> list[VersionRow]:
    sql = f"SELECT {', '.join(_COLUMNS)} FROM registry_versions" + (" WHERE name = ?" if name else "") + \
        " ORDER BY name, number"
    return [VersionRow(**dict(zip(_COLUMNS, r))) for r in con.execute(sql, [name] if name else []).fetchall()]


def find_version(con: Any, ref: str) -> VersionRow:
    """The version ``ref`` names, or :class:`ModelNotFound` saying what exists."""
    name, spec = split_ref(ref)
    versions = fetch_versions(con, name)
    if not versions:
        known = [r[0] for r in con.execute("SELECT name FROM registry_models ORDER BY 1").fetchall()]
        raise ModelNotFound(f"no registered model named {name!r}; registered models: {', '.join(known) or 'none'} "
                            "(`bertplat models list`). Register one by fine-tuning or pretraining it with "
                            "registration on, or import a Hugging Face directory")
    if not spec:
        return versions[-1]
    if match := NUMBER_RE.fullmatch(spec):
        found = [v for v in versions if v.number == int(match.group(1))]
    elif VERSION_ID_RE.fullmatch(spec):
        found = [v for v in versions if v.version_id == spec]
    else:
        held = con.execute("SELECT version_id FROM registry_aliases WHERE name = ? AND alias = ?",
                           [name, spec]).fetchall()
        found = [v for v in versions if held and v.version_id == held[0][0]]
    if not found:
        aliases = con.execute("SELECT alias, version_id FROM registry_aliases WHERE name = ? ORDER BY 1",
                              [name]).fetchall()
        numbers = {v.version_id: v.number for v in versions}
        alias_text = ", ".join(f"{a} (v{numbers.get(vid, '?')})" for a, vid in aliases) or "none"
        raise ModelNotFound(f"model {name!r} has no version or alias {spec!r}: its versions are "
                            f"{', '.join(f'v{v.number} ({v.version_id})' for v in versions)}; its aliases: "
                            f"{alias_text}. Name one of those (NAME, NAME@vN, NAME@ALIAS or NAME@VERSION_ID)")
    return found[0]


def has_registry(con: Any) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'registry_versions'"
                            ).fetchall()[0][0])


def resolve_reference(ref: str, lake: Lake, catalog: Catalog) -> Path | None:
    """The version directory of a registry reference (``name``, ``name@vN``, ``name@<alias>``,
    ``name@<version id>``), or None when ``ref`` is not one: an existing directory, a ``package:`` path, or
    a name the registry does not know (so the caller can try other meanings). A registered model with an
    unknown version or alias raises :class:`ModelNotFound`; a version whose directory is gone raises
    FileNotFoundError."""
    text = str(ref)
    if text.startswith(PACKAGE_PREFIX) or Path(text).is_dir() or "/" in text:
        return None
    name, _ = split_ref(text)
    try:
        check_name(name)
    except ValueError:
        return None
    if not catalog.path.exists():
        return None
    with catalog.connect(read_only=True) as con:
        if not has_registry(con) or not con.execute("SELECT count(*) FROM registry_versions WHERE name = ?",
                                                    [name]).fetchall()[0][0]:
            return None
        version = find_version(con, text)
    if not version.path.is_dir():
        raise FileNotFoundError(f"{version.label} ({version.version_id}) is registered at {version.path}, which is "
                                "gone; `bertplat models verify` lists every version whose files changed")
    return version.path


def resolve_model(ref: str | Path, lake: Lake, catalog: Catalog | None = None) -> Path:
    """A model directory (``package:PACKAGE/DIR`` inside an installed package too), a registry reference
    (``name@production``, ``name@v3``, ``name@<version id>``, ``name``: its newest registered version), or
    NAME / NAME@FINGERPRINT under <data_dir>/models (newest export for NAME)."""
    path = Path(resolve_package_path(str(ref)))
    if path.is_dir():
        return path
    catalog = catalog or Catalog(lake.data_dir / "catalog.duckdb", lake)
    registered = resolve_reference(str(ref), lake, catalog)
    if registered is not None:
        return registered
    name, _, fp = str(ref).partition("@")
    base = lake.data_dir / "models" / name
    if fp:
        if lake.fetch(base / fp):  # on an object store: from the bucket
            return base / fp
    elif (newest := lake.fetch_newest(base)) is not None:
        return newest
    elif base.is_dir():
        found = sorted((d for d in base.iterdir() if (d / MANIFEST).is_file()), key=lambda d: (d / MANIFEST).stat().st_mtime)
        if found:
            return found[-1]
    raise ValueError(f"{ref} is neither a model directory, a registered model (bertplat models list) nor a model "
                     f"NAME[@FINGERPRINT] under {lake.data_dir / 'models'}")
