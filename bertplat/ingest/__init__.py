"""Corpus ingestion: raw files of any common shape to a clean, deduplicated, validated corpus."""

from bertplat.ingest.config import FORMATS, IngestConfig
from bertplat.ingest.readers import REJECT_REASONS
from bertplat.ingest.stage import IngestResult, run_ingest

__all__ = ["FORMATS", "IngestConfig", "IngestResult", "REJECT_REASONS", "run_ingest"]
