"""Training-step speed of our BERT (`bertplat.model`) against `transformers.BertForPreTraining`.

One training step = forward + backward + AdamW step, on the same config, weights, batches and
optimizer settings for every variant. Variants run in interleaved rounds (in a rotating order) so
that a noisy, shared machine slows them all alike; the median step time is reported.

    python -m benchmarks.pretrain_model --steps 10                      # CPU: mini and small, fp32
    python -m benchmarks.pretrain_model --device cuda --presets base    # GPU: bf16 autocast, compile, MFU

Run it from the repository root (or with bertplat installed). It imports only torch,
transformers and bertplat.model, so it runs on a GPU box without the platform's other deps.

Model FLOPs per step are counted per real (non-padding) token with `ModelConfig.flops_per_token`
at each sequence's own length, MLM head at the masked fraction, so padding counts as waste, and
the same count is used for every variant: MFU = model FLOPs / (step time * peak).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers

from bertplat.model import BertPretrainingModel, ModelConfig, param_groups
from bertplat.model.convert import hf_config_dict, to_hf_state_dict

VARIANTS = {
    # name: (implementation, unpad, compile)
    "ours": ("ours", True, False),
    "ours-padded": ("ours", False, False),
    "ours-compile": ("ours", True, True),
    "ours-padded-compile": ("ours", False, True),
    "hf": ("hf", None, False),
    "hf-compile": ("hf", None, True),
}
DEFAULT_VARIANTS = {"cpu": ["ours", "hf"],
                    "cuda": ["ours", "ours-padded", "ours-compile", "ours-padded-compile", "hf", "hf-compile"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default: cpu)")
    p.add_argument("--presets", nargs="+", default=None,
                   help="ModelConfig presets to measure (default: mini small on CPU, base on CUDA)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                   help="ours = unpadded eager, ours-padded = unpad=False, *-compile = torch.compile, "
                        "hf = BertForPreTraining with attn_implementation='sdpa' "
                        f"(default: {DEFAULT_VARIANTS['cpu']} on CPU, all on CUDA)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per step (default: 32 CPU, 128 CUDA)")
    p.add_argument("--seq-len", type=int, default=128, help="padded sequence length T (default: 128)")
    p.add_argument("--min-len", type=int, default=None,
                   help="shortest sequence; lengths are uniform in [min-len, seq-len] (default: seq-len // 4)")
    p.add_argument("--mask-prob", type=float, default=0.15, help="fraction of real tokens with an MLM label (default: 0.15)")
    p.add_argument("--vocab-size", type=int, default=30522, help="vocabulary size (default: 30522, BERT's uncased vocab)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first; compilation happens here (default: 3)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the timed steps are split into (default: 5)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="fp32, or bf16 autocast with fp32 weights (default: fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs (default: torch's default)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="accelerator peak for MFU (default: 989 on CUDA = H100 SXM dense bf16; none on CPU)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate; weight decay is 0.01 (default: 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and batches (default: 0)")
    p.add_argument("--out", type=Path, default=None, help="also write the results (every step time, env, args) as JSON here")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device")
    args.presets = args.presets or (["base"] if cuda else ["mini", "small"])
    args.variants = args.variants or DEFAULT_VARIANTS[args.device]
    args.batch_size = args.batch_size or (128 if cuda else 32)
    args.min_len = args.min_len or max(2, args.seq_len // 4)
    args.precision = args.precision or ("bf16" if cuda else "fp32")
    args.peak_tflops = args.peak_tflops or (989.0 if cuda else None)
    if not 2 <= args.min_len <= args.seq_len:
        p.error(f"--min-len must be in [2, --seq-len={args.seq_len}]")
    if args.steps < args.rounds:
        p.error("--steps must be at least --rounds")
    return args


def make_batches(args, n: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches with random lengths, two segments, MLM labels and NSP labels."""
    g = torch.Generator().manual_seed(args.seed)
    B, T = args.batch_size, args.seq_len
    batches = []
    for _ in range(n):
        lengths = torch.randint(args.min_len, T + 1, (B,), generator=g)
        mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # (B, T)
        ids = torch.randint(5, args.vocab_size, (B, T), generator=g) * mask
        split = (lengths * torch.rand(B, generator=g)).long().clamp(min=1)
        segment = ((torch.arange(T)[None, :] >= split[:, None]) & mask.bool()).long()
        masked = (torch.rand(B, T, generator=g) < args.mask_prob) & mask.bool()
        masked[:, 1] = True  # every sequence has a label
        labels = torch.where(masked, ids, torch.full_like(ids, -100))
        nsp = torch.randint(0, 2, (B,), generator=g)
        batch = dict(input_ids=ids, attention_mask=mask, token_type_ids=segment, labels=labels,
                     next_sentence_label=nsp)
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def model_flops(config: ModelConfig, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one training step on ``batch``: each real token at its own sequence's length."""
    lengths = batch["attention_mask"].sum(1).tolist()
    masked = int((batch["labels"] != -100).sum())
    fraction = masked / sum(lengths)
    return sum(n * config.flops_per_token(n, masked_fraction=fraction) for n in lengths)


@dataclass
class Runner:
    """One variant: a model, its optimizer, and a step function taking a batch."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    is_hf: bool
    step_fn: Callable[..., object] | None = None
    times_ms: list[float] = field(default_factory=list)
    peak_mem_gb: float = 0.0

    def step(self, batch, autocast) -> None:
        with autocast():
            out = self.step_fn(**batch)
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def build_runners(args, config: ModelConfig, device: torch.device) -> list[Runner]:
    torch.manual_seed(args.seed)
    reference = BertPretrainingModel(config)
    hf_weights = to_hf_state_dict(reference)
    runners = []
    for name in args.variants:
        impl, unpad, compiled = VARIANTS[name]
        if impl == "ours":
            model = BertPretrainingModel(config.replace(unpad=unpad))
            model.load_state_dict(reference.state_dict())
        else:
            hf_config = transformers.BertConfig(**hf_config_dict(config), attn_implementation="sdpa")
            model = transformers.BertForPreTraining(hf_config)
            model.load_state_dict(hf_weights)
        model = model.to(device).train()
        fused = device.type == "cuda"  # the same optimizer kernel for every variant
        optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=args.lr, fused=fused)
        # dynamic=True: the unpadded path's token count changes every batch
        step_fn = torch.compile(model, dynamic=True, mode=args.compile_mode) if compiled else model
        runners.append(Runner(name, model, optimizer, impl == "hf", step_fn))
    return runners


def check_same_loss(runners: list[Runner], batch, autocast) -> dict[str, float]:
    """Same weights, eval mode: every variant must compute the same loss before timing means anything."""
    losses = {}
    for r in runners:
        r.model.eval()
        with torch.no_grad(), autocast():
            losses[r.name] = float(r.model(**batch).loss)
        r.model.train()
    return losses


def time_preset(args, preset: str, device: torch.device) -> list[dict]:
    config = ModelConfig.preset(preset, vocab_size=args.vocab_size, max_position_embeddings=max(512, args.seq_len))
    batches = make_batches(args, n=4, device=device)
    runners = build_runners(args, config, device)
    cuda = device.type == "cuda"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    losses = check_same_loss(runners, batches[0], autocast)
    failed = {}
    for r in list(runners):  # warm up (and compile); a variant that fails is reported, not fatal
        try:
            for i in range(max(args.warmup, 1)):
                r.step(batches[i % len(batches)], autocast)
        except Exception as exc:  # e.g. a compiler error in one variant
            failed[r.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"[{preset}/{r.name}] failed during warm-up, left out: {failed[r.name]}")
            runners.remove(r)
    sync()
    per_round = args.steps // args.rounds
    k = 0
    for rnd in range(args.rounds):
        order = runners[rnd % len(runners):] + runners[: rnd % len(runners)]  # rotate who goes first
        for r in order:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            for j in range(per_round):
                batch = batches[(k + j) % len(batches)]
                sync()
                t0 = time.perf_counter()
                r.step(batch, autocast)
                sync()
                r.times_ms.append((time.perf_counter() - t0) * 1e3)
            if cuda:
                r.peak_mem_gb = max(r.peak_mem_gb, torch.cuda.max_memory_allocated() / 2**30)
        k += per_round

    real_tokens = statistics.mean(float(b["attention_mask"].sum()) for b in batches)
    flops = statistics.mean(model_flops(config, b) for b in batches)
    hf_ms = next((statistics.median(r.times_ms) for r in runners if r.name == "hf"), None)
    results = []
    for r in runners:
        ms = statistics.median(r.times_ms)
        results.append(dict(
            preset=preset, variant=r.name, ms_per_step=ms, ms_all=r.times_ms,
            tokens_per_s=real_tokens / (ms / 1e3), padded_tokens_per_s=args.batch_size * args.seq_len / (ms / 1e3),
            model_tflops_per_step=flops / 1e12,
            mfu=flops / (ms / 1e3) / (args.peak_tflops * 1e12) if args.peak_tflops else None,
            ratio_vs_hf=ms / hf_ms if hf_ms else None, eval_loss=losses[r.name],
            peak_mem_gb=r.peak_mem_gb if cuda else None, error=None))
    for name, error in failed.items():
        results.append(dict(preset=preset, variant=name, ms_per_step=None, error=error))
    return results


def print_table(results: list[dict]) -> None:
    head = f"{'preset':<8} {'variant':<20} {'ms/step':>9} {'tokens/s':>10} {'MFU':>6} {'vs hf':>6} {'mem GB':>7} {'loss':>8}"
    print(head)
    print("-" * len(head))
    for r in results:
        if r["error"]:
            print(f"{r['preset']:<8} {r['variant']:<20} failed: {r['error'][:80]}")
            continue
        mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "     -"
        ratio = f"{r['ratio_vs_hf']:6.2f}" if r["ratio_vs_hf"] is not None else "     -"
        mem = f"{r['peak_mem_gb']:7.2f}" if r["peak_mem_gb"] is not None else "      -"
        print(f"{r['preset']:<8} {r['variant']:<20} {r['ms_per_step']:9.1f} {r['tokens_per_s']:10.0f} "
              f"{mfu} {ratio} {mem} {r['eval_loss']:8.4f}")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True  # what a real fp32 GPU run would use
    if any(VARIANTS[v][2] for v in args.variants):
        # Let dynamo trace .item() / nonzero (unpadding) into one graph instead of breaking around them.
        torch._dynamo.config.capture_scalar_outputs = True
        torch._dynamo.config.capture_dynamic_output_shape_ops = True
    results = []
    for preset in args.presets:
        results += time_preset(args, preset, device)
    env = dict(device=torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
               threads=torch.get_num_threads(), torch=torch.__version__, transformers=transformers.__version__)
    print(f"{env}  batch={args.batch_size} seq_len={args.seq_len} lengths~U[{args.min_len},{args.seq_len}] "
          f"precision={args.precision} steps={args.steps} (median; 'vs hf' = ms / ms of hf, < 1 is faster)")
    print_table(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = dict(env=env, args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                       results=results)
        args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
