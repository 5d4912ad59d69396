"""FSDP gradient clipping: the norm is taken by the root FSDP module over every shard.

Lightning runs FSDP on CUDA only, and its FSDP precision plugin refuses norm clipping, so the module
clips through ``FullyShardedDataParallel.clip_grad_norm_``. torch's FSDP itself runs on CPU with gloo:
this test wraps a real model in real FSDP (one process) and calls the module's clipping hook.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.precision import FSDPPrecision
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.fsdp import FullyShardedDataParallel

from bertplat.pretrain.config import PretrainConfig
from bertplat.pretrain.module import PretrainModule
from tests.model.helpers import make_batch, tiny_config


def grad_norm(params) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))


def test_fsdp_clips_by_the_global_norm_through_the_root_module(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        cfg = PretrainConfig(model="tiny", max_steps=10, grad_clip=0.5)
        module = PretrainModule(tiny_config().to_dict(), cfg.model_dump(mode="json"), total_steps=10)
        root = FullyShardedDataParallel(module.model, device_id=torch.device("cpu"), use_orig_params=True)
        root(**make_batch([12, 7, 16], 16)).loss.backward()
        params = list(module.model.parameters())
        assert grad_norm(params) > 1.0  # the clip below really clips

        strategy = FSDPStrategy()
        strategy.model = root
        # what the hook reads of a trainer: its strategy, and the precision plugin Lightning would clip with
        module.trainer = type("TrainerStandIn", (), {
            "strategy": strategy, "precision_plugin": FSDPPrecision("32-true"),
            "gradient_clip_val": 0.5, "gradient_clip_algorithm": "norm"})()
        optimizer = torch.optim.SGD(params, lr=0.1)
        module.configure_gradient_clipping(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
        assert abs(grad_norm(params) - 0.5) < 1e-4
    finally:
        dist.destroy_process_group()
