"""ModelConfig: presets, validation messages, JSON round trip, FLOP counting."""

from __future__ import annotations

import pytest

from bertplat.model import BertPretrainingModel, ModelConfig
from tests.model.helpers import tiny_config


@pytest.mark.parametrize(("name", "layers", "hidden", "heads", "ffn"), [
    ("tiny", 2, 128, 2, 512), ("mini", 4, 256, 4, 1024), ("small", 4, 512, 8, 2048),
    ("medium", 8, 512, 8, 2048), ("base", 12, 768, 12, 3072), ("large", 24, 1024, 16, 4096),
])
def test_bert_presets(name, layers, hidden, heads, ffn):
    c = ModelConfig.preset(name, vocab_size=30522)
    assert (c.arch, c.num_layers, c.hidden_size, c.num_heads, c.intermediate_size) == ("bert", layers, hidden, heads, ffn)
    assert c.embedding_dim == hidden and not c.share_layers


def test_albert_preset_and_overrides():
    c = ModelConfig.preset("albert-base", vocab_size=30000, unpad=False)
    assert (c.arch, c.embedding_dim, c.hidden_size, c.share_layers, c.hidden_act) == ("albert", 128, 768, True, "gelu_new")
    assert c.unpad is False and c.vocab_size == 30000


def test_unknown_preset_lists_choices():
    with pytest.raises(ValueError, match="unknown model preset 'huge'.*tiny, mini"):
        ModelConfig.preset("huge", vocab_size=100)


@pytest.mark.parametrize(("changes", "message"), [
    (dict(hidden_size=100, num_heads=3), "not divisible by num_heads 3"),
    (dict(embedding_size=32), "needs arch='albert'"),
    (dict(share_layers=True), "share_layers=True needs arch='albert'"),
    (dict(hidden_dropout=1.0), "hidden_dropout must be a probability"),
    (dict(pad_token_id=97), "pad_token_id must be an id in \\[0, vocab_size=97\\)"),
    (dict(hidden_act="relu"), "hidden_act must be one of"),
    (dict(num_layers=0), "num_layers must be a positive integer"),
])
def test_validation_messages(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_unknown_arch():
    with pytest.raises(ValueError, match="arch must be one of \\('bert', 'albert'\\), got 'roberta'"):
        ModelConfig(arch="roberta")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as info:
        tiny_config(hidden_size=100, num_heads=3, hidden_act="relu")
    assert "num_heads" in str(info.value) and "hidden_act" in str(info.value)


def test_json_round_trip_and_file_errors(tmp_path):
    c = tiny_config("albert", pre_ln=True)
    c.to_file(tmp_path / "config.json")
    assert ModelConfig.from_file(tmp_path / "config.json") == c
    with pytest.raises(ValueError, match="unknown ModelConfig field.*'hiden_size'"):
        ModelConfig.from_dict({**c.to_dict(), "hiden_size": 3})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        ModelConfig.from_file(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="missing.json does not exist"):
        ModelConfig.from_file(tmp_path / "missing.json")


def test_frozen():
    c = tiny_config()
    with pytest.raises(AttributeError):
        c.hidden_size = 3  # type: ignore[misc]
    assert c.replace(hidden_size=32, num_heads=2).hidden_size == 32


def test_layer_params_counts_the_real_layer():
    for config in (tiny_config(), tiny_config("albert")):
        layer = BertPretrainingModel(config).backbone.layers[0]
        assert config.layer_params() == sum(p.numel() for p in layer.parameters())


def test_flops_per_token_by_hand():
    c = ModelConfig.preset("tiny", vocab_size=1000)  # L=2, H=128, I=512
    layer = (3 * 128 * 128 + 3 * 128) + (128 * 128 + 128) + (2 * 128 * 512 + 512 + 128) + 4 * 128  # 198272
    assert c.flops_per_token(128) == 6 * 2 * layer + 12 * 2 * 128 * 128  # 2772480
    head = 128 * 128 + 128 + 128 * 1000
    assert c.flops_per_token(128, masked_fraction=0.15) == pytest.approx(2772480 + 6 * 0.15 * head)
    shared = ModelConfig.preset("albert-base", vocab_size=1000)
    # a shared layer still costs its FLOPs at each of the 12 applications, plus the 128 -> 768 projection
    assert shared.flops_per_token(1) == 6 * (12 * shared.layer_params() + 128 * 768 + 768) + 12 * 12 * 768
    with pytest.raises(ValueError, match="seq_len must be positive"):
        c.flops_per_token(0)
