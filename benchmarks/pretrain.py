"""Pretraining benchmarks, the three parts of the issue in one script.

    python -m benchmarks.pretrain --suite quality --seed 0  # ours vs HF BertForPreTraining, ~25 min on 2 cores
    python -m benchmarks.pretrain --suite compare --seeds 0 1 2   # every seed's curves: table, gap, one plot
    python -m benchmarks.pretrain --suite cpu [-- ARGS]     # step time on CPU (benchmarks.pretrain_model)
    python -m benchmarks.pretrain --suite gpu [-- ARGS]     # step time, bf16, compile, MFU on CUDA

Quality: the ``mini`` preset pretrained on examples built from the shared English Wikipedia
(``corpora/en/wikipedia/wikitasks_2021``, the first ``--wiki-files`` of its 64 files) for a fixed token
budget, through the same Lightning Trainer, DataModule, optimiser, schedule and loss normalisation of
``bertplat.pretrain``: once with our model, once with ``transformers.BertForPreTraining`` built from the
same config (``hf_config_dict``) and the same initial weights (``to_hf_state_dict``). Both see the same
batches and masks; only dropout draws differ (each model draws its own masks), so one seed is one
replicate and the comparison takes several. Validation MLM accuracy on the same held-out examples with
fixed masks (up to 2,048; the default 12 files hold 791) is plotted against tokens seen. Each model's
curve is saved on its own (``quality-seed{S}-{ours,hf}.json``), so the two can train in separate
processes, one core each (``OMP_NUM_THREADS=1 ... --models hf`` beside ``... --models ours``).
``--suite compare`` then puts all seeds in one plot with each model's mean, and prints the gap.

The default budget (1.5M tokens, 592 steps of 32 sequences) is sized for a 2-core CPU: it shows the
start of learning, not a converged model; raise ``--tokens`` on a GPU. At lr 1e-3 post-LN ``mini``
collapses at this budget (it predicts the most frequent token and the majority NSP label for hundreds
of steps, and whether it escapes depends on the dropout draws, for either model), hence 5e-4 with 10%
warmup.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import REPO, machine, require_shared_data
from bertplat.model.dropout import Dropout, dropout, keep_mask

OUT = REPO / "benchmarks" / "out" / "pretrain"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["quality", "compare", "cpu", "gpu"], default="quality",
                   help="quality: ours vs HF learning curves; cpu / gpu: step-time benchmark (benchmarks.pretrain_model; "
                        "arguments after -- go to it)")
    p.add_argument("--tokens", type=float, default=1.5e6, help="token budget per model (default 1.5M)")
    p.add_argument("--eval-every", type=int, default=50, help="validate every this many steps (default 50)")
    p.add_argument("--wiki-files", type=int, default=12, help="files of wikitasks_2021 to use, of 64 (default 12)")
    p.add_argument("--micro-batch-size", type=int, default=32, help="sequences per step (default 32)")
    p.add_argument("--lr", type=float, default=5e-4,
                   help="peak learning rate (default 5e-4; 1e-3 collapses post-LN mini at this budget)")
    p.add_argument("--warmup-ratio", type=float, default=0.1,
                   help="share of the steps spent warming the learning rate up linearly (default 0.1)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights, data order, masks and dropout; the same for both models "
                        "(default 0, PretrainConfig's); another seed is another replicate of the comparison")
    p.add_argument("--model-overrides", type=json.loads, default={},
                   help='JSON of ModelConfig fields to change for both models, e.g. \'{"hidden_dropout": 0}\'')
    p.add_argument("--aligned-dropout", action="store_true",
                   help="control: the unpadded path draws its hidden-dropout masks at the padded shape, so it sees "
                        "the same dropout noise as the padded path and HF from the same seed (AlignedDropout)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="--suite compare: the seeds to summarise (default 0 1 2)")
    p.add_argument("--models", nargs="+", choices=["ours", "hf"], default=["ours", "hf"], help="which to train")
    p.add_argument("--out", type=Path, default=OUT, help=f"data, runs and results (default {OUT})")
    if argv is None:
        argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    return p.parse_args(argv[: argv.index("--")] if "--" in argv else argv), rest


# ---- data ---------------------------------------------------------------------------------------------
def build_examples(args):
    """corpus -> vocab -> examples in ``args.out``'s lake; fingerprinted, so a re-run reuses them."""
    from bertplat.examples.config import ExamplesConfig
    from bertplat.examples.stage import run_examples
    from bertplat.ingest import IngestConfig, run_ingest
    from bertplat.lake import Lake
    from bertplat.vocab import VocabConfig, run_vocab

    wiki = require_shared_data() / "corpora" / "en" / "wikipedia" / "wikitasks_2021" / "AA"
    files = sorted(wiki.glob("wiki_*"))[: args.wiki_files]
    lake = Lake(str(args.out / "data"))
    name = f"wiki{len(files)}"
    corpus = run_ingest([str(f) for f in files], name, IngestConfig(format="wikiextractor"), lake).dataset
    vocab = run_vocab(corpus, name, VocabConfig(vocab_size=8192, pad_to_multiple_of=64), lake).dataset
    examples = run_examples(corpus, vocab, name, ExamplesConfig(objective="nsp", max_seq_length=128,
                                                                masking="dynamic", validation_fraction=0.02), lake)
    print(examples.summary().split("\n")[0])
    return lake, examples.dataset


# ---- the HF model behind the same LightningModule ---------------------------------------------------------
def hf_module_class():
    from transformers import BertConfig, BertForPreTraining

    from bertplat.model.bert import PretrainingOutput
    from bertplat.model.convert import hf_config_dict, to_hf_state_dict
    from bertplat.pretrain.module import PretrainModule

    class HFPretrainModule(PretrainModule):
        """PretrainModule whose model is transformers' BertForPreTraining with our initial weights."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            hf = BertForPreTraining(BertConfig(**hf_config_dict(self.model_config), attn_implementation="sdpa"))
            hf.load_state_dict(to_hf_state_dict(self.model))  # the weights our model was initialised with
            self.model = hf

        def forward(self, train: bool = True, **batch):
            """HF outputs in our PretrainingOutput, computed exactly as BertPretrainingModel computes them."""
            labels, nsp = batch["labels"], batch.get("next_sentence_label")
            out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             token_type_ids=batch["token_type_ids"])
            positions = torch.nonzero(labels.flatten() != -100).flatten()
            logits = out.prediction_logits.flatten(0, 1)[positions]  # (M, V)
            targets = labels.flatten()[positions]
            count = torch.ones_like(targets).sum()
            mlm_loss = F.cross_entropy(logits.float(), targets, reduction="sum") / count.clamp(min=1)
            nsp_loss = F.cross_entropy(out.seq_relationship_logits.float(), nsp)
            return PretrainingOutput(
                mlm_loss + nsp_loss, mlm_loss, nsp_loss, logits, positions, out.seq_relationship_logits, count,
                (logits.argmax(-1) == targets).sum(), torch.ones_like(nsp).sum(),
                (out.seq_relationship_logits.argmax(-1) == nsp).sum())

    return HFPretrainModule


class AlignedDropout(torch.nn.Module):
    """Dropout for the unpadded path that draws its mask at the padded shape and keeps the real rows.

    Dropout on CPU (`bertplat.model.dropout`) draws a (B, T, H) mask on the padded path but a (nnz, H) one on the
    unpadded path, so the two paths see different dropout noise from the same seed. Drawing the full
    (B * T, H) mask and gathering the real tokens' rows makes the unpadded path consume the random
    stream exactly as the padded path does: a control that separates what the paths compute from
    which dropout masks they happened to draw. Only for that experiment; it wastes the draws at padding.
    """

    def __init__(self, p: float, layout: dict):
        super().__init__()
        self.p, self.layout = p, layout  # layout: {"indices", "batch", "seqlen"} of the current batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # rows other than the batch's real tokens: the last layer's selected rows (BertBackbone.encode_selected),
        # which both paths hold as the same (M, H) rows and so draw alike
        if (not self.training or self.p == 0.0 or x.dim() != 2 or x.device.type != "cpu"
                or x.shape[0] != self.layout["indices"].shape[0]):
            return dropout(x, self.p, self.training)
        n = self.layout["batch"] * self.layout["seqlen"]
        noise = keep_mask((n, x.shape[-1]), self.p, x.dtype, x.device)  # as bertplat's CPU dropout draws it
        return x * noise[self.layout["indices"]]


def align_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every dropout module of a bertplat model for `AlignedDropout` (see there); returns the model.

    The model must be called as a module (not through ``model.forward``), so its pre-hook sees the mask."""
    layout: dict = {}

    def record_layout(module, args, kwargs):  # the real tokens' rows, as padding.unpad_input finds them
        mask = kwargs["attention_mask"] if "attention_mask" in kwargs else args[1]
        layout.update(indices=torch.nonzero(mask.flatten()).flatten(), batch=mask.shape[0], seqlen=mask.shape[1])

    model.register_forward_pre_hook(record_layout, with_kwargs=True)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, (torch.nn.Dropout, Dropout)):
                setattr(module, name, AlignedDropout(child.p, layout))
    return model


def tag(args) -> str:
    """File-name suffix naming what differs from the defaults: training settings, then model overrides."""
    default = parse_args([])[0]
    settings = ("tokens", "lr", "warmup_ratio", "micro_batch_size")
    changed = [f"-{k.replace('_', '')}{getattr(args, k):g}" for k in settings if getattr(args, k) != getattr(default, k)]
    changed += ["-aligneddropout"] if args.aligned_dropout else []
    return "".join(changed) + "".join(f"-{k}{v}" for k, v in sorted(args.model_overrides.items()))


def log_every(eval_every: int) -> int:
    """The largest divisor of eval_every up to a quarter of it: tokens are logged at every validation step."""
    return next(d for d in range(max(1, eval_every // 4), 0, -1) if eval_every % d == 0)


def train(impl: str, lake, examples, args) -> dict:
    """One model through bertplat.pretrain's trainer; returns its validation curve against tokens."""
    import lightning.pytorch as pl

    from bertplat.pretrain import PretrainConfig
    from bertplat.pretrain.callbacks import RunCheckpoints, Throughput
    from bertplat.pretrain.datamodule import ExamplesSource, PretrainDataModule
    from bertplat.pretrain.module import PretrainModule
    from bertplat.pretrain.report import read_history, series
    from bertplat.pretrain.stage import build_trainer, model_config_for, total_steps_for

    cfg = PretrainConfig(model="mini", lr=args.lr, warmup_ratio=args.warmup_ratio, max_steps=None,
                         max_tokens=int(args.tokens), micro_batch_size=args.micro_batch_size, accelerator="auto",
                         val_every_n_steps=args.eval_every,
                         val_examples=2048, log_every_n_steps=log_every(args.eval_every),
                         checkpoint_every_n_steps=10**9, min_val_mlm_accuracy=0.0, seed=args.seed,
                         model_overrides=args.model_overrides)
    source = ExamplesSource.open(examples, lake)
    model_cfg = model_config_for(source, cfg)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.out / "runs" / f"{impl}-{int(args.tokens)}-seed{args.seed}{tag(args)}-{stamp}"
    cuda = torch.cuda.is_available()
    callbacks = [Throughput(model_cfg, cfg.resolved_precision(cuda), None, cfg.log_every_n_steps),
                 RunCheckpoints(run_dir / "checkpoints")]
    trainer = build_trainer(cfg, run_dir, callbacks, progress_bar=sys.stderr.isatty(), cuda=cuda)
    total = total_steps_for(source, cfg, trainer.world_size)
    trainer.fit_loop.epoch_loop.max_steps = callbacks[1].total_steps = total
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, verbose=False)  # the same initial weights for both
    module_class = PretrainModule if impl == "ours" else hf_module_class()
    module = module_class(model_cfg.to_dict(), cfg.model_dump(mode="json"), total)
    if args.aligned_dropout and impl == "ours":
        align_dropout(module.model)
    start = time.perf_counter()
    trainer.fit(module, datamodule=PretrainDataModule(source, cfg), weights_only=True)
    elapsed = time.perf_counter() - start
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text(encoding="utf-8"))
    if state["status"] != "finished":
        raise SystemExit(f"{impl}: training {state['status']} at step {state['global_step']} of {total}; no result")
    history = read_history(run_dir / "logs" / "csv")
    steps, acc = series(history, "val/mlm_acc")
    tokens = dict(zip(*series(history, "perf/tokens_seen")))
    return {"impl": impl, "steps": steps, "tokens": [tokens.get(s) for s in steps], "val_mlm_acc": acc,
            "val_mlm_loss": series(history, "val/mlm_loss")[1], "val_nsp_acc": series(history, "val/nsp_acc")[1],
            "seconds": elapsed, "total_steps": total, "run_dir": str(run_dir)}


CURVES = {"val_mlm_acc": "validation MLM accuracy", "val_mlm_loss": "validation MLM loss"}
COLOUR = {"ours": "tab:blue", "hf": "tab:orange"}
LABEL = {"ours": "bertplat BertPretrainingModel", "hf": "transformers BertForPreTraining"}


def plot_quality(runs: list[dict], path: Path, title: str, means: dict | None = None) -> Path:
    """Validation MLM accuracy (left) and loss (right) against training tokens, a line per run. With
    ``means`` (compare's summary) the runs are drawn thin and each model's mean over seeds thick."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for ax, (key, name) in zip(axes, CURVES.items()):
        for r in runs:
            style = dict(alpha=0.3, linewidth=0.8) if means else dict(marker="o", markersize=3, label=LABEL[r["impl"]])
            ax.plot(r["tokens"], r[key], color=COLOUR[r["impl"]], **style)
        for impl in ("ours", "hf") if means else ():
            ax.plot(means["tokens"], means[key][impl]["mean"], color=COLOUR[impl], linewidth=2.2,
                    label=f"{LABEL[impl]} (mean of {len(means['seeds'])} seeds)")
        ax.set_xlabel("training tokens (real, all devices)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def result_path(args, impl: str, seed: int | None = None) -> Path:
    """Where one model's curve for one seed is kept: ``quality-seed{S}{tag}-{impl}.json``."""
    return args.out / f"quality-seed{args.seed if seed is None else seed}{tag(args)}-{impl}.json"


def load_results(args, seed: int) -> list[dict]:
    """The curves already measured for ``seed`` under these settings (ours first, then HF)."""
    paths = [result_path(args, impl, seed) for impl in ("ours", "hf")]
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths if p.exists()]


def print_curves(results: list[dict]) -> None:
    print(f"{'tokens':>10} " + " ".join(f"{r['impl'] + ' acc':>10} {r['impl'] + ' loss':>10}" for r in results))
    for i, tokens in enumerate(results[0]["tokens"]):
        print(f"{tokens or 0:10,.0f} " + " ".join(f"{r['val_mlm_acc'][i]:10.4f} {r['val_mlm_loss'][i]:10.4f}"
                                                   for r in results if i < len(r["val_mlm_acc"])))


def quality(args) -> list[dict]:
    """Train the chosen models for one seed; each curve is saved as it finishes, so ours and HF can run in
    separate processes (``--models ours`` and ``--models hf`` side by side) and still share one plot."""
    lake, examples = build_examples(args)
    for impl in args.models:
        result = train(impl, lake, examples, args)
        path = result_path(args, impl)
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"{impl}: {result['total_steps']} steps in {result['seconds']:.0f}s, final validation MLM accuracy "
              f"{result['val_mlm_acc'][-1]:.4f}, loss {result['val_mlm_loss'][-1]:.4f}; wrote {path}")
    results = load_results(args, args.seed)
    png = plot_quality(results, args.out / f"quality-seed{args.seed}{tag(args)}.png",
                       f"mini on {examples.ref()}, seed {args.seed}{tag(args).replace('-', ', ')}")
    print(f"\n{machine()}; torch {torch.__version__}")
    print_curves(results)
    print(f"wrote {png}")
    return results


def escape_tokens(r: dict, threshold: float = 0.8) -> float | None:
    """Tokens seen at the first validation where NSP accuracy exceeds ``threshold``: where the run left
    the early plateau (before it, the model predicts the majority NSP label and the most frequent token)."""
    return next((t for t, a in zip(r["tokens"], r["val_nsp_acc"]) if a > threshold), None)


def compare(args) -> dict:
    """Every seed measured under these settings: a table per seed, the mean gap between the curves, and
    one plot with each seed thin and the mean of each model thick."""
    import numpy as np

    runs = {seed: {r["impl"]: r for r in load_results(args, seed)} for seed in args.seeds}
    paired = [s for s, rs in runs.items() if {"ours", "hf"} <= rs.keys()]
    if not paired:
        raise SystemExit(f"no seed of {args.seeds} has both curves under {args.out} with these settings; "
                         "run --suite quality --seed N first")
    print(f"{'seed':>4} {'model':>5} {'left plateau at':>16} {'final MLM acc':>14} {'MLM loss':>9} {'NSP acc':>8}")
    for seed in paired:
        for impl in ("ours", "hf"):
            r = runs[seed][impl]
            esc = escape_tokens(r)
            print(f"{seed:>4} {impl:>5} {'never' if esc is None else f'{esc:,.0f} tok':>16} "
                  f"{r['val_mlm_acc'][-1]:14.4f} {r['val_mlm_loss'][-1]:9.4f} {r['val_nsp_acc'][-1]:8.3f}")
    # Curves share their validation steps (same schedule and data), so they compare point by point.
    tokens = runs[paired[0]]["ours"]["tokens"]
    summary: dict = {"seeds": paired, "tokens": tokens}
    for key in CURVES:
        curves = {impl: np.array([runs[s][impl][key] for s in paired]) for impl in ("ours", "hf")}  # (seeds, points)
        gap = curves["ours"] - curves["hf"]
        summary[key] = {impl: {"mean": c.mean(0).tolist(), "std": c.std(0).tolist()} for impl, c in curves.items()}
        summary[key]["final_gap_mean"] = float(gap[:, -1].mean())
        sem = gap[:, -1].std(ddof=1) / np.sqrt(len(paired)) if len(paired) > 1 else None  # standard error
        summary[key]["final_gap_sem"] = None if sem is None else float(sem)
        summary[key]["mean_abs_gap"] = float(np.abs(gap.mean(0)).mean())
    acc, loss = summary["val_mlm_acc"], summary["val_mlm_loss"]
    print(f"\nmean over {len(paired)} seeds at {tokens[-1]:,.0f} tokens: MLM acc ours {acc['ours']['mean'][-1]:.4f} "
          f"(sd {acc['ours']['std'][-1]:.4f}) vs HF {acc['hf']['mean'][-1]:.4f} (sd {acc['hf']['std'][-1]:.4f}); "
          f"MLM loss ours {loss['ours']['mean'][-1]:.4f} vs HF {loss['hf']['mean'][-1]:.4f}")
    sem = {key: "" if summary[key]["final_gap_sem"] is None else f" +- {summary[key]['final_gap_sem']:.4f} (s.e.)"
           for key in CURVES}
    print(f"final gap ours - HF: MLM acc {acc['final_gap_mean']:+.4f}{sem['val_mlm_acc']}, "
          f"MLM loss {loss['final_gap_mean']:+.4f}{sem['val_mlm_loss']}; mean |gap| of the mean curves over all "
          f"validations: acc {acc['mean_abs_gap']:.4f}, loss {loss['mean_abs_gap']:.4f}")
    png = plot_quality([runs[s][impl] for s in paired for impl in ("ours", "hf")],
                       args.out / f"quality-seeds{tag(args)}.png",
                       f"mini, seeds {', '.join(map(str, paired))}{tag(args).replace('-', ', ')}", means=summary)
    data = args.out / f"quality-seeds{tag(args)}.json"
    data.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {png} and {data}")
    return summary


def main(argv: list[str] | None = None) -> None:
    args, rest = parse_args(argv)
    if args.suite == "quality":
        quality(args)
        return
    if args.suite == "compare":
        compare(args)
        return
    from benchmarks import pretrain_model

    pretrain_model.main((["--device", "cuda"] if args.suite == "gpu" else []) + rest)


if __name__ == "__main__":
    main()
