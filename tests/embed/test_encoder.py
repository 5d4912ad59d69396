"""The encoder: sentence-transformers settings read from the directory, parity with sentence-transformers."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from bertplat.embed.config import EmbedConfig
from bertplat.embed.encoder import Encoder, model_fingerprint, read_model_spec
from tests.conftest import SHARED_DATA
from tests.embed.conftest import sentences


def test_a_sentence_transformers_directory_gives_its_pooling_normalisation_and_length(minilm_dir):
    spec = read_model_spec(minilm_dir)
    assert (spec.pooling, spec.normalize, spec.max_seq_length) == ("mean", True, 256)
    enc = Encoder.from_config(spec, EmbedConfig(threads=1))
    assert (enc.pooling, enc.normalize, enc.max_length, enc.dim) == ("mean", True, 256, 384)


def test_a_plain_hf_directory_defaults_to_mean_pooling_without_normalisation(tiny_model):
    spec = read_model_spec(tiny_model)
    assert (spec.pooling, spec.normalize, spec.max_seq_length) == (None, False, None)
    enc = Encoder.from_config(spec, EmbedConfig(threads=1))
    assert (enc.pooling, enc.normalize, enc.max_length) == ("mean", False, 128)
    cls = Encoder.from_config(spec, EmbedConfig(threads=1, pooling="cls", normalize=True))
    v = cls.encode(["one text", "another, longer text"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def test_an_unsupported_sentence_transformers_module_is_refused(tmp_path, minilm_dir):
    d = tmp_path / "st"
    shutil.copytree(minilm_dir, d)
    modules = json.loads((d / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (d / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="models.Dense.*not supported"):
        read_model_spec(d)


def test_the_model_fingerprint_changes_with_the_weights(tmp_path, tiny_model):
    d = tmp_path / "copy"
    shutil.copytree(tiny_model, d)
    before = model_fingerprint(read_model_spec(d))
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "layer_norm_eps": 1e-6}))
    assert model_fingerprint(read_model_spec(d)) != before


def test_windows_average_the_vectors_of_overlapping_windows(tiny_model):
    spec = read_model_spec(tiny_model)
    cfg = EmbedConfig(threads=1, max_length=16, long_texts="window", window_stride=7)
    enc = Encoder.from_config(spec, cfg)
    text = " ".join(["river bank money loan"] * 8)  # 32 pieces: windows of 14 start at 0, 7, 14 and 18
    pieces = enc.tokenizer.encode(text, add_special_tokens=False).ids
    assert len(pieces) == 32
    rows, owner = enc.tokenize([text])
    assert len(rows) == 4 and owner.tolist() == [0, 0, 0, 0]
    windows = [enc.tokenizer.decode(pieces[s:s + 14]) for s in (0, 7, 14, 18)]
    truncating = Encoder.from_config(spec, cfg.model_copy(update={"long_texts": "truncate"}))
    expected = np.mean([truncating.encode([w])[0] for w in windows], axis=0)
    np.testing.assert_allclose(enc.encode([text])[0], expected, rtol=1e-4, atol=1e-5)


def _parity_texts(n: int) -> list[str]:
    dev = SHARED_DATA / "tasks/en/glue/SST-2/dev.tsv"
    if dev.is_file():
        with open(dev, encoding="utf-8") as f:
            texts = [r[0] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:n + 1]
    else:
        texts = sentences(n)
    long = " ".join(sentences(60, seed=3))  # ~1000 pieces: truncated at max_seq_length by both
    return texts + [long, "", "x"]


@pytest.mark.interop
@pytest.mark.slow
def test_vectors_equal_sentence_transformers_to_cosine_0_9999(minilm_dir):
    st = pytest.importorskip("sentence_transformers")
    texts = _parity_texts(300)
    ref = st.SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, batch_size=64, convert_to_numpy=True)
    ours = Encoder.from_config(read_model_spec(minilm_dir), EmbedConfig(max_tokens=4096)).encode(texts)
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.9999, f"row {int(cos.argmin())} ({texts[int(cos.argmin())][:60]!r}): cosine {cos.min()}"
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_batches_without_padding_take_the_dense_path_and_give_the_same_vectors(tiny_model):
    enc = Encoder.from_config(read_model_spec(tiny_model), EmbedConfig(threads=1, max_length=16))
    long = [" ".join(["river bank money loan"] * 6) + f" {i}" for i in range(3)]  # all cut at 16 tokens
    mixed = enc.encode(long + ["short"])  # one batch with padding: the unpadded path
    dense = enc.encode(long)  # no padding: the dense path
    np.testing.assert_allclose(dense, mixed[:3], rtol=1e-5, atol=1e-6)


def test_int8_per_token_linear_quantises_each_row_by_its_largest_magnitude():
    """A hand-worked row: the scale is max |x| / 127 whether the largest magnitude is positive or negative."""
    import torch

    from bertplat.embed.encoder import Int8Linear

    lin = torch.nn.Linear(4, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[127.0, 0.0, 0.0, 0.0]]))  # weight scale 1: int8 weights equal these
        lin.bias.zero_()
    q = Int8Linear(lin)
    # row 0: max |x| = 2 (positive) -> scale 2/127, x[0] -> 127; row 1: max |x| = 4 at a negative entry
    # -> x[0] = 1 -> round(31.75) = 32; row 2: all zero -> the scale floor, output 0.
    x = torch.tensor([[2.0, -1.0, 0.5, 0.0], [1.0, -4.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).repeat(8, 1)
    expected = torch.tensor([127 * 127 * 2.0 / 127, 32 * 127 * 4.0 / 127, 0.0]).repeat(8)
    torch.testing.assert_close(q(x)[:, 0], expected, rtol=1e-6, atol=1e-6)


def test_int8_per_token_linear_is_close_to_float_and_independent_of_the_batch():
    import torch

    from bertplat.embed.encoder import Int8Linear

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    q = Int8Linear(lin)
    x = torch.randn(40, 64)
    ref = lin(x)
    got = q(x)
    rel = ((got - ref).norm(dim=1) / ref.norm(dim=1)).max()
    assert rel < 0.02, f"int8 relative error {rel:.4f}"
    outlier = torch.cat([x, 1000 * torch.randn(1, 64)])  # one huge token in the batch
    torch.testing.assert_close(q(outlier)[:40], got)  # per-token scales: the others lose nothing
    torch.testing.assert_close(q(x[:3]), got[:3])  # a tiny batch gives the same rows
    with pytest.raises(ValueError, match="unknown int8 scheme"):
        from bertplat.embed.encoder import quantize_int8

        quantize_int8(torch.nn.Sequential(lin), "int4")


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_cls_pooling_equals_the_first_state_of_the_full_encoder(minilm_dir, quantize):
    """CLS pooling computes the last layer for [CLS] alone (BertBackbone.encode_selected); the vectors are the
    full encoder's first states, with and without padding in the batch, float32 and int8."""
    import torch

    from bertplat.model.padding import pad_input

    texts = ["a short one", "a somewhat longer sentence, with a clause", "x", "the same length as this one"]
    enc = Encoder.from_config(read_model_spec(minilm_dir),
                              EmbedConfig(threads=1, pooling="cls", normalize=False, quantize=quantize))
    ours = enc.encode(texts)
    rows, _ = enc.tokenize(texts)
    with torch.inference_mode():
        for i, r in enumerate(rows):  # one text per batch: no padding, the whole encoder
            hidden, layout = enc.backbone.encode_tokens(torch.from_numpy(r)[None])
            assert layout is None
            np.testing.assert_allclose(ours[i], hidden[0, 0].float().numpy(), rtol=1e-4, atol=1e-5)
        mixed = enc._encode_batch(rows)  # one batch with padding
        T = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), T, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.from_numpy(r)
        hidden, layout = enc.backbone.encode_tokens(ids, (ids != 0).long())
        full = pad_input(hidden, layout.indices, len(rows), T)[:, 0]
    np.testing.assert_allclose(mixed.float().numpy(), full.float().numpy(), rtol=1e-4, atol=1e-5)


def _onednn_or_skip():
    from bertplat.embed.encoder import onednn_available

    if not onednn_available():
        pytest.skip("this torch has no oneDNN packed Linear (torch.ops.mkldnn._linear_pointwise)")


@pytest.mark.parametrize("gelu", [None, "none", "tanh"])
def test_the_onednn_linear_equals_torch_linear_and_its_gelu(gelu):
    """The packed product, with the erf or tanh GELU fused or none, on 2-D and 3-D inputs of any row count
    (the weight is packed for 1,024 rows)."""
    import torch

    from bertplat.embed.encoder import OneDnnLinear

    _onednn_or_skip()
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 80)
    fused = OneDnnLinear(lin, gelu, batch_hint=1024)
    act = torch.nn.Identity() if gelu is None else torch.nn.GELU(approximate=gelu)
    with torch.inference_mode():
        for shape in [(1, 48), (7, 48), (1500, 48), (3, 5, 48)]:
            x = torch.randn(*shape)
            got = fused(x)
            assert got.shape == (*shape[:-1], 80)
            torch.testing.assert_close(got, act(lin(x)), rtol=1e-5, atol=2e-5)
        x = torch.randn(6, 96)[:, ::2]  # a strided view
        torch.testing.assert_close(fused(x), act(lin(x)), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_onednn_on_and_off_give_the_same_vectors(minilm_dir, pooling):
    """onednn (the CPU float32 default) runs a packed copy with the FFN's GELU fused; the vectors are torch's to
    float32 rounding, with and without padding in a batch, and the option leaves the fingerprint alone."""
    import torch

    from bertplat.embed.encoder import OneDnnLinear

    _onednn_or_skip()
    texts = sentences(40) + ["x", "a much longer sentence than the others, with a clause or two in it"]
    spec = read_model_spec(minilm_dir)
    on = Encoder.from_config(spec, EmbedConfig(threads=1, pooling=pooling, max_tokens=512))
    off = Encoder.from_config(spec, EmbedConfig(threads=1, pooling=pooling, max_tokens=512, onednn=False))
    a, b = on.encode(texts), off.encode(texts)
    layer = on._runner().layers[0]
    assert isinstance(layer.ffn_in, OneDnnLinear) and isinstance(layer.act, torch.nn.Identity)
    assert type(on.backbone.layers[0].ffn_in) is torch.nn.Linear  # the plain model is kept, for int8
    assert off._runner() is off.backbone
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    assert EmbedConfig(onednn=False).content_json() == EmbedConfig().content_json()


def test_int8_encoders_do_not_take_the_onednn_path(minilm_dir):
    from bertplat.embed.encoder import quantize_int8

    _onednn_or_skip()
    enc = Encoder.from_config(read_model_spec(minilm_dir), EmbedConfig(threads=1))
    int8 = enc.with_backbone(quantize_int8(enc.backbone))
    assert int8._runner() is int8.backbone


def test_the_bfloat16_onednn_linear_is_the_product_of_the_rounded_input_and_weight():
    """bfloat16 weights and inputs, float32 accumulation: the same as a float64 product of the two operands
    rounded to bfloat16, to the rounding of the bfloat16 output; float output by default, bfloat16 on request."""
    import torch

    from bertplat.embed.encoder import OneDnnLinear, onednn_available

    if not onednn_available(torch.bfloat16):
        pytest.skip("this torch has no oneDNN bfloat16 Linear")
    torch.manual_seed(0)
    lin = torch.nn.Linear(384, 96)
    x = torch.randn(37, 384)
    with torch.inference_mode():
        got = OneDnnLinear(lin, dtype=torch.bfloat16)(x)
        kept = OneDnnLinear(lin, dtype=torch.bfloat16, float_output=False)(x)
        w, b = lin.weight.double(), lin.bias.double()
        rounded = torch.nn.functional.linear(x.bfloat16().double(), w.bfloat16().double(), b.bfloat16().double())
        exact = torch.nn.functional.linear(x.double(), w, b)
    assert got.dtype == torch.float32 and kept.dtype == torch.bfloat16
    err = (got.double() - rounded).abs()
    assert float((err / rounded.abs().clamp(min=1e-2)).max()) < 2 ** -7  # one bfloat16 rounding of the output
    assert float((got.double() - exact).abs().max()) > 1e-4  # it is not float32 under another name


def test_bfloat16_on_cpu_rounds_only_the_products_and_keeps_cosine_0_9999(minilm_dir):
    """dtype=bfloat16 on CPU: the runner holds bfloat16 copies of the Linear weights while the backbone (embeddings,
    LayerNorms, attention, residuals) stays float32; every vector is within cosine 0.9999 of float32's, and the
    fingerprint's precision says what ran. With onednn off it is the whole model in bfloat16, as on a GPU."""
    import torch

    from bertplat.embed.encoder import OneDnnLinear, onednn_available

    if not onednn_available(torch.bfloat16):
        pytest.skip("this torch has no oneDNN bfloat16 Linear")
    spec = read_model_spec(minilm_dir)
    texts = _parity_texts(200)
    fp32 = Encoder.from_config(spec, EmbedConfig(threads=1)).encode(texts)
    enc = Encoder.from_config(spec, EmbedConfig(threads=1, dtype="bfloat16"))
    got = enc.encode(texts)
    layer = enc._runner().layers[0]
    assert isinstance(layer.attn.qkv, OneDnnLinear) and layer.attn.qkv.weight.dtype == torch.bfloat16
    assert enc.backbone.layers[0].ln_attn.weight.dtype == torch.float32
    assert enc.precision == "bfloat16-mixed" and got.dtype == np.float32
    cos = (got * fp32).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(fp32, axis=1))
    assert cos.min() >= 0.9999, f"row {int(cos.argmin())} ({texts[int(cos.argmin())][:60]!r}): cosine {cos.min()}"
    assert cos.mean() < 0.9999999  # bfloat16 did run
    whole = Encoder.from_config(spec, EmbedConfig(threads=1, dtype="bfloat16", onednn=False))
    assert whole._runner() is whole.backbone and whole.backbone.layers[0].ln_attn.weight.dtype == torch.bfloat16
    assert whole.precision == "bfloat16"


def test_int8_does_not_combine_with_bfloat16():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="does not combine with dtype=bfloat16"):
        EmbedConfig(quantize="int8", dtype="bfloat16")

