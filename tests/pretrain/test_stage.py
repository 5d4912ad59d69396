"""run_pretrain end to end on real text (the demo corpus): learning, outputs, the gate, the export, and the
checks that refuse a config before any work."""

from __future__ import annotations

import json
import math
from itertools import islice

import pytest
import torch

from bertplat.config import ConfigError
from bertplat.model import ModelConfig
from bertplat.pretrain import PretrainConfig, run_pretrain
from bertplat.pretrain.data import StreamLayout, TrainStreams
from bertplat.pretrain.datamodule import ExamplesSource, PretrainDataModule
from bertplat.pretrain.report import gate, read_history, series
from bertplat.pretrain.stage import load_trained_model, run_fingerprint, total_steps_for
from bertplat.validation import GateError
from tests.pretrain.conftest import TRAIN


@pytest.mark.slow
def test_training_on_real_text_lowers_the_validation_loss(trained):
    _, result = trained
    steps, val = series(read_history(result.run_dir / "logs" / "csv"), "val/mlm_loss")
    assert steps == [20.0, 40.0, 60.0]
    assert val[-1] < val[0] - 0.05 and val[-1] < val[1]
    assert val[-1] < math.log(4096) - 1.0  # far below guessing among 4096 tokens
    assert result.report.passed and result.steps == 60


@pytest.mark.slow
def test_the_run_leaves_metrics_plot_checkpoints_and_an_export_with_lineage(trained):
    lake, result = trained
    run = result.run_dir
    assert run.parent == lake.data_dir / "runs" and run.name == f"tiny-demo-{result.fingerprint}"
    for name in ("config.yaml", "model_config.json", "metrics.csv", "metrics.json", "loss_curve.png",
                 "checkpoints/last.ckpt", "checkpoints/state.json"):
        assert (run / name).is_file(), name
    assert list((run / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    model = result.model_dir
    assert model == lake.data_dir / "models" / "tiny-demo" / result.fingerprint
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "README.md", "_manifest.json"):
        assert (model / name).is_file(), name
    manifest = json.loads((model / "_manifest.json").read_text())
    kinds = {p["kind"]: p["fingerprint"] for p in manifest["parents"]}
    assert kinds["examples"] == result.examples.fingerprint and kinds["vocab"] == result.vocab.fingerprint
    assert "corpus" in kinds and manifest["validation"]["checks"]
    card = (model / "README.md").read_text()
    assert result.examples.ref() in card and "val/mlm_acc" in card and "BertForPreTraining" in card
    assert "validation MLM accuracy" in result.summary() and str(model) in result.summary()


@pytest.mark.slow
def test_tokens_seen_counts_every_real_token_of_every_batch(trained):
    """Re-derive the batches the run trained on and count their tokens: the logged total must match."""
    lake, result = trained
    cfg = PretrainConfig(**TRAIN)
    source = ExamplesSource.open(result.examples, lake)
    dm = PretrainDataModule(source, cfg)
    batches = TrainStreams(source.train_units, source.columns, dm.collator(), StreamLayout(1, 1, 1), 0, cfg.seed,
                           cfg.micro_batch_size, cfg.shuffle_buffer, cfg.bucketing)
    expected = sum(b["num_tokens"] for b in islice(iter(batches), 60))
    _, seen = series(read_history(result.run_dir / "logs" / "csv"), "perf/tokens_seen")
    assert seen[-1] == expected
    _, rate = series(read_history(result.run_dir / "logs" / "csv"), "perf/tokens_per_s")
    assert all(r > 0 for r in rate)


@pytest.mark.slow
@pytest.mark.interop
def test_the_export_loads_in_transformers_and_predicts_what_our_model_predicts(trained):
    transformers = pytest.importorskip("transformers")
    lake, result = trained
    config = ModelConfig.from_file(result.run_dir / "model_config.json")
    ours = load_trained_model(result.run_dir / "checkpoints" / "last.ckpt", config)
    hf = transformers.BertForPreTraining.from_pretrained(result.model_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(result.model_dir)
    enc = tok(["The city lies on the river.", "It was founded in 1850 by settlers."],
              ["Its population grew.", "Paris is the capital of France."], padding=True, return_tensors="pt")
    assert (enc["input_ids"] != tok.unk_token_id).float().mean() > 0.9
    with torch.no_grad():
        theirs = hf(**enc)
        mine = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    flat = theirs.prediction_logits.flatten(0, 1)[mine.mlm_positions]
    torch.testing.assert_close(mine.mlm_logits, flat, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mine.nsp_logits, theirs.seq_relationship_logits, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_run_that_does_not_learn_fails_the_gate_and_exports_nothing(lake, examples):
    cfg = PretrainConfig(**{**TRAIN, "max_steps": 10, "lr": 1e-9, "val_every_n_steps": 10,
                            "min_val_mlm_accuracy": 0.5})
    with pytest.raises(GateError, match="validation MLM accuracy") as err:
        run_pretrain(examples, "stuck", cfg, lake)
    assert err.value.report_path.is_file() and err.value.report_path.parent == lake.data_dir / "reports"
    assert not (lake.data_dir / "models").exists()


def test_the_gate_by_hand():
    cfg = PretrainConfig(min_val_mlm_accuracy=0.3)
    falling = [{"step": float(s), "train/loss": 10.0 - s} for s in range(1, 11)]
    falling[-1].update({"val/loss": 2.0, "val/mlm_acc": 0.35})
    assert gate(falling, cfg, "m").passed
    flat = [{**r, "train/loss": 5.0} for r in falling]
    assert [c.name for c in gate(flat, cfg, "m").failures] == ["training loss falling"]
    nan = [dict(r) for r in falling]
    nan[4]["train/loss"] = float("nan")
    assert "losses finite" in [c.name for c in gate(nan, cfg, "m").failures]
    low = [dict(r) for r in falling]
    low[-1]["val/mlm_acc"] = 0.29
    assert [c.name for c in gate(low, cfg, "m").failures] == ["validation MLM accuracy"]
    no_val = [{k: v for k, v in r.items() if not k.startswith("val/")} for r in falling]
    assert "validation MLM accuracy" in [c.name for c in gate(no_val, cfg, "m").failures]


@pytest.mark.slow
def test_static_masks_train_and_cannot_take_a_new_mask_rate(lake):
    static = lake.latest("examples", "demo_static")
    with pytest.raises(ValueError, match="statically masked"):
        run_pretrain(static, "s", PretrainConfig(mask_prob=0.3), lake)
    cfg = PretrainConfig(**{**TRAIN, "max_steps": 4, "warmup_steps": 1, "val_every_n_steps": 4, "min_val_mlm_accuracy": 0.0,
                            "require_loss_decrease": False})
    assert run_pretrain(static, "s", cfg, lake).model_dir.is_dir()


@pytest.mark.slow  # the demo examples take ~8 s to build when this runs first
def test_configs_that_cannot_work_are_refused_before_training(lake, examples):
    with pytest.raises(ValueError, match="max_position_embeddings=64; raise it"):
        run_pretrain(examples, "x", PretrainConfig(model_overrides={"max_position_embeddings": 64}), lake)
    with pytest.raises(ValueError, match="hidden_size 102 is not divisible"):
        run_pretrain(examples, "x", PretrainConfig(model_overrides={"hidden_size": 102}), lake)
    with pytest.raises(ValueError, match="micro_batch_size 6 must be a multiple"):
        run_pretrain(examples, "x", PretrainConfig(data_streams=4, micro_batch_size=6, accelerator="cpu"), lake)
    with pytest.raises(ConfigError, match="vocab_size"):
        PretrainConfig.build({"model_overrides": {"vocab_size": 10}})
    with pytest.raises(ConfigError, match="set max_steps or max_tokens"):
        PretrainConfig.build({"max_steps": None})
    with pytest.raises(ValueError, match="is a vocab dataset"):
        run_pretrain(lake.latest("vocab", "demo"), "x", PretrainConfig(), lake)
    assert not (lake.data_dir / "runs").exists()


@pytest.mark.slow
def test_token_budget_and_fingerprint(lake, examples):
    source = ExamplesSource.open(examples, lake)
    mean = source.manifest["counts"]["train"]["tokens"] / source.manifest["counts"]["train"]["instances"]
    cfg = PretrainConfig(max_steps=None, max_tokens=1_000_000, micro_batch_size=16, accumulate_grad_batches=2)
    assert total_steps_for(source, cfg, world_size=2) == round(1_000_000 / (mean * 16 * 2 * 2))
    assert total_steps_for(source, cfg.model_copy(update={"max_steps": 3}), world_size=2) == 3
    base = run_fingerprint(source, PretrainConfig())
    assert run_fingerprint(source, PretrainConfig(num_workers=4, checkpoint_every_n_steps=7)) == base
    assert run_fingerprint(source, PretrainConfig(lr=1e-3)) != base


@pytest.mark.slow
def test_a_larger_mask_rate_masks_that_share_of_the_maskable_tokens(lake, examples):
    """MosaicBERT / ModernBERT's 30%: labels on ~30% of the non-special tokens of the train batches."""
    source = ExamplesSource.open(examples, lake)
    for rate in (0.15, 0.3):
        cfg = PretrainConfig(mask_prob=rate if rate != 0.15 else None)  # None: the examples' own 0.15
        batches = TrainStreams(source.train_units, source.columns, PretrainDataModule(source, cfg).collator(),
                               StreamLayout(1, 1, 1), 0, 0, 32, 4096, True)
        labelled = maskable = 0
        for b in islice(iter(batches), 30):
            labelled += b["num_masked"]
            maskable += b["num_tokens"] - 3 * b["input_ids"].shape[0]  # [CLS] A [SEP] B [SEP]
        assert labelled / maskable == pytest.approx(rate, abs=0.01)


def test_mlm_only_models_freeze_the_pooler_that_no_loss_uses():
    from bertplat.pretrain.module import PretrainModule

    cfg = ModelConfig.preset("tiny", vocab_size=50, sop_or_nsp_head=False)
    module = PretrainModule(cfg.to_dict(), PretrainConfig().model_dump(mode="json"), total_steps=10)
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    assert frozen == ["model.backbone.pooler.weight", "model.backbone.pooler.bias"]


@pytest.mark.slow
def test_a_pre_ln_model_trains_and_is_exported_in_bertplat_format(lake, examples):
    """HF BERT is post-LN, so a pre-LN model cannot be a transformers checkpoint: it keeps our layout."""
    from bertplat.model import load_checkpoint

    cfg = PretrainConfig(**{**TRAIN, "max_steps": 4, "warmup_steps": 1, "val_every_n_steps": 4, "val_examples": 64,
                            "log_every_n_steps": 1, "min_val_mlm_accuracy": 0.0, "require_loss_decrease": False,
                            "model_overrides": {"pre_ln": True}})
    result = run_pretrain(examples, "preln", cfg, lake)
    assert result.export_format == "bertplat" and "load_checkpoint" in result.summary()
    model = load_checkpoint(result.model_dir)
    assert model.config.pre_ln and (result.model_dir / "tokenizer.json").is_file()
    assert json.loads((result.model_dir / "_manifest.json").read_text())["format"] == "bertplat"
    assert "load_checkpoint" in (result.model_dir / "README.md").read_text()


@pytest.mark.slow
def test_a_compiled_run_trains_and_logs_mfu_against_the_configured_peak(lake, examples):
    """torch.compile on CPU (inductor), and MFU: with ``peak_tflops`` set, MFU x peak is the model-FLOP
    rate, i.e. tokens/s times the FLOPs of an average token, which lie between those of the shortest and
    the longest sequences'. The peak is set far above any CPU's (a warm compiled tiny model reaches
    ~80 GFLOP/s on two cores), so the MFU is a small positive share."""
    cfg = PretrainConfig(**{**TRAIN, "max_steps": 6, "warmup_steps": 1, "val_every_n_steps": 6, "val_examples": 64,
                            "log_every_n_steps": 2, "min_val_mlm_accuracy": 0.0, "require_loss_decrease": False,
                            "compile": True, "peak_tflops": 100.0})
    from torch._dynamo.utils import counters

    counters.clear()
    result = run_pretrain(examples, "compiled", cfg, lake)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled the forward
    history = read_history(result.run_dir / "logs" / "csv")
    steps, losses = series(history, "train/loss")
    assert steps and all(math.isfinite(x) for x in losses)
    _, mfu = series(history, "perf/mfu")
    _, tokens_per_s = series(history, "perf/tokens_per_s")
    assert len(mfu) == len(tokens_per_s) == 3 and all(0 < m < 1 for m in mfu)
    model = ModelConfig.from_file(result.run_dir / "model_config.json")
    per_token = [m * 100e12 / t for m, t in zip(mfu, tokens_per_s)]
    low, high = model.flops_per_token(8, 0.0), model.flops_per_token(128, 1.0)
    assert all(low < f < high for f in per_token), (per_token, low, high)
