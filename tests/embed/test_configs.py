"""Every preset in configs/embed/ is a valid EmbedConfig; fields are documented."""

from __future__ import annotations

import pytest

from bertplat.embed import EmbedConfig
from bertplat.embed.config import EXECUTION_FIELDS
from tests.conftest import REPO


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "embed").glob("*.yaml")), ids=lambda p: p.name)
def test_embed_presets_load(path):
    EmbedConfig.from_yaml(path)


def test_every_field_is_described_and_execution_fields_stay_out_of_the_fingerprint():
    assert all(f.description for f in EmbedConfig.model_fields.values())
    assert EmbedConfig(threads=1, max_tokens=4096).content_json() == EmbedConfig().content_json()
    assert EmbedConfig(pooling="cls").content_json() != EmbedConfig().content_json()
    assert EXECUTION_FIELDS <= set(EmbedConfig.model_fields)
