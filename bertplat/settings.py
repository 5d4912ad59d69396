"""Process-wide settings: where the data lake lives, where the catalog is, how loud to log.

Read from the environment (prefix ``BERTPLAT_``) or a ``.env`` file by the CLI and the flows, then
passed to stage code explicitly; stage code itself never reads the environment.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def is_local_uri(uri: str) -> bool:
    """True for plain paths and ``file://`` URIs; False for object stores (``s3://`` and friends)."""
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    """The local filesystem path of a plain path or ``file://`` URI."""
    if not is_local_uri(uri):
        raise ValueError(f"{uri!r} is not on the local filesystem")
    return Path(uri.removeprefix("file://")).expanduser().resolve()


class Settings(BaseSettings):
    """bertplat's settings. Every field can be set as ``BERTPLAT_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="BERTPLAT_", env_file=".env", extra="ignore", frozen=True)

    data_dir: str = Field(
        default="./data",
        description="Root of the data lake: a local path, or an S3-compatible bucket as s3://BUCKET[/PREFIX] "
        "(credentials and endpoint from the usual AWS_* variables). Datasets live under <data_dir>/lake, "
        "exports under <data_dir>/models, training runs under <data_dir>/runs.",
    )
    cache_dir: str | None = Field(
        default=None,
        description="With an s3:// data_dir: the local mirror that stages read and write (default "
        "~/.cache/bertplat/s3/<bucket>/<prefix>). Ignored for a local data_dir.",
    )
    catalog_path: str | None = Field(
        default=None,
        description="The DuckDB catalog file. Default: <data_dir>/catalog.duckdb for a local data_dir, the "
        "mirror's catalog.duckdb for an s3:// one (DuckDB needs a local file; `bertplat catalog rebuild` "
        "indexes the bucket on any machine).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Level of bertplat's own loggers."
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: str) -> str:
        # A relative path is resolved once, here, so that every later step agrees on it.
        return str(local_path(value)) if is_local_uri(value) else value.rstrip("/")

    @property
    def catalog_file(self) -> Path:
        if self.catalog_path:
            return local_path(self.catalog_path)
        if is_local_uri(self.data_dir):
            return local_path(self.data_dir) / "catalog.duckdb"
        from bertplat.objectstore import mirror_dir

        return mirror_dir(self.data_dir, self.cache_dir) / "catalog.duckdb"

    def configure_logging(self) -> None:
        """Send bertplat's log records to stderr at the configured level (CLI use)."""
        logger = logging.getLogger("bertplat")
        logger.setLevel(self.log_level)
        if not logger.handlers:
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
            logger.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (as logging's last-resort handler),
    not to the stream of when it was made: a replaced or closed stderr never breaks logging."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr
