"""The [CLS] pooler of BERT-layout models: how saturated it is, and an export with it re-initialised.

    python -m benchmarks.pooler MODEL_DIR [MODEL_DIR ...]            # statistics on 128 SST-2 dev sentences
    python -m benchmarks.pooler MODEL_DIR --reinit-to OUT_DIR        # a copy with the pooler as BERT initialises it

Statistics (read with HF ``BertModel``, so they are independent of bertplat's own model code): the mean
|tanh| of the pooled output and the share above 0.99 (saturation), and the mean pairwise cosine of the pooled
outputs and of the [CLS] states under them over the sentences (1.0 = the same vector for every sentence), and
how widely [CLS] attends in the last layer: the entropy of its attention over the real tokens divided by
log(tokens), averaged over heads and sentences (1.0 = uniform attention, i.e. [CLS] is the average of the
sentence's tokens; near 0 = it reads one token).
``--reinit-to`` copies the directory and draws the pooler's weight from N(0, 0.02) (seed 0) with a zero bias;
fine-tune that copy with ``bertplat finetune --model OUT_DIR ...`` to see what the pretrained pooler costs.
Used for the pooler figures of "Does our pretraining help?" in RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import torch

from benchmarks.common import require_shared_data


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    x = torch.nn.functional.normalize(x, dim=-1)
    n = len(x)
    return float(((x @ x.T).sum() - n) / (n * n - n))


def pooler_stats(model_dir: Path, texts: list[str]) -> dict[str, float]:
    from transformers import BertModel, BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    batch = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    pooled = out.pooler_output
    return {"mean_abs_tanh": float(pooled.abs().mean()), "share_above_0.99": float((pooled.abs() > 0.99).float().mean()),
            "pooled_cosine": mean_pairwise_cosine(pooled),
            "cls_cosine": mean_pairwise_cosine(out.last_hidden_state[:, 0]),
            "cls_attention_entropy": cls_attention_entropy(out.attentions[-1], batch["attention_mask"])}


def cls_attention_entropy(attn: torch.Tensor, mask: torch.Tensor) -> float:
    """attn (B, heads, T, T), mask (B, T): [CLS]'s attention entropy over real tokens / log(real tokens)."""
    p = attn[:, :, 0, :].clamp_min(1e-12)  # (B, heads, T); padding gets ~0 probability
    m = mask[:, None, :].to(p.dtype)
    entropy = -(p.log() * p * m).sum(-1)  # (B, heads)
    n = mask.sum(-1).clamp_min(2).to(p.dtype)  # real tokens per sentence
    return float((entropy / n.log()[:, None]).mean())


def reinit_pooler(src: Path, dst: Path) -> None:
    from safetensors.torch import load_file, save_file

    if not (src / "model.safetensors").is_file():
        raise SystemExit(f"{src} holds no model.safetensors: pass a model directory in Hugging Face layout")
    weights = load_file(src / "model.safetensors")
    keys = [k for k in weights if k.endswith(("pooler.dense.weight", "pooler.dense.bias"))]
    if len(keys) != 2:
        raise SystemExit(f"{src / 'model.safetensors'} has no BERT pooler (pooler.dense.weight / .bias); found {keys}")
    if dst.exists():
        raise SystemExit(f"{dst} exists; choose a new directory")
    g = torch.Generator().manual_seed(0)
    for k in keys:
        w = weights[k]
        weights[k] = torch.randn(w.shape, generator=g) * 0.02 if k.endswith("weight") else torch.zeros_like(w)
    tmp = dst.with_name(dst.name + ".partial")  # a copy that fails half-way never looks like a model directory
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    save_file(weights, tmp / "model.safetensors", metadata={"format": "pt"})
    tmp.rename(dst)
    print(f"pooler re-initialised: {dst}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="model directories in Hugging Face BERT layout")
    p.add_argument("--reinit-to", type=Path, default=None,
                   help="write a copy of the (single) model with its pooler re-initialised here, and exit")
    p.add_argument("--sentences", type=int, default=128, help="sentences for the statistics (default 128)")
    p.add_argument("--texts", type=Path, default=None,
                   help="a TSV whose first column is the text (default: the shared SST-2 dev.tsv, header skipped)")
    p.add_argument("--no-header", action="store_true", help="--texts has no header line (ChnSentiCorp's TSVs)")
    args = p.parse_args(argv)
    if args.reinit_to is not None:
        if len(args.models) != 1:
            raise SystemExit("--reinit-to takes exactly one model directory")
        reinit_pooler(args.models[0], args.reinit_to)
        return 0
    torch.set_num_threads(1)
    path = args.texts or require_shared_data() / "tasks" / "en" / "glue" / "SST-2" / "dev.tsv"
    first = 0 if args.texts is not None and args.no_header else 1
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = [row[0] for row in rows[first: first + args.sentences] if row]
    if not texts:
        raise SystemExit(f"{path}: no text rows (the text must be the first tab-separated column)")
    for d in args.models:
        s = pooler_stats(d, texts)
        print(f"{d}: pooled mean |tanh| {s['mean_abs_tanh']:.3f}, share > 0.99 {s['share_above_0.99']:.3f}, "
              f"pooled cosine {s['pooled_cosine']:.3f}, [CLS] cosine {s['cls_cosine']:.3f}, "
              f"[CLS] attention entropy {s['cls_attention_entropy']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
