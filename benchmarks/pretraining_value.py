"""Does our pretraining help? A model pretrained by bertplat against the same architecture from random init.

    python -m benchmarks.pretraining_value --suite en      # mini on English Wikipedia -> SST-2, CoNLL-2003
    python -m benchmarks.pretraining_value --suite zh      # tiny on novels + zhwiki -> ChnSentiCorp, MSRA NER
    python -m benchmarks.pretraining_value --suite all     # both, one after the other
    python -m benchmarks.pretraining_value --suite en --quick   # a smoke run of the whole chain
    python -m benchmarks.pretraining_value --suite all --table  # print the saved results; runs nothing

Each suite runs bertplat's own stages, as the CLI does: ingest a slice of the shared corpus -> WordPiece
vocabulary -> MLM examples (configs/bench/examples.yaml; ``--objective nsp`` for BERT's MLM + NSP) ->
``run_pretrain`` (configs/bench/<lang>_pretrain.yaml) -> task import (``run_tasks``) -> ``run_finetune`` for
every task, arm and seed. The two arms of the comparison:

- ``pretrained``: the pretraining run's export.
- ``random``: the same architecture, the same vocabulary and tokenizer, with the weights that pretraining
  STARTED from (``pl.seed_everything(seed)`` then ``BertPretrainingModel(model_config)``, the way
  ``run_pretrain`` initialises them), exported with bertplat's ``export_hf`` into
  ``<data_dir>/models/<name>-random/<pretraining fingerprint>/``. So the only difference between the
  arms is the pretraining steps.

Both arms are fine-tuned with the same config (configs/bench/<lang>_finetune_<task>.yaml), the same data
and the same seed per pair (the seed sets the fresh head, the batch order and dropout). Every stage is
content-addressed, so a re-run reuses whatever finished (a killed run loses only the stage it was in).
Every measurement runs on ONE torch thread (``--threads``, ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``)
for both arms. Results: ``benchmarks/out/pretraining_value/<suite>[-quick].json`` and a printed table.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # before torch is imported: one thread for every measurement (see --threads)
    _threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--threads"), "1")
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _threads

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.common import REPO, machine, require_shared_data  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "pretraining_value"
BENCH = REPO / "configs" / "bench"


# ---- what each suite runs -------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskPlan:
    """One downstream task: its spec, the import limit (a train subset), the fine-tuning config, and the
    split and metric reported."""

    key: str  # short name in tables and run names
    spec: Path
    limit: int | None  # records read per source split (the train subset; dev/test stay whole if smaller)
    finetune: Path
    split: str
    metric: str


@dataclass(frozen=True)
class SuitePlan:
    lang: str
    corpus: list[str]  # sources, relative to the shared data folder (globs allowed)
    ingest: Path
    vocab: Path
    examples: Path
    pretrain: Path
    tasks: list[TaskPlan] = field(default_factory=list)


def suite_plan(lang: str, en_files: int = 64) -> SuitePlan:
    if lang == "en":
        wiki = "corpora/en/wikipedia/wikitasks_2021/AA"
        return SuitePlan(
            "en", [f"{wiki}/wiki_{i:02d}" for i in range(en_files)], BENCH / "en_ingest.yaml", BENCH / "en_vocab.yaml",
            BENCH / "examples.yaml", BENCH / "en_pretrain.yaml", [
                TaskPlan("sst2", REPO / "configs/tasks/sst2.yaml", 4000, BENCH / "en_finetune_sst2.yaml",
                         "validation", "accuracy"),
                TaskPlan("conll2003", REPO / "configs/tasks/conll2003.yaml", 3500, BENCH / "en_finetune_conll.yaml",
                         "test", "entity_f1")])
    if lang == "zh":
        return SuitePlan(
            "zh", ["corpora/zh/novels", "corpora/zh/zhwiki"], BENCH / "zh_ingest.yaml", BENCH / "zh_vocab.yaml",
            BENCH / "examples.yaml", BENCH / "zh_pretrain.yaml", [
                TaskPlan("chnsenticorp", REPO / "configs/tasks/chnsenticorp.yaml", 1500,
                         BENCH / "zh_finetune_chnsenticorp.yaml", "validation", "accuracy"),
                TaskPlan("msra_ner", BENCH / "msra_ner.yaml", 3000, BENCH / "zh_finetune_msra.yaml",
                         "test", "entity_f1")])
    raise ValueError(f"unknown suite {lang!r}: en or zh")


# Quick mode: the same chain on a sliver, to check that everything runs (no meaningful scores).
QUICK_PRETRAIN = {"model": "tiny", "max_steps": 30, "val_every_n_steps": 15, "val_examples": 64,
                  "checkpoint_every_n_steps": 30, "warmup_steps": 5, "min_val_mlm_accuracy_over_baseline": 0.0}
QUICK_FINETUNE = {"epochs": 1, "max_steps": 8}
QUICK_LIMIT = 120


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["en", "zh", "all"], default="all",
                   help="en: mini on English Wikipedia, SST-2 and CoNLL-2003; zh: tiny on the Chinese novels and "
                        "zhwiki, ChnSentiCorp and MSRA NER; all: both (default)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 corpus files, a tiny model for 30 steps, tasks cut to 120 records, 8 "
                        "fine-tuning steps, one seed (checks the chain, not the answer)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="fine-tuning seeds; each is one pair of runs (default 0 1 2; --quick: 0)")
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="override max_steps of configs/bench/<lang>_pretrain.yaml (a new fingerprint, a new run)")
    p.add_argument("--pretrain-set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override fields of configs/bench/<lang>_pretrain.yaml, e.g. lr=5e-4 warmup_steps=100 "
                        "(values read as YAML, numbers as numbers; validated by PretrainConfig; a new fingerprint, a new run)")
    p.add_argument("--objective", choices=["nsp", "sop", "mlm"], default=None,
                   help="override the examples' objective of configs/bench/examples.yaml (nsp: BERT's MLM + NSP; "
                        "mlm: RoBERTa's MLM alone on packed full sentences); a new fingerprint, a new run")
    p.add_argument("--en-files", type=int, default=64,
                   help="English corpus: the first N files of wikitasks_2021/AA (64 in all, about 0.9M characters "
                        "each; default 64; the runs of 2026-12-03 used 10)")
    p.add_argument("--tasks", nargs="+", default=None, help="only these task keys (sst2 conll2003 chnsenticorp msra_ner)")
    p.add_argument("--full-train", nargs="+", default=[], metavar="KEY",
                   help="import these tasks' whole training split instead of the default subset (e.g. sst2: 67,349 "
                        "phrases instead of 4,000; chnsenticorp: 9,600 reviews instead of 1,500)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (and OMP/MKL threads) for every stage, both arms alike (default 1)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="lake root (default: $BERTPLAT_DATA_DIR, else benchmarks/out/pretraining_value/data)")
    p.add_argument("--catalog", action="store_true",
                   help="index every dataset in the lake's DuckDB catalog as it is made (default: off; run "
                        "`bertplat catalog rebuild` with BERTPLAT_DATA_DIR set to index them afterwards)")
    p.add_argument("--table", action="store_true",
                   help="print the table of the results already saved in --out (a finished or a stopped run) and "
                        "exit; runs nothing")
    p.add_argument("--out", type=Path, default=OUT, help=f"where the result JSON goes (default {OUT})")
    return p.parse_args(argv)


# ---- stages ------------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Context:
    """The lake, the catalog and the run's options."""

    def __init__(self, args: argparse.Namespace):
        from bertplat.catalog import Catalog
        from bertplat.lake import Lake

        data_dir = args.data_dir or Path(os.environ.get("BERTPLAT_DATA_DIR") or OUT / "data")
        self.lake = Lake(str(data_dir))
        # Indexing in DuckDB is optional here (--catalog); `bertplat catalog rebuild` indexes the lake later.
        self.catalog = Catalog(self.lake.data_dir / "catalog.duckdb", self.lake) if args.catalog else None
        self.args = args
        self.shared = require_shared_data()
        self.tag = "-quick" if args.quick else ""


def pretrain_suite(ctx: Context, plan: SuitePlan) -> dict[str, Any]:
    """corpus -> vocab -> examples -> pretrained model; each stage reused when it exists."""
    from bertplat.examples.config import ExamplesConfig
    from bertplat.examples.stage import run_examples
    from bertplat.ingest import IngestConfig, run_ingest
    from bertplat.pretrain import PretrainConfig
    from bertplat.pretrain.stage import run_pretrain
    from bertplat.vocab import VocabConfig, run_vocab

    sources = [str(ctx.shared / s) for s in (plan.corpus[:2] if ctx.args.quick else plan.corpus)]
    name = f"ptv-{plan.lang}{ctx.tag}"
    t0 = time.monotonic()
    corpus = run_ingest(sources, name, IngestConfig.from_yaml(plan.ingest), ctx.lake, ctx.catalog)
    log(corpus.summary().split("\n")[0])
    vocab = run_vocab(corpus.dataset, name, VocabConfig.from_yaml(plan.vocab), ctx.lake, ctx.catalog)
    log(vocab.summary().split("\n")[0])
    ex_overrides = {"objective": ctx.args.objective} if ctx.args.objective else {}
    ex_cfg = ExamplesConfig.from_yaml(plan.examples, **ex_overrides)
    examples = run_examples(corpus.dataset, vocab.dataset, name, ex_cfg, ctx.lake, ctx.catalog)
    log(examples.summary().split("\n")[0])
    data_s = time.monotonic() - t0
    overrides = dict(QUICK_PRETRAIN) if ctx.args.quick else {}
    if ctx.args.pretrain_steps:
        overrides["max_steps"] = ctx.args.pretrain_steps
    overrides.update(parse_overrides(ctx.args.pretrain_set))
    cfg = PretrainConfig.from_yaml(plan.pretrain, **overrides)
    log(f"pretraining {cfg.model} for {cfg.max_steps} steps (lr {cfg.lr:g}) on examples {examples.dataset.ref()}")
    result = run_pretrain(examples.dataset, name, cfg, ctx.lake, ctx.catalog)
    log(result.summary().split("\n")[0])
    random_dir = export_random_init(ctx, examples.dataset, cfg, name, result.fingerprint)
    m = result.metrics
    return {"name": name, "fingerprint": result.fingerprint, "model_dir": str(result.model_dir),
            "random_dir": str(random_dir), "model": cfg.model, "steps": result.steps, "lr": cfg.lr,
            "objective": ex_cfg.objective, "micro_batch_size": cfg.micro_batch_size, "seconds": pretrain_seconds(ctx, plan.lang, result),
            "data_seconds": round(data_s, 1), "tokens": m.get("perf/tokens_seen"),
            "val_mlm_acc": m.get("val/mlm_acc"), "val_mlm_ppl": m.get("val/mlm_ppl"),
            "val_nsp_acc": m.get("val/nsp_acc"), "baseline_mlm_acc": m.get("val/mlm_baseline_acc"),
            "corpus": corpus.dataset.ref(), "corpus_counts": corpus.counts, "vocab": vocab.dataset.ref(),
            "examples": examples.dataset.ref(), "examples_counts": {k: examples.counts[k]["instances"]
                                                                   for k in ("train", "validation")},
            "reused": result.reused, "sources": [str(Path(s).relative_to(ctx.shared)) for s in sources]}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """--pretrain-set KEY=VALUE strings -> a dict, parsed as ``bertplat finetune``'s overrides are (5e-4 -> 0.0005)."""
    import typer

    from bertplat.finetune.cli import parse_overrides as parse_cli_overrides

    try:
        return parse_cli_overrides(items)
    except typer.BadParameter as e:
        raise SystemExit(f"--pretrain-set: {e}") from None


def pretrain_seconds(ctx: Context, lang: str, result) -> float | None:
    """Training wall time: measured now, or, when the run was reused, the time recorded by the run that made it."""
    if not result.reused:
        return round(result.elapsed_s, 1)
    try:
        old = json.loads((ctx.args.out / f"{lang}{ctx.tag}.json").read_text(encoding="utf-8"))["pretrain"]
    except (OSError, ValueError, KeyError):
        return None
    return old.get("seconds") if old.get("fingerprint") == result.fingerprint else None


def export_random_init(ctx: Context, examples, cfg, name: str, fp: str) -> Path:
    """The weights pretraining started from, exported as a model directory (same config, same tokenizer)."""
    import lightning.pytorch as pl

    from bertplat.model import BertPretrainingModel, export_hf
    from bertplat.model.checkpoint import write_dir_atomically
    from bertplat.pretrain.datamodule import ExamplesSource
    from bertplat.pretrain.stage import model_config_for

    final = ctx.lake.data_dir / "models" / f"{name}-random" / fp
    if (final / "config.json").is_file():
        return final
    source = ExamplesSource.open(examples, ctx.lake)
    pl.seed_everything(cfg.seed, workers=False, verbose=False)  # as run_pretrain, before it builds the module
    model = BertPretrainingModel(model_config_for(source, cfg))

    def write(tmp: Path) -> None:
        export_hf(model, tmp / "hf", tokenizer_dir=source.vocab.path)
        for f in (tmp / "hf").iterdir():
            os.replace(f, tmp / f.name)
        (tmp / "hf").rmdir()
        (tmp / "README.md").write_text(
            f"# {name}-random\n\nThe untrained initial weights of pretraining run {name}@{fp} (seed {cfg.seed}, "
            f"preset {cfg.model}), for the random-init arm of benchmarks/pretraining_value.py.\n", encoding="utf-8")

    write_dir_atomically(final, write, overwrite=True)
    log(f"random-init export (the initial weights of {name}@{fp}): {final}")
    return final


def import_task(ctx: Context, task: TaskPlan):
    from bertplat.tasks.spec import TasksOptions, TaskSpec
    from bertplat.tasks.stage import run_tasks

    limit = QUICK_LIMIT if ctx.args.quick else None if task.key in ctx.args.full_train else task.limit
    spec = TaskSpec.from_yaml(task.spec)
    name = f"{task.key}_l{limit}" if limit else task.key
    result = run_tasks(spec, ctx.lake, ctx.catalog, root=ctx.shared / "tasks", options=TasksOptions(limit=limit),
                       name=name)
    log(result.summary().split("\n")[0])
    return result


def finetune_pair(ctx: Context, plan: SuitePlan, pt: dict[str, Any], task: TaskPlan, handle, counts, seed: int
                  ) -> list[dict[str, Any]]:
    from bertplat.finetune.config import FinetuneConfig
    from bertplat.finetune.stage import run_finetune

    cfg = FinetuneConfig.from_yaml(task.finetune, seed=seed, **(QUICK_FINETUNE if ctx.args.quick else {}))
    rows = []
    key = f"{task.key}_full" if task.key in ctx.args.full_train and not ctx.args.quick else task.key
    for arm, base in (("pretrained", pt["model_dir"]), ("random", pt["random_dir"])):
        name = f"ptv_{plan.lang}{ctx.tag.replace('-', '_')}_{key}_{arm}_s{seed}"
        t0 = time.monotonic()
        r = run_finetune(base, handle, name, cfg, ctx.lake, ctx.catalog)
        score = r.metrics[task.split][task.metric]
        log(f"{key} {arm:10s} seed {seed}: {task.split} {task.metric} {score:.4f} (dev {r.dev_metric:.4f}, "
            f"{r.steps} steps, {'reused' if r.reused else f'{time.monotonic() - t0:.0f}s'})")
        rows.append({"task": key, "arm": arm, "seed": seed, "split": task.split, "metric": task.metric,
                     "score": score, "dev_metric": r.dev_metric, "baseline": r.baseline, "steps": r.steps,
                     "seconds": None if r.reused else round(time.monotonic() - t0, 1), "model": str(r.model_dir),
                     "metrics": r.metrics, "train_examples": counts.get("train"), "lr": cfg.lr,
                     "epochs": cfg.epochs})
    return rows


def run_suite(ctx: Context, lang: str) -> dict[str, Any]:
    plan = suite_plan(lang, ctx.args.en_files)
    seeds = ctx.args.seeds or ([0] if ctx.args.quick else [0, 1, 2])
    pt = pretrain_suite(ctx, plan)
    tasks = [t for t in plan.tasks if not ctx.args.tasks or t.key in ctx.args.tasks]
    imported = {t.key: import_task(ctx, t) for t in tasks}
    rows: list[dict[str, Any]] = []
    for seed in seeds:  # seed-major: a run stopped early still holds whole pairs of every task
        for task in tasks:
            result = imported[task.key]
            rows.extend(finetune_pair(ctx, plan, pt, task, result.dataset, result.counts["per_split"], seed))
            save(ctx, lang, pt, rows, counts_by_task(rows))
    out = save(ctx, lang, pt, rows, counts_by_task(rows))
    return json.loads(out.read_text(encoding="utf-8"))


def counts_by_task(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {r["task"]: r["train_examples"] for r in rows}


def save(ctx: Context, lang: str, pt: dict[str, Any], rows: list[dict[str, Any]], train_sizes: dict[str, Any]) -> Path:
    import torch

    out = ctx.args.out / f"{lang}{ctx.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"suite": lang, "quick": ctx.args.quick, "machine": machine(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "command": "python -m benchmarks.pretraining_value " +
           " ".join(sys.argv[1:]), "pretrain": pt, "train_examples": train_sizes, "runs": rows,
           "summary": summarise(rows), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


# ---- the table -----------------------------------------------------------------------------------------
def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: each arm's scores by seed and mean, and the paired differences (pretrained - random)."""
    out: dict[str, Any] = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        # Seeds as strings: the summary goes through JSON, whose object keys are strings.
        by = {arm: {str(r["seed"]): r["score"] for r in rows if r["task"] == task and r["arm"] == arm}
              for arm in ("pretrained", "random")}
        paired = sorted(set(by["pretrained"]) & set(by["random"]), key=int)
        diffs = [by["pretrained"][s] - by["random"][s] for s in paired]
        out[task] = {"pretrained": by["pretrained"], "random": by["random"],
                     "mean_pretrained": statistics.fmean(by["pretrained"].values()) if by["pretrained"] else None,
                     "mean_random": statistics.fmean(by["random"].values()) if by["random"] else None,
                     "paired_seeds": paired, "diffs": diffs,
                     "mean_diff": statistics.fmean(diffs) if diffs else None,
                     "sd_diff": statistics.stdev(diffs) if len(diffs) > 1 else None,
                     "wins": sum(d > 0 for d in diffs)}
    return out


def print_table(doc: dict[str, Any]) -> None:
    pt = doc["pretrain"]
    print(f"\n== suite {doc['suite']}{' (quick)' if doc['quick'] else ''}: {doc['machine']}; torch {doc['torch']}, "
          f"{doc['threads']} thread(s)")
    secs = f"{pt['seconds']:.0f}s" if pt.get("seconds") else "time n/a (reused)"
    print(f"pretrained {pt['name']}@{pt['fingerprint']} ({pt['model']}, {pt.get('objective', 'nsp')}): {pt['steps']} steps of {pt['micro_batch_size']} "
          f"sequences, {pt['tokens'] or 0:,.0f} tokens, {secs}; validation MLM accuracy {pt['val_mlm_acc']:.4f} "
          f"(most-frequent-token baseline {pt['baseline_mlm_acc'] or float('nan'):.4f}), perplexity "
          f"{pt['val_mlm_ppl']:.1f}, NSP accuracy "
          f"{'-' if pt['val_nsp_acc'] is None else format(pt['val_nsp_acc'], '.3f')}")
    for task, s in summarise(doc["runs"]).items():  # from the runs, whatever the file's summary holds
        run = next(r for r in doc["runs"] if r["task"] == task)
        print(f"\n{task}: {run['split']} {run['metric']}, {run['train_examples']:,} train examples, lr {run['lr']:g}, "
              f"{run['epochs']} epochs")
        print(f"  {'seed':>4}  {'pretrained':>10}  {'random init':>11}  {'difference':>10}")
        for seed in s["paired_seeds"]:
            p, r = s["pretrained"][seed], s["random"][seed]
            print(f"  {seed:>4}  {p:10.4f}  {r:11.4f}  {p - r:+10.4f}")
        if s["mean_diff"] is not None:
            sd = f" (sd {s['sd_diff']:.4f})" if s["sd_diff"] is not None else ""
            print(f"  {'mean':>4}  {s['mean_pretrained']:10.4f}  {s['mean_random']:11.4f}  {s['mean_diff']:+10.4f}{sd}"
                  f"   pretrained better in {s['wins']} of {len(s['diffs'])} pairs")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    langs = ["en", "zh"] if args.suite == "all" else [args.suite]
    if args.table:
        tag = "-quick" if args.quick else ""
        found = [args.out / f"{lang}{tag}.json" for lang in langs if (args.out / f"{lang}{tag}.json").is_file()]
        if not found:
            raise SystemExit(f"no saved results for suite {args.suite} in {args.out}; run without --table first")
        for path in found:
            print_table(json.loads(path.read_text(encoding="utf-8")))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    ctx = Context(args)
    docs = []
    for lang in langs:
        log(f"suite {lang}{ctx.tag}: {args.threads} torch thread(s), lake {ctx.lake.data_dir}")
        docs.append(run_suite(ctx, lang))
    for doc in docs:
        print_table(doc)
    paths = [str(args.out / (d["suite"] + ctx.tag + ".json")) for d in docs]
    print(f"\nresults: {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
