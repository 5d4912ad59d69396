"""Continued pretraining (``init_from``): the run starts from the named model's weights, records them in its
fingerprint and lineage, and refuses a model whose vocabulary or architecture cannot fit the examples."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from bertplat.config import ConfigError
from bertplat.pretrain import PretrainConfig, run_pretrain
from bertplat.pretrain.datamodule import ExamplesSource
from bertplat.pretrain.module import PretrainModule
from bertplat.pretrain.report import read_history
from bertplat.pretrain.stage import load_init_model, load_initial_weights, run_fingerprint
from tests.pretrain.conftest import TRAIN


def _train_losses(run_dir) -> list[float]:
    return [float(r["train/loss"]) for r in read_history(run_dir / "logs" / "csv") if r.get("train/loss") is not None]


@pytest.mark.slow
def test_a_continued_run_starts_from_the_weights_it_names_and_records_them(trained):
    lake, base = trained
    examples = lake.latest("examples", "demo")
    source = ExamplesSource.open(examples, lake)
    init = load_init_model(f"tiny-demo@{base.fingerprint}", source, lake)
    assert init.path == base.model_dir and init.config.num_layers == 2

    # the module's weights before the first step are the export's, exactly
    module = PretrainModule(init.config.to_dict(), PretrainConfig(**TRAIN).model_dump(mode="json"), 10)
    load_initial_weights(module.model, init)
    ours = module.model.state_dict()
    for k, v in init.model.state_dict().items():
        torch.testing.assert_close(ours[k], v, rtol=0, atol=0, msg=k)

    # a short continuation at a gentler peak; over 10 steps its loss need not fall, so that gate is off here
    short = {**TRAIN, "max_steps": 10, "val_every_n_steps": 10, "log_every_n_steps": 1, "lr": 3e-4,
             "require_loss_decrease": False}
    cont = run_pretrain(examples, "cont", PretrainConfig(**short, init_from=str(base.model_dir)), lake)
    before, after = _train_losses(base.run_dir), _train_losses(cont.run_dir)
    # the first run began near ln(vocab) = 8.3; the continued one begins where the first one ended
    assert after[0] < before[0] - 0.5 and abs(after[0] - before[-1]) < 0.5, (before, after)
    assert cont.fingerprint != run_fingerprint(source, PretrainConfig(**short))
    # the weights decide, not the name they were given by
    assert PretrainConfig(**short, init_from="x").fingerprint_json() == PretrainConfig(**short).fingerprint_json()
    manifest = json.loads((cont.model_dir / "_manifest.json").read_text(encoding="utf-8"))
    parent = [p for p in manifest["parents"] if p["kind"] == "model"]
    assert parent == [{"kind": "model", "name": "tiny-demo", "fingerprint": base.fingerprint, "sha256": init.digest,
                       "path": str(base.model_dir.resolve())}]
    assert f"10 steps from {base.model_dir} on examples demo" in cont.summary()
    card = (cont.model_dir / "README.md").read_text(encoding="utf-8")
    assert f"continued from `{base.model_dir}`" in card and init.digest in card


def test_continued_pretraining_refuses_what_cannot_fit_before_any_work(trained, tmp_path):
    lake, base = trained
    examples = lake.latest("examples", "demo")
    other = tmp_path / "other_vocab"
    shutil.copytree(base.model_dir, other)
    vocab = (other / "vocab.txt").read_text(encoding="utf-8").splitlines()
    vocab[1000] = "zzzz-not-ours"
    (other / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"another vocabulary than the examples.*first difference at id 1000 "
                                         r"\('zzzz-not-ours' in the model"):
        run_pretrain(examples, "bad", PretrainConfig(**{**TRAIN, "init_from": str(other)}), lake)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(ValueError, match="cannot be loaded as a BERT-family model|config.json"):
        run_pretrain(examples, "bad", PretrainConfig(**{**TRAIN, "init_from": str(not_a_model)}), lake)
    with pytest.raises(ValueError, match="neither a model directory"):
        run_pretrain(examples, "bad", PretrainConfig(**{**TRAIN, "init_from": "no_such_model"}), lake)
    with pytest.raises(ConfigError, match="model_overrides .* cannot apply"):
        PretrainConfig.build({"init_from": str(base.model_dir), "model_overrides": {"hidden_dropout": 0.0}})
    assert not list((lake.data_dir / "runs").glob("bad-*"))
