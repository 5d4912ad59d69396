"""The embed flow on a real (temporary) Prefect server: an embeddings dataset and its summary artifact."""

from __future__ import annotations

import asyncio

import pytest

from bertplat.embed import EmbedConfig
from tests.embed.conftest import make_corpus, minilm_dir, tiny_model  # noqa: F401, F811  (fixtures used by name)

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_the_embed_flow_writes_embeddings_and_publishes_counts_throughput_and_a_pca_plot(data_dir, tiny_model):  # noqa: F811
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.embed import EmbedParams, embed_flow

    make_corpus(data_dir.parent, "demo", n=120)
    handle = embed_flow(EmbedParams(model=str(tiny_model), source="demo", name="demo",
                                    options=EmbedConfig(threads=1)))
    assert handle.kind == "embeddings" and (handle.path / "_report" / "pca.png").is_file()

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["embed-demo"])))

    found = asyncio.run(artifacts())
    assert found and "rows/s" in found[0].data and "data:image/png;base64" in found[0].data
