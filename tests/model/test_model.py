"""The model itself: padded == unpadded, heads and losses, tying, init, param groups, checkpoints."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from bertplat.model import (
    BertPretrainingModel,
    load_checkpoint,
    mean_pool,
    param_groups,
    save_checkpoint,
)
from bertplat.model.attention import attend_unpadded, choose_unpadded_impl, token_layout
from bertplat.model.padding import unpad_input
from tests.model.helpers import VOCAB, make_batch, tiny_config

CONFIGS = {
    "bert": tiny_config(),
    "albert": tiny_config("albert"),
    "albert-unshared": tiny_config("albert", share_layers=False),
    "bert-pre-ln": tiny_config(pre_ln=True),
}


def twin_models(config, seed=0):
    """The same weights built twice: unpad=True and unpad=False."""
    torch.manual_seed(seed)
    unpadded = BertPretrainingModel(config.replace(unpad=True))
    padded = BertPretrainingModel(config.replace(unpad=False))
    padded.load_state_dict(unpadded.state_dict())
    return unpadded, padded


@pytest.mark.parametrize("name", list(CONFIGS))
def test_padded_and_unpadded_paths_agree(name, batch):
    unpadded, padded = (m.eval() for m in twin_models(CONFIGS[name]))
    with torch.no_grad():
        a, b = unpadded(**batch), padded(**batch)
        ea = unpadded.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        eb = padded.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert torch.equal(a.mlm_positions, b.mlm_positions)
    torch.testing.assert_close(a.mlm_logits, b.mlm_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.nsp_logits, b.nsp_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(ea.last_hidden_state, eb.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(ea.pooled_output, eb.pooled_output, atol=1e-5, rtol=0)
    # both paths promise zeros at padding
    pad = batch["attention_mask"] == 0
    assert ea.last_hidden_state[pad].abs().max() == 0 and eb.last_hidden_state[pad].abs().max() == 0


@pytest.mark.parametrize("name", ["bert", "albert"])
def test_padded_and_unpadded_gradients_agree(name, batch):
    config = CONFIGS[name].replace(hidden_dropout=0.0, attention_dropout=0.0)  # train mode, no randomness
    models = twin_models(config)
    for m in models:
        m(**batch).loss.backward()
    grads = [dict((k, p.grad) for k, p in m.named_parameters()) for m in models]
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], atol=1e-5, rtol=1e-4, msg=k)


def _selection(kind: str, batch) -> str | torch.Tensor:
    if kind == "first":
        return "first"
    g = torch.Generator().manual_seed(3)
    select = (torch.rand(batch["input_ids"].shape, generator=g) < 0.3) & batch["attention_mask"].bool()
    select[0] = False  # a sequence with no query at all
    select[1, :2] = True
    return select


@pytest.mark.parametrize("unpad", [True, False], ids=["unpadded", "padded"])
@pytest.mark.parametrize("kind", ["first", "mask"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_encode_selected_gives_the_full_states_at_the_selected_positions(name, kind, unpad, batch):
    torch.manual_seed(0)
    backbone = BertPretrainingModel(CONFIGS[name].replace(unpad=unpad)).backbone.eval()
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    select = _selection(kind, batch)
    B, T = batch["input_ids"].shape
    with torch.no_grad():
        full = backbone(*args).last_hidden_state.flatten(0, 1)  # (B*T, H)
        states, positions = backbone.encode_selected(*args, select=select)
    expected = torch.arange(B) * T if kind == "first" else torch.nonzero(select.flatten()).flatten()
    assert torch.equal(positions, expected)
    assert states.shape == (len(expected), backbone.config.hidden_size)
    torch.testing.assert_close(states, full[positions], atol=1e-5, rtol=0)


def test_encode_selected_first_reads_the_first_real_token_under_left_padding(batch):
    torch.manual_seed(0)
    backbone = BertPretrainingModel(CONFIGS["bert"]).backbone.eval()
    lengths = batch["attention_mask"].sum(1)
    T = batch["input_ids"].shape[1]
    # the same rows, padded on the left
    left = {k: torch.stack([torch.roll(row, int(T - n)) for row, n in zip(batch[k], lengths)])
            for k in ("input_ids", "attention_mask", "token_type_ids")}
    args = (left["input_ids"], left["attention_mask"], left["token_type_ids"])
    with torch.no_grad():
        full = backbone(*args).last_hidden_state.flatten(0, 1)
        states, positions = backbone.encode_selected(*args)
    assert torch.equal(positions, torch.arange(len(lengths)) * T + (T - lengths))
    torch.testing.assert_close(states, full[positions], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["bert", "albert", "bert-pre-ln"])
def test_encode_selected_gradients_equal_the_full_paths(name, batch):
    config = CONFIGS[name].replace(hidden_dropout=0.0, attention_dropout=0.0)  # train mode, no randomness
    torch.manual_seed(0)
    a = BertPretrainingModel(config).backbone
    b = BertPretrainingModel(config).backbone
    b.load_state_dict(a.state_dict())
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    select = _selection("mask", batch)
    weights = torch.randn(int(select.sum()), config.hidden_size, generator=torch.Generator().manual_seed(1))
    states, positions = a.encode_selected(*args, select=select)
    (states * weights).sum().backward()
    (b(*args).last_hidden_state.flatten(0, 1)[positions] * weights).sum().backward()
    for (k, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if pb.grad is None:  # the pooler: neither path reads it
            assert pa.grad is None, k
            continue
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-4, msg=k)


def test_encode_selected_trains_with_dropout_and_rejects_a_bad_selection(batch):
    backbone = BertPretrainingModel(CONFIGS["bert"]).backbone.train()
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    states, _ = backbone.encode_selected(*args)
    states.sum().backward()
    assert torch.isfinite(states).all() and backbone.layers[-1].attn.qkv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="select must be 'first'"):
        backbone.encode_selected(*args, select="last")
    with pytest.raises(ValueError, match="select has shape"):
        backbone.encode_selected(*args, select=torch.ones(1, 3, dtype=torch.bool))


def test_no_mask_equals_all_ones_mask(batch):
    model = BertPretrainingModel(CONFIGS["bert"]).eval()
    full = make_batch([16, 16], seqlen=16)
    with torch.no_grad():
        with_mask = model.encode(full["input_ids"], full["attention_mask"]).last_hidden_state
        without = model.encode(full["input_ids"]).last_hidden_state
    torch.testing.assert_close(with_mask, without, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # nested tensors announce themselves as a prototype
def test_jagged_attention_matches_padded_fallback():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    qkv = torch.randn(3, 5, 3, 2, 8)  # (B, T, q/k/v, nh, hd)
    rows, indices, cu_seqlens, max_seqlen = unpad_input(qkv, mask)
    layout = token_layout(indices, cu_seqlens, max_seqlen, 3, 5)
    q, k, v = rows.unbind(1)  # each (nnz, nh, hd)
    jagged = attend_unpadded(q, k, v, layout, 0.0, impl="jagged")
    padded = attend_unpadded(q, k, v, layout, 0.0, impl="padded")
    torch.testing.assert_close(jagged, padded, atol=1e-6, rtol=0)
    # and against attention computed one sequence at a time, by hand
    for b in range(3):
        s, e = int(cu_seqlens[b]), int(cu_seqlens[b + 1])
        qs, ks, vs = (x[s:e].transpose(0, 1) for x in (q, k, v))  # (nh, n, hd)
        ref = torch.softmax(qs @ ks.transpose(1, 2) / 8**0.5, dim=-1) @ vs
        torch.testing.assert_close(padded[s:e], ref.transpose(0, 1), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown unpadded attention impl"):
        attend_unpadded(q, k, v, layout, 0.0, impl="flash")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_model_with_jagged_attention_matches_padded_model_forward_and_backward(batch):
    # The jagged path is what CUDA uses in training (it supports dropout); here it runs on CPU's math kernel.
    config = CONFIGS["albert"].replace(hidden_dropout=0.0, attention_dropout=0.0)
    jagged, padded = twin_models(config)
    for layer in jagged.backbone.layers:
        layer.attn.unpadded_impl = "jagged"
    outs = [m(**batch) for m in (jagged, padded)]
    torch.testing.assert_close(outs[0].mlm_logits, outs[1].mlm_logits, atol=1e-5, rtol=0)
    for out in outs:
        out.loss.backward()
    torch.testing.assert_close(jagged.backbone.layers[0].attn.qkv.weight.grad,
                               padded.backbone.layers[0].attn.qkv.weight.grad, atol=1e-5, rtol=1e-4)


def test_cpu_picks_the_padded_fallback():
    assert choose_unpadded_impl(torch.zeros(4, 2, 8), 0.0) == "padded"


def test_mlm_runs_only_at_labelled_positions_and_loss_is_cross_entropy(batch):
    model = BertPretrainingModel(CONFIGS["bert"]).eval()
    labels = batch["labels"]
    with torch.no_grad():
        out = model(**batch)
        every = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # no labels
    expected_positions = torch.nonzero((labels != -100).flatten()).flatten()
    assert torch.equal(out.mlm_positions, expected_positions)
    assert out.mlm_logits.shape == (len(expected_positions), VOCAB)
    # without labels: every real token, in row-major order
    assert torch.equal(every.mlm_positions, torch.nonzero(batch["attention_mask"].flatten()).flatten())
    rows = torch.searchsorted(every.mlm_positions, expected_positions)
    torch.testing.assert_close(out.mlm_logits, every.mlm_logits[rows], atol=1e-6, rtol=0)
    # with labels the last layer computes only the labelled rows and [CLS]; NSP reads the same pooled state
    torch.testing.assert_close(out.nsp_logits, every.nsp_logits, atol=1e-6, rtol=0)

    targets = labels.flatten()[expected_positions]
    torch.testing.assert_close(out.mlm_loss, F.cross_entropy(out.mlm_logits, targets))
    torch.testing.assert_close(out.nsp_loss, F.cross_entropy(out.nsp_logits, batch["next_sentence_label"]))
    torch.testing.assert_close(out.loss, out.mlm_loss + out.nsp_loss)
    assert out.mlm_count.item() == len(targets)
    assert out.mlm_correct.item() == (out.mlm_logits.argmax(-1) == targets).sum().item()
    assert out.nsp_count.item() == 4
    assert out.nsp_correct.item() == (out.nsp_logits.argmax(-1) == batch["next_sentence_label"]).sum().item()
    assert every.loss is None and every.mlm_count is None


@pytest.mark.parametrize("unpad", [True, False], ids=["unpadded", "padded"])
@pytest.mark.parametrize("name", ["bert", "albert", "bert-pre-ln", "bert-mlm-only"])
def test_the_selected_last_layer_trains_as_the_full_encoder(name, unpad, batch):
    """Training computes the last layer at the labelled rows and [CLS] only: the loss and every gradient equal
    those of the full encoder's states at those positions (dropout off, so both runs see the same network)."""
    config = (CONFIGS["bert"].replace(sop_or_nsp_head=False) if name == "bert-mlm-only" else CONFIGS[name])
    config = config.replace(hidden_dropout=0.0, attention_dropout=0.0, unpad=unpad)
    torch.manual_seed(0)
    a, b = BertPretrainingModel(config), BertPretrainingModel(config)
    b.load_state_dict(a.state_dict())
    if b.nsp is None:
        batch = {k: v for k, v in batch.items() if k != "next_sentence_label"}
    out = a(**batch)
    out.loss.backward()
    enc = b.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    positions = torch.nonzero((batch["labels"] != -100).flatten()).flatten()
    assert torch.equal(out.mlm_positions, positions)
    logits = b.mlm(enc.last_hidden_state.flatten(0, 1)[positions])
    loss = F.cross_entropy(logits, batch["labels"].flatten()[positions])
    if b.nsp is not None:
        loss = loss + F.cross_entropy(b.nsp(enc.pooled_output), batch["next_sentence_label"])
    loss.backward()
    torch.testing.assert_close(out.loss, loss, atol=1e-5, rtol=0)
    for (k, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert (pa.grad is None) == (pb.grad is None), k
        if pa.grad is not None:
            torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-4, msg=k)


def test_labels_at_padding_are_ignored_and_nothing_masked_gives_zero_loss(batch):
    model = BertPretrainingModel(CONFIGS["bert"]).eval()
    labels = batch["labels"].clone()
    labels[1, 10] = 7  # sequence 1 has length 4: position 10 is padding
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"], labels=labels)
    assert 1 * 16 + 10 not in out.mlm_positions.tolist()
    none = torch.full_like(labels, -100)
    out = model(batch["input_ids"], batch["attention_mask"], labels=none)
    assert out.mlm_logits.shape == (0, VOCAB)
    assert out.loss.item() == 0.0 and out.mlm_count.item() == 0


def test_input_errors_name_the_problem(batch):
    model = BertPretrainingModel(CONFIGS["bert"])
    with pytest.raises(ValueError, match="sequence length 40 exceeds max_position_embeddings=32"):
        model(torch.ones(2, 40, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask has shape \\(4, 15\\)"):
        model(batch["input_ids"], batch["attention_mask"][:, :15])
    with pytest.raises(ValueError, match="labels has shape"):
        model(batch["input_ids"], labels=batch["labels"][:2])
    headless = BertPretrainingModel(CONFIGS["bert"].replace(sop_or_nsp_head=False))
    assert headless.nsp is None
    with pytest.raises(ValueError, match="sop_or_nsp_head=False"):
        headless(batch["input_ids"], next_sentence_label=batch["next_sentence_label"])


@pytest.mark.parametrize("name", ["bert", "albert"])
def test_decoder_is_tied_to_the_word_embedding(name):
    model = BertPretrainingModel(CONFIGS[name])
    word = model.backbone.embeddings.word
    assert model.mlm.decoder.weight is word.weight
    assert model.mlm.decoder.weight.shape == (VOCAB, CONFIGS[name].embedding_dim)
    # tied parameters are counted once
    assert sum(1 for p in model.parameters() if p is word.weight) == 1


def test_albert_shares_one_layer():
    shared = BertPretrainingModel(CONFIGS["albert"])
    unshared = BertPretrainingModel(CONFIGS["albert-unshared"])
    assert len(shared.backbone.layers) == 1 and len(unshared.backbone.layers) == 2
    n_shared, n_unshared = (sum(p.numel() for p in m.parameters()) for m in (shared, unshared))
    assert n_unshared - n_shared == CONFIGS["albert"].layer_params()
    assert shared.backbone.embeddings.proj.weight.shape == (64, 32)  # E=32 -> H=64


def test_init_follows_bert():
    torch.manual_seed(0)
    config = tiny_config(hidden_size=256, intermediate_size=512, vocab_size=2000)
    model = BertPretrainingModel(config)
    word = model.backbone.embeddings.word.weight
    assert torch.all(word[config.pad_token_id] == 0)
    assert word[1:].std().item() == pytest.approx(0.02, rel=0.05)
    ffn = model.backbone.layers[0].ffn_in
    assert ffn.weight.std().item() == pytest.approx(0.02, rel=0.05) and torch.all(ffn.bias == 0)
    ln = model.backbone.layers[0].ln_attn
    assert torch.all(ln.weight == 1) and torch.all(ln.bias == 0)
    assert torch.all(model.mlm.decoder.bias == 0)


@pytest.mark.parametrize("name", ["bert", "albert", "bert-pre-ln"])
def test_param_groups_exclude_exactly_biases_and_layernorm_weights(name):
    model = BertPretrainingModel(CONFIGS[name])
    decay, no_decay = param_groups(model, weight_decay=0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    named = dict(model.named_parameters())  # de-duplicated: the tied decoder weight appears once
    expected_no_decay = {k for k in named if k.endswith(".bias") or ".ln" in k}
    by_id = {id(p): k for k, p in named.items()}
    assert {by_id[id(p)] for p in no_decay["params"]} == expected_no_decay
    assert {by_id[id(p)] for p in decay["params"]} == set(named) - expected_no_decay
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])


def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2), last token is padding
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_meta_device_builds_without_memory():
    with torch.device("meta"):
        model = BertPretrainingModel(CONFIGS["bert"].replace(vocab_size=30522))
    assert all(p.is_meta for p in model.parameters())
    assert model.mlm.decoder.weight is model.backbone.embeddings.word.weight


@pytest.mark.parametrize("name", ["bert", "albert"])
def test_train_save_reload_gives_equal_outputs(name, batch, tmp_path):
    torch.manual_seed(0)
    model = BertPretrainingModel(CONFIGS[name])
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=3e-3)
    losses = []
    for _ in range(8):  # overfit one batch: the loss must fall, or gradients do not flow
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses

    save_checkpoint(model, tmp_path / "ckpt")
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(model, tmp_path / "ckpt")
    reloaded = load_checkpoint(tmp_path / "ckpt")
    assert reloaded.config == model.config
    assert reloaded.mlm.decoder.weight is reloaded.backbone.embeddings.word.weight
    model.eval(), reloaded.eval()
    with torch.no_grad():
        a, b = model(**batch), reloaded(**batch)
    assert torch.equal(a.mlm_logits, b.mlm_logits) and torch.equal(a.nsp_logits, b.nsp_logits)
    for (k, p), (k2, p2) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(p, p2)


def test_load_checkpoint_explains_a_wrong_directory(tmp_path):
    with pytest.raises(ValueError, match="config.json is missing"):
        load_checkpoint(tmp_path)
    save_checkpoint(BertPretrainingModel(CONFIGS["bert"]), tmp_path / "a")
    tiny_config(num_layers=3).to_file(tmp_path / "a" / "config.json")
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(tmp_path / "a")


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_unpadded_kernels_match_padded_in_bf16(batch):
    config = tiny_config(hidden_size=128, num_heads=2)  # head_dim 64: flash-eligible
    unpadded, padded = (m.cuda().eval() for m in twin_models(config))
    batch = {k: v.cuda() for k, v in batch.items()}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        ref = padded(**batch)
        for impl in ("varlen", "jagged", "padded"):
            for layer in unpadded.backbone.layers:
                layer.attn.unpadded_impl = impl
            out = unpadded(**batch)
            torch.testing.assert_close(out.mlm_logits.float(), ref.mlm_logits.float(), atol=5e-2, rtol=5e-2)
    unpadded.train()
    for layer in unpadded.backbone.layers:
        layer.attn.unpadded_impl = "auto"  # jagged in training (dropout), must be differentiable
    with torch.autocast("cuda", dtype=torch.bfloat16):
        unpadded(**batch).loss.backward()
    assert unpadded.backbone.layers[0].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_package_imports_only_torch_safetensors_numpy_and_stdlib():
    # The GPU box has none of our other dependencies: block them and build, run, export a model.
    code = """
import sys, tempfile
for name in ("transformers", "pydantic", "polars", "duckdb", "prefect", "lightning", "tokenizers", "yaml"):
    sys.modules[name] = None  # makes any import of it fail
import torch
from bertplat.model import BertPretrainingModel, ModelConfig, export_hf, import_hf
model = BertPretrainingModel(ModelConfig.preset("tiny", vocab_size=50))
model(torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long)).mlm_logits.sum()
import_hf(export_hf(model, tempfile.mkdtemp() + "/m"))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
