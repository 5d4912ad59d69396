"""The model registry: versions, evaluations, lineage, aliases with gated promotion (no Prefect import)."""
