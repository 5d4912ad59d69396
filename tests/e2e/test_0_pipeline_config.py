"""The pipeline config (bertplat/pipeline.py): presets, overrides and the stages' agreement, checked before any
work. No server: these are plain validation tests."""

from __future__ import annotations

import pytest

from bertplat.config import ConfigError
from bertplat.pipeline import PipelineConfig, load_preset, merge, preset_names


def test_presets_load_and_every_field_can_be_overridden():
    assert {"demo", "tiny"} <= set(preset_names())
    tiny = PipelineConfig.from_preset("tiny")
    assert tiny.pretrain.max_steps == 24 and tiny.vocab.vocab_size == 1024 and tiny.model_name == "tiny-tiny"
    changed = PipelineConfig.model_validate({"preset": "tiny", "pretrain": {"max_steps": 30}, "name": "x1"})
    assert changed.pretrain.max_steps == 30 and changed.pretrain.lr == tiny.pretrain.lr  # nested: field by field
    assert changed.finetuned_name == "x1_demo_topics"
    assert PipelineConfig.from_preset("demo").finetuned_name == "demo_topics"
    for name in preset_names():
        assert load_preset(name), name


def test_merge_keeps_the_base_where_the_form_left_null():
    assert merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": None, "c": 5}, "d": None}) == {"a": {"b": 1, "c": 5},
                                                                                           "d": 3}


def test_a_run_form_filled_with_every_default_takes_the_presets_values():
    """The Prefect UI's custom-run form sends every field at its schema default; picking preset tiny there ran
    'pipeline demo (preset tiny)' with the default ingest options, and every record was rejected."""
    form = PipelineConfig.model_json_schema()  # what the form is built from
    assert form["properties"]["name"]["default"] == "demo"
    defaults = {k: PipelineConfig.model_fields[k].get_default(call_default_factory=True)
                for k in PipelineConfig.model_fields}
    payload = {k: (v.model_dump(mode="json") if hasattr(v, "model_dump") else v) for k, v in defaults.items()}
    for stage in ("pretrain", "finetune"):  # the form leaves out fields whose default is empty
        del payload[stage]["model_overrides"]
    payload.update(preset="tiny", corpus=["slice.json"])
    cfg = PipelineConfig.model_validate(payload)
    tiny = PipelineConfig.from_preset("tiny", corpus=["slice.json"])
    assert cfg == tiny and cfg.name == "tiny" and cfg.ingest.text_field == "extract"
    # an override from code names some fields: those are kept even where they equal the defaults
    floor = PipelineConfig.model_fields["pretrain"].get_default(call_default_factory=True).min_val_mlm_accuracy
    demo = PipelineConfig.from_preset("demo")
    assert demo.pretrain.min_val_mlm_accuracy != floor, "the demo preset must set a floor for this to mean much"
    assert PipelineConfig.from_preset("demo", pretrain={"min_val_mlm_accuracy": floor}
                                      ).pretrain.min_val_mlm_accuracy == floor


@pytest.mark.parametrize("overrides, says", [
    ({"pretrain": {"max_steps": -5}}, "pretrain.max_steps: Input should be greater than or equal to 1"),
    ({"preset": "no-such"}, "unknown pipeline preset 'no-such': choose one of demo"),
    ({"finetune": {"model_overrides": {"vocab_size": 5000}}}, "model_overrides must not set vocab_size"),
    ({"pretrain": {"model_overrides": {"vocab_size": 5000}}}, "model_overrides must not set vocab_size"),
    ({"examples": {"max_seq_length": 1024}}, "examples.max_seq_length=1024 exceeds the model's "
     "max_position_embeddings=512"),
    ({"finetune": {"max_length": 600}, "tasks": {"max_length": 600}}, "finetune.max_length=600 exceeds"),
    ({"finetune": {"model_overrides": {"num_labels": 3}}}, "num_labels=3 disagrees with the 12 labels of task"),
    ({"task": "configs/tasks/nope.yaml"}, "no such task YAML"),
])
def test_disagreeing_or_bad_configs_are_refused_with_what_to_change(overrides, says):
    with pytest.raises(ConfigError) as err:
        PipelineConfig.build({"preset": "tiny"}, overrides)
    assert says in str(err.value)
