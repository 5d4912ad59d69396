"""Pretraining benchmarks, the three parts of the issue in one script.

    python -m benchmarks.pretrain --suite quality           # ours vs HF BertForPreTraining, ~15 min on 2 cores
    python -m benchmarks.pretrain --suite cpu [-- ARGS]     # step time on CPU (benchmarks.pretrain_model)
    python -m benchmarks.pretrain --suite gpu [-- ARGS]     # step time, bf16, compile, MFU on CUDA

Quality: the ``mini`` preset pretrained on examples built from the shared English Wikipedia
(``corpora/en/wikipedia/wikitasks_2021``, the first ``--wiki-files`` of its 64 files) for a fixed token
budget, twice through the same Lightning Trainer, DataModule, optimiser, schedule and loss
normalisation of ``bertplat.pretrain``: once with our model, once with ``transformers.BertForPreTraining``
built from the same config (``hf_config_dict``) and the same initial weights (``to_hf_state_dict``). Both
see the same batches and masks; only dropout draws differ (each model draws its own masks). Validation
MLM accuracy on the same held-out examples with fixed masks (up to 2,048; the default 12 files hold 791) is
plotted against tokens seen, both curves in one PNG. The default budget (1.5M tokens, ~470 steps of 32 sequences) is small, sized for a
2-core CPU: it shows the start of learning, not a converged model; raise ``--tokens`` on a GPU.
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

OUT = REPO / "benchmarks" / "out" / "pretrain"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["quality", "cpu", "gpu"], default="quality",
                   help="quality: ours vs HF learning curves; cpu / gpu: step-time benchmark (benchmarks.pretrain_model; "
                        "arguments after -- go to it)")
    p.add_argument("--tokens", type=float, default=1.5e6, help="token budget per model (default 1.5M)")
    p.add_argument("--eval-every", type=int, default=50, help="validate every this many steps (default 50)")
    p.add_argument("--wiki-files", type=int, default=12, help="files of wikitasks_2021 to use, of 64 (default 12)")
    p.add_argument("--micro-batch-size", type=int, default=32, help="sequences per step (default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights, data order, masks and dropout; the same for both models "
                        "(default 0, PretrainConfig's); another seed is another replicate of the comparison")
    p.add_argument("--model-overrides", type=json.loads, default={},
                   help='JSON of ModelConfig fields to change for both models, e.g. \'{"hidden_dropout": 0}\'')
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


def tag(args) -> str:
    """File-name suffix naming the model overrides, if any."""
    return "".join(f"-{k}{v}" for k, v in sorted(args.model_overrides.items()))


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

    cfg = PretrainConfig(model="mini", lr=args.lr, warmup_ratio=0.06, max_steps=None, max_tokens=int(args.tokens),
                         micro_batch_size=args.micro_batch_size, accelerator="auto", val_every_n_steps=args.eval_every,
                         val_examples=2048, log_every_n_steps=log_every(args.eval_every),
                         checkpoint_every_n_steps=10**9, min_val_mlm_accuracy=0.0, seed=args.seed,
                         model_overrides=args.model_overrides)
    source = ExamplesSource.open(examples, lake)
    model_cfg = model_config_for(source, cfg)
    run_dir = args.out / "runs" / f"{impl}-{int(args.tokens)}-seed{args.seed}{tag(args)}-{time.strftime('%Y%m%d-%H%M%S')}"
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
            "val_mlm_loss": series(history, "val/mlm_loss")[1], "seconds": elapsed, "total_steps": total,
            "run_dir": str(run_dir)}


def plot_quality(results: list[dict], path: Path, title: str) -> Path:
    """Validation MLM accuracy (left) and loss (right) against training tokens, one line per model."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    label = {"ours": "bertplat BertPretrainingModel", "hf": "transformers BertForPreTraining"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for r in results:
        for ax, key in zip(axes, ("val_mlm_acc", "val_mlm_loss")):
            ax.plot(r["tokens"], r[key], marker="o", markersize=3, label=label[r["impl"]])
    for ax, name in zip(axes, ("validation MLM accuracy", "validation MLM loss")):
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


def quality(args) -> list[dict]:
    lake, examples = build_examples(args)
    results = [train(impl, lake, examples, args) for impl in args.models]
    png = plot_quality(results, args.out / f"quality-seed{args.seed}{tag(args)}.png",
                       f"mini on {examples.ref()}, seed {args.seed}{tag(args).replace('-', ', ')}")
    print(f"\n{machine()}; torch {torch.__version__}")
    print(f"{'tokens':>10} " + " ".join(f"{r['impl'] + ' acc':>10} {r['impl'] + ' loss':>10}" for r in results))
    for i, tokens in enumerate(results[0]["tokens"]):
        print(f"{tokens or 0:10,.0f} " + " ".join(f"{r['val_mlm_acc'][i]:10.4f} {r['val_mlm_loss'][i]:10.4f}"
                                                   for r in results if i < len(r["val_mlm_acc"])))
    for r in results:
        print(f"{r['impl']}: {r['total_steps']} steps in {r['seconds']:.0f}s, final validation MLM accuracy "
              f"{r['val_mlm_acc'][-1]:.4f}, loss {r['val_mlm_loss'][-1]:.4f}")
    data = args.out / f"quality-seed{args.seed}{tag(args)}.json"
    data.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {png} and {data}")
    return results


def main(argv: list[str] | None = None) -> None:
    args, rest = parse_args(argv)
    if args.suite == "quality":
        quality(args)
        return
    from benchmarks import pretrain_model

    pretrain_model.main((["--device", "cuda"] if args.suite == "gpu" else []) + rest)


if __name__ == "__main__":
    main()
