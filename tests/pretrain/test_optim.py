"""LAMB against steps computed by hand, the warmup/decay schedule's values, and the optimiser groups."""

from __future__ import annotations

import math

import pytest
import torch

from bertplat.model import BertPretrainingModel, ModelConfig
from bertplat.pretrain.config import PretrainConfig
from bertplat.pretrain.optim import Lamb, WarmupDecay, build_optimizer, build_schedule, param_groups


def lamb_step(opt: Lamb, params_and_grads) -> None:
    for p, g in params_and_grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()


def test_lamb_two_steps_by_hand():
    # w = (3, 4), |w| = 5; g = (1, 2) both steps. Bias-corrected moments give m^ = g, v^ = g^2, so the Adam
    # direction is sign(g) = (1, 1) (eps negligible); plus weight decay 0.1 w; scaled by trust |w| / |update|.
    w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)  # no decay: plain Adam, no trust ratio
    opt = Lamb([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=0.1, eps=1e-15)

    lamb_step(opt, [(w, [1.0, 2.0]), (b, [0.5, -0.5])])
    u = [1 + 0.1 * 3, 1 + 0.1 * 4]  # (1.3, 1.4)
    trust = 5 / math.sqrt(1.3 ** 2 + 1.4 ** 2)
    w1 = [3 - 0.1 * trust * u[0], 4 - 0.1 * trust * u[1]]
    assert w.tolist() == pytest.approx(w1, abs=1e-12)
    assert b.tolist() == pytest.approx([0.9, -1.9], abs=1e-12)

    lamb_step(opt, [(w, [1.0, 2.0]), (b, [0.5, -0.5])])
    u2 = [1 + 0.1 * w1[0], 1 + 0.1 * w1[1]]  # m^ = g and v^ = g^2 again: the same direction
    trust2 = math.hypot(*w1) / math.hypot(*u2)
    assert w.tolist() == pytest.approx([w1[0] - 0.1 * trust2 * u2[0], w1[1] - 0.1 * trust2 * u2[1]], abs=1e-12)
    assert b.tolist() == pytest.approx([0.8, -1.8], abs=1e-12)


def test_lamb_trust_ratio_is_one_for_zero_weights_and_calls_the_closure():
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = Lamb([{"params": [w], "weight_decay": 0.5}], lr=0.01, eps=1e-8)
    calls = []

    def closure():
        calls.append(1)
        w.grad = torch.tensor([2.0, -1.0, 0.0], dtype=torch.float64)
        return torch.tensor(3.0)

    assert float(opt.step(closure)) == 3.0 and calls == [1]
    assert w.tolist() == pytest.approx([-0.01, 0.01, 0.0])  # trust 1 (|w| = 0), update lr * sign(g)
    with pytest.raises(ValueError, match="eps must be > 0"):
        Lamb([w], eps=0.0)


def test_warmup_then_linear_decay_by_hand():
    f = WarmupDecay(warmup=4, total=10, kind="linear")
    assert [f(s) for s in range(11)] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0])


def test_cosine_decay_to_a_floor_by_hand():
    f = WarmupDecay(warmup=0, total=8, kind="cosine", min_ratio=0.1)
    assert f(0) == pytest.approx(1.0)
    assert f(4) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert f(2) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert f(8) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)


def test_schedule_rejects_warmup_past_the_end():
    with pytest.raises(ValueError, match="warmup"):
        WarmupDecay(warmup=10, total=10)


def test_scheduler_applies_the_factor_per_optimizer_step():
    model = BertPretrainingModel(ModelConfig.preset("tiny", vocab_size=50))
    cfg = PretrainConfig(lr=1e-3, warmup_steps=2, max_steps=6)
    opt = build_optimizer(model, cfg, cuda=False)
    sched = build_schedule(opt, cfg, total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    assert sched.state_dict()["lr_lambdas"][0] == {"warmup": 2, "total": 6, "kind": "linear", "min_ratio": 0.0}


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_no_weight_decay_on_biases_and_layernorm(name):
    model = BertPretrainingModel(ModelConfig.preset("tiny", vocab_size=50))
    opt = build_optimizer(model, PretrainConfig(optimizer=name, weight_decay=0.05), cuda=False)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(n.endswith("bias") or ".ln" in n for n in (names[id(p)] for p in no_decay["params"]))
    assert all(n.endswith("weight") and ".ln" not in n for n in (names[id(p)] for p in decay["params"]))
    assert isinstance(opt, Lamb if name == "lamb" else torch.optim.AdamW)
    if name == "adamw":
        assert opt.defaults.get("fused") is True  # the fused kernel, on CPU tensors too (4.6x the loop)


def test_the_fused_cpu_adamw_steps_as_the_per_tensor_loop():
    torch.manual_seed(0)
    a = BertPretrainingModel(ModelConfig.preset("tiny", vocab_size=50))
    b = BertPretrainingModel(ModelConfig.preset("tiny", vocab_size=50))
    b.load_state_dict(a.state_dict())
    start = [p.detach().clone() for p in a.parameters()]
    fused = build_optimizer(a, PretrainConfig(weight_decay=0.05), cuda=False)
    loop = torch.optim.AdamW(param_groups(b, 0.05), lr=fused.defaults["lr"], betas=fused.defaults["betas"],
                             eps=fused.defaults["eps"], foreach=False)
    for step in range(5):
        g = torch.Generator().manual_seed(step)
        for pa, pb in zip(a.parameters(), b.parameters()):
            pa.grad = torch.randn(pa.shape, generator=g)
            pb.grad = pa.grad.clone()
        fused.step()
        loop.step()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=n)
    assert all(not torch.equal(pa, p0) for pa, p0 in zip(a.parameters(), start))  # every tensor moved
