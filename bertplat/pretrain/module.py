"""The LightningModule of BERT pretraining: loss, metrics, optimiser and what a checkpoint must carry.

Wraps :class:`bertplat.model.BertPretrainingModel`; Lightning owns the loop, precision, strategy,
accumulation and clipping. Two details make a run reproducible across resumption and world sizes:

- **Loss normalisation.** The MLM loss of a micro batch is its token-summed cross-entropy divided by the
  number of labelled tokens in the *whole optimizer step* (all micro batches of the accumulation window,
  all ranks), times ``world_size * accumulate`` to undo Lightning's and DDP's averaging. The gradient is
  then exactly that of the global batch's mean token loss, as if it had run in one piece; averaging
  per-micro-batch means instead weights tokens by how crowded their batch was (the gradient-accumulation
  bug transformers fixed in 4.46). The window's count comes with the batch (``window_masked``); one
  scalar all-reduce adds up the ranks.
- **Dropout randomness** is reseeded before every micro batch from (seed, rank, micro batch number), so
  it does not depend on when anything else (Lightning, a DataLoader starting its iterator) draws from the
  global generator: a resumed run draws the same dropout masks as an uninterrupted one. The global RNG
  states are saved and restored as well, for any other user of them.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from bertplat.model import BertPretrainingModel, ModelConfig
from bertplat.model.bert import IGNORE_INDEX
from bertplat.pretrain.config import PretrainConfig
from bertplat.pretrain.data import INFO_KEYS
from bertplat.pretrain.optim import build_optimizer, build_schedule

TAG_DROPOUT = 5  # seed-sequence tag (bertplat.pretrain.data uses 1-4)


def batch_flops(config: ModelConfig, num_tokens: int, sum_sq_tokens: int, num_masked: int) -> float:
    """Training FLOPs of a batch, each sequence at its own length: ``flops_per_token(n)`` is ``a + b*n``,
    so the batch needs only the sum of lengths and of squared lengths."""
    if num_tokens == 0:
        return 0.0
    f = num_masked / num_tokens
    one, two = config.flops_per_token(1, f), config.flops_per_token(2, f)
    b = two - one
    return (one - b) * num_tokens + b * sum_sq_tokens


def capture_rng() -> dict[str, Any]:
    """The global generators' states in types ``torch.load(weights_only=True)`` accepts (no numpy arrays)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, key.tolist(), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class PretrainModule(pl.LightningModule):
    """MLM (+ NSP/SOP) pretraining of one BertPretrainingModel."""

    def __init__(self, model_config: dict[str, Any], config: dict[str, Any], total_steps: int):
        super().__init__()
        # The configs travel in every checkpoint's hyper_parameters (litgpt: config beside the weights).
        self.save_hyperparameters()
        self.cfg = PretrainConfig.model_validate(config)
        self.model_config = ModelConfig.from_dict(model_config)
        self.model = BertPretrainingModel(self.model_config)
        if not self.model_config.sop_or_nsp_head:
            # MLM only: the pooler feeds nothing the loss uses; frozen, DDP does not wait for its gradients
            # (it would fail on unused parameters) and the optimiser skips it.
            self.model.backbone.pooler.requires_grad_(False)
        self.total_steps = total_steps
        self.micro_batches = 0  # micro batches trained on, across resumptions
        self.last_batch_info: dict[str, int] = {}
        self._forward = None
        self._val: torch.Tensor | None = None

    def configure_model(self) -> None:
        # Runs in every process (after ddp_spawn's pickling): a compiled function cannot be pickled,
        # and compiling the bound forward, not the module, keeps the state dict's keys unchanged.
        if self.cfg.compile and self._forward is None:
            # Trace unpadding's nonzero / .item() into the graph instead of breaking around them.
            torch._dynamo.config.capture_scalar_outputs = True
            torch._dynamo.config.capture_dynamic_output_shape_ops = True
            self._forward = torch.compile(self.model.forward, dynamic=True)

    def forward(self, train: bool = True, **batch: torch.Tensor):
        """The model's PretrainingOutput; compiled for training when asked (evaluation shapes would only
        add compiled variants). A subclass may wrap another implementation (the quality benchmark does)."""
        return (self._forward if train and self._forward is not None else self.model)(**batch)

    # ---- training -----------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        seed = np.random.SeedSequence([self.cfg.seed, TAG_DROPOUT, self.global_rank, self.micro_batches])
        torch.manual_seed(int(seed.generate_state(1, np.uint64)[0]))

    def _mlm_scale(self, window_masked: int) -> torch.Tensor:
        """world_size * accumulate / labelled tokens of the whole optimizer step."""
        n = torch.tensor(float(window_masked), device=self.device)
        world = self.trainer.world_size
        if world > 1:
            n = self.trainer.strategy.reduce(n, reduce_op="sum")
        return world * self.trainer.accumulate_grad_batches / n.clamp(min=1.0)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        info = {k: batch.pop(k) for k in INFO_KEYS if k in batch}
        out = self(**batch)
        mlm_sum = out.mlm_loss * out.mlm_count.clamp(min=1)  # the model returns the mean over labelled tokens
        loss = mlm_sum * self._mlm_scale(info.get("window_masked", info["num_masked"]))
        if out.nsp_loss is not None:
            loss = loss + out.nsp_loss  # a mean over sequences: micro batches have equal sizes
        self.micro_batches += 1
        self.last_batch_info = info
        self._log_train(out)
        return loss

    def _log_train(self, out) -> None:
        # Values of the micro batch that closes the step; Lightning turns them into floats only on the
        # steps it logs (no per-step host sync).
        metrics = {"train/loss": out.loss.detach(), "train/mlm_loss": out.mlm_loss.detach(),
                   "train/mlm_acc": out.mlm_correct / out.mlm_count.clamp(min=1)}
        if out.nsp_count is not None:
            metrics["train/nsp_acc"] = out.nsp_correct / out.nsp_count.clamp(min=1)
        metrics["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False)
        self.log("loss", metrics["train/loss"], on_step=True, on_epoch=False, prog_bar=True, logger=False)

    # ---- validation ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        # sums: mlm loss, mlm count, mlm correct, nsp loss, nsp count, nsp correct
        self._val = torch.zeros(6, dtype=torch.float64, device=self.device)
        # how often each token is a masked label: the baseline of always predicting the most frequent one
        self._val_labels = torch.zeros(self.model_config.vocab_size, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        for k in INFO_KEYS:
            batch.pop(k, None)
        labels = batch["labels"]
        self._val_labels += torch.bincount(labels[labels != IGNORE_INDEX].long(),
                                           minlength=self.model_config.vocab_size).double()
        out = self(train=False, **batch)
        parts = [out.mlm_loss * out.mlm_count, out.mlm_count, out.mlm_correct]
        if out.nsp_count is not None:
            parts += [out.nsp_loss * out.nsp_count, out.nsp_count, out.nsp_correct]
        else:
            parts += [torch.zeros((), device=self.device)] * 3
        self._val += torch.stack([p.double() for p in parts])

    def on_validation_epoch_end(self) -> None:
        # Sums over every rank's batches, then ratios: the metric of the whole validation set.
        s = self.trainer.strategy.reduce(self._val, reduce_op="sum").tolist()
        mlm_loss = s[0] / max(s[1], 1.0)
        counts = self.trainer.strategy.reduce(self._val_labels, reduce_op="sum")
        metrics = {"val/mlm_loss": mlm_loss, "val/mlm_acc": s[2] / max(s[1], 1.0),
                   "val/mlm_baseline_acc": float(counts.max()) / max(float(counts.sum()), 1.0),
                   "val/mlm_ppl": float(np.exp(min(mlm_loss, 50.0))), "val/loss": mlm_loss}
        if s[4] > 0:
            metrics["val/nsp_loss"] = s[3] / s[4]
            metrics["val/nsp_acc"] = s[5] / s[4]
            metrics["val/loss"] = mlm_loss + metrics["val/nsp_loss"]
        self.log_dict(metrics, prog_bar=False, sync_dist=False)

    # ---- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.cfg, cuda=self.device.type == "cuda")
        schedule = build_schedule(optimizer, self.cfg, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        from lightning.pytorch.strategies import FSDPStrategy

        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy):
            # FSDP shards the gradients: only the root FSDP module can take the norm over all shards.
            # Lightning's FSDP precision plugin refuses norm clipping rather than do it per shard.
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ---- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["bertplat"] = {"micro_batches": self.micro_batches, "rng": capture_rng(),
                                  "model_config": self.model_config.to_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("bertplat")
        if state is None:
            raise ValueError("this checkpoint was not written by bertplat pretraining (no 'bertplat' entry)")
        self.micro_batches = state["micro_batches"]
        restore_rng(state["rng"])
