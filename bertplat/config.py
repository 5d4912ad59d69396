"""The base of every stage config: frozen, strict, documented, loadable from YAML, fingerprintable.

A stage config is validated in full before any work starts. The config that produced a dataset is
saved in its manifest, and its canonical JSON is part of the dataset's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

C = TypeVar("C", bound="StageConfig")


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message says which and why."""


class StageConfig(BaseModel):
    """Base class: frozen, unknown keys are an error, every field carries a description."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @classmethod
    def from_yaml(cls: type[C], path: str | Path, **overrides: Any) -> C:
        """Load a YAML file, apply ``overrides`` (those not None) on top, and validate the whole."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of options, not {type(data).__name__}")
        return cls.build(data, overrides, source=str(path))

    @classmethod
    def build(cls: type[C], base: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
              source: str = "options") -> C:
        """Validate ``base`` updated with the non-None ``overrides``; errors name every bad field."""
        data = dict(base or {})
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"invalid {cls.__name__} in {source}:"]
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(top level)"
                lines.append(f"  {where}: {err['msg']} (got {err.get('input')!r})")
            raise ConfigError("\n".join(lines)) from None

    def canonical_json(self) -> str:
        """Key-sorted JSON of every field, defaults included: the config's part of a fingerprint."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def describe_fields(cls: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(name, default, description) for every field: the source of the README's config reference."""
    rows = []
    for name, field in cls.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((name, default, field.description or ""))
    return rows
