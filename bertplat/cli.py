"""The ``bertplat`` command line: one command per stage, plus SQL over the catalog.

Stage commands call the library directly (no Prefect server needed) and show a progress bar;
the Prefect flows in ``flows/`` call the very same functions, for scheduled and UI-triggered runs.
Options can come from a YAML file (``--config``); options given on the command line win.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="bertplat: raw text to evaluated BERT-family models. Each stage command writes a "
                       "dataset version under the data root and registers it in the DuckDB catalog.")
catalog_app = typer.Typer(no_args_is_help=True, help="Inspect and repair the DuckDB catalog.")
app.add_typer(catalog_app, name="catalog")


def _mount_stage_apps() -> None:
    # Stage packages keep their own commands (bertplat/<stage>/cli.py) and import this module's helpers
    # lazily inside the commands, so there is no import cycle.
    from bertplat.embed.cli import dedup, embed, search
    from bertplat.finetune.cli import evaluate_command, finetune_command
    from bertplat.registry.cli import models_app
    from bertplat.serve import serve_command
    from bertplat.tasks.cli import tasks_app

    app.add_typer(tasks_app, name="tasks", short_help=tasks_app.info.help)  # the whole summary in --help
    app.add_typer(models_app, name="models", short_help=models_app.info.help)
    app.command("serve")(serve_command)
    app.command("finetune")(finetune_command)
    app.command("evaluate")(evaluate_command)
    for command in (embed, search, dedup):
        app.command()(command)


_mount_stage_apps()

DEBUG = {"on": False}


def _context():
    from bertplat.catalog import Catalog
    from bertplat.lake import Lake
    from bertplat.objectstore import ObjectStoreError
    from bertplat.settings import Settings

    settings = Settings()
    settings.configure_logging()
    try:
        lake = Lake(settings.data_dir, settings.cache_dir)
    except ObjectStoreError as exc:  # a missing bucket, an unreachable server: one line, no traceback
        if DEBUG["on"]:
            raise
        _fail(str(exc))
    return settings, lake, Catalog(settings.catalog_file, lake)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(fn, *args, **kwargs):
    """Run a stage; expected failures (bad input, bad config, failed gate, a full disk) print a clear
    message instead of a traceback. ``--debug`` shows the traceback."""
    from bertplat.catalog import CatalogLocked
    from bertplat.config import ConfigError
    from bertplat.executor import ClusterError
    from bertplat.lake import DatasetNotFound, out_of_space
    from bertplat.objectstore import ObjectStoreError
    from bertplat.validation import GateError

    try:
        return fn(*args, **kwargs)
    except (ConfigError, ValueError, DatasetNotFound, CatalogLocked, GateError, FileNotFoundError, ClusterError,
            ObjectStoreError) as exc:
        if DEBUG["on"]:
            raise
        _fail(str(exc), code=2 if isinstance(exc, ConfigError) else 1)
    except Exception as exc:
        full, path = out_of_space(exc)
        if not full or DEBUG["on"]:
            raise
        # Drop the failed stage's frames now: an open writer in them keeps its deleted file's space.
        traceback.clear_frames(exc.__traceback__)
    if path is None:
        from bertplat.settings import Settings

        path = Settings().data_dir
    _fail(f"no space left on the device holding {path}: nothing was committed to the lake or the catalog. "
          "Free some space (or set BERTPLAT_DATA_DIR to a larger disk) and run again; --debug shows the traceback")


def _print_version(value: bool) -> None:
    if value:
        from bertplat import __version__

        typer.echo(f"bertplat {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
                 version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                              help="Print the version and exit.")) -> None:
    DEBUG["on"] = debug


def _report_deferred(catalog, result) -> None:
    """Say so when the catalog was busy and the new version is not indexed yet."""
    if catalog.is_pending(result.dataset):
        typer.echo(f"  catalog: {catalog.path} was busy (another process has it open), so indexing "
                   f"{result.dataset.ref()} is deferred to the next write; `bertplat catalog rebuild` does it now")


def _progress():
    from bertplat.progress import TqdmProgress

    return TqdmProgress()


# -- ingest ------------------------------------------------------------------------------------
@app.command()
def ingest(
    paths: list[str] = typer.Argument(..., help="Files, directories (read recursively) or glob patterns."),
    name: str = typer.Option(..., "--name", "-n", help="Dataset name; the DuckDB view is corpus_<name>."),
    format: str | None = typer.Option(None, "--format", "-f", help="auto, text, jsonl, json, csv, tsv, parquet, "
                                         "wikiextractor or gutenberg (default auto: per file, by extension and content)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of ingest options; "
                                          "command-line options override it."),
    text_field: str | None = typer.Option(None, help="JSON field / CSV column / Parquet column with the text "
                                             "(default 'text')."),
    id_field: str | None = typer.Option(None, help="Field or column with the source's own document id."),
    title_field: str | None = typer.Option(None, help="Field or column with a title."),
    label_field: str | None = typer.Option(None, help="Field or column with a label."),
    text_mode: str | None = typer.Option(None, help="Plain text: 'file' (one document per file, default), "
                                            "'paragraphs' (blank-line separated) or 'lines'."),
    encoding: str | None = typer.Option(None, help="Text encoding of the inputs (default utf-8)."),
    include: list[str] | None = typer.Option(None, help="Only files whose name matches this glob (repeatable)."),
    exclude: list[str] | None = typer.Option(None, help="Skip files whose name matches this glob (repeatable)."),
    normalization: str | None = typer.Option(None, help="Unicode normalisation: NFC (default), NFKC or none."),
    max_record_bytes: int | None = typer.Option(None, help="Reject a line, record or whole-file document larger "
                                                "than this many bytes, without reading it (default 16 MiB)."),
    max_reject_ratio: float | None = typer.Option(None, help="Fail when more than this share of records is "
                                                     "rejected (default 0.05)."),
    dedup: bool | None = typer.Option(None, "--dedup/--no-dedup", help="Drop exact duplicate documents (default on)."),
    markup_cleanup: str | None = typer.Option(None, help="Remove WikiExtractor leftovers (entities, markup lines, "
                                              "formula_N/codice_N, empty parentheses): 'auto' (default: "
                                              "WikiExtractor input only), 'on' (every input) or 'off'."),
    near_dedup: float | None = typer.Option(None, help="Also drop near-duplicate documents (MinHash + LSH over "
                                            "5-word shingles) whose estimated Jaccard similarity to an earlier "
                                            "one reaches this, e.g. 0.8 (default off)."),
    languages: list[str] | None = typer.Option(None, "--language", help="Keep only documents identified as this "
                                               "language, an ISO 639 code such as en or zh (repeatable; "
                                               "quality.languages; default: no language identification)."),
    cluster: str | None = typer.Option(None, help="Run the tasks on this Dask scheduler, e.g. tcp://host:8786 "
                                       "(default $BERTPLAT_DASK_ADDRESS, else local processes). Same output."),
    workers: int | None = typer.Option(None, help="Worker processes (default: all cores)."),
) -> None:
    """Ingest raw corpora into a validated, deduplicated Parquet corpus dataset."""
    from bertplat.ingest import IngestConfig, run_ingest

    settings, lake, catalog = _context()
    overrides: dict[str, Any] = dict(format=format, text_field=text_field, id_field=id_field, title_field=title_field,
                                     label_field=label_field, text_mode=text_mode, encoding=encoding,
                                     include=include or None, exclude=exclude or None, normalization=normalization,
                                     max_record_bytes=max_record_bytes, max_reject_ratio=max_reject_ratio, dedup=dedup,
                                     markup_cleanup=markup_cleanup, workers=workers, cluster=cluster)
    cfg = _run(IngestConfig.from_yaml, config, **overrides) if config else _run(IngestConfig.build, {}, overrides)
    if near_dedup is not None:  # the threshold on top of the config's other near-dedup settings
        cfg = _run(IngestConfig.build, cfg.model_dump(),
                   {"near_dedup": {**cfg.near_dedup.model_dump(), "threshold": near_dedup}})
    if languages:  # on top of the config's other quality settings
        cfg = _run(IngestConfig.build, cfg.model_dump(), {"quality": {**cfg.quality.model_dump(), "languages": languages}})
    result = _run(run_ingest, paths, name, cfg, lake, catalog, progress=_progress())
    typer.echo(result.summary())
    _report_deferred(catalog, result)
    if result.counts.get("rejects"):
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(result.stats.get("reject_reasons", {}).items()))
        typer.echo(f"  rejects by reason: {reasons}")
    if quality := result.stats.get("quality"):  # documents per filter; the mojibake-line rule counts lines
        counts = []
        for reason, q in quality.items():
            n = q.get("documents", q.get("lines", 0))
            if n:
                unit = "" if "documents" in q else (" line" if n == 1 else " lines")
                counts.append((n, f"{reason}: {n:,}{unit}"))
        if counts:
            typer.echo("  filtered by reason: " + ", ".join(text for _, text in sorted(counts, key=lambda c: -c[0])))


# -- vocab -------------------------------------------------------------------------------------
@app.command()
def vocab(
    corpus: str = typer.Option(..., "--corpus", help="Corpus dataset to train on: NAME (newest version) or NAME@FINGERPRINT."),
    name: str = typer.Option(..., "--name", "-n", help="Dataset name; the DuckDB view is vocab_<name>."),
    vocab_size: int | None = typer.Option(None, help="Vocabulary size including special tokens (default 30522)."),
    pad_to_multiple_of: int | None = typer.Option(None, help="Round the size up to a multiple of this (64 for GPUs)."),
    lowercase: bool | None = typer.Option(None, "--lowercase/--cased", help="Uncased (default) or cased vocabulary."),
    min_frequency: int | None = typer.Option(None, help="Minimum pair frequency for a merge (default 2)."),
    limit_alphabet: int | None = typer.Option(None, help="Most distinct characters in the alphabet (default 1000; "
                                                 "8000 for Chinese)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of vocab options; command-line "
                                          "options override it."),
) -> None:
    """Train a WordPiece vocabulary (BERT's pipeline) on a corpus dataset."""
    from bertplat.vocab import VocabConfig, run_vocab

    _, lake, catalog = _context()
    overrides = dict(vocab_size=vocab_size, pad_to_multiple_of=pad_to_multiple_of, lowercase=lowercase,
                     min_frequency=min_frequency, limit_alphabet=limit_alphabet)
    cfg = _run(VocabConfig.from_yaml, config, **overrides) if config else _run(VocabConfig.build, {}, overrides)
    corpus_handle = _run(lake.resolve, "corpus", corpus)
    result = _run(run_vocab, corpus_handle, name, cfg, lake, catalog, progress=_progress())
    typer.echo(result.summary())
    _report_deferred(catalog, result)


# -- examples ----------------------------------------------------------------------------------
@app.command()
def examples(
    corpus: str = typer.Option(..., "--corpus", help="Corpus dataset: NAME (newest version) or NAME@FINGERPRINT."),
    vocab: str = typer.Option(..., "--vocab", help="Vocab dataset: NAME or NAME@FINGERPRINT."),
    name: str = typer.Option(..., "--name", "-n", help="Dataset name; the DuckDB view is examples_<name>."),
    objective: str | None = typer.Option(None, help="nsp (BERT, default), sop (ALBERT) or mlm (RoBERTa, MLM only)."),
    max_seq_length: int | None = typer.Option(None, help="Tokens per example (default 128; BERT's second phase: 512)."),
    masking: str | None = typer.Option(None, help="dynamic (default: the collator masks at training time) or "
                                       "static (masks written into the examples)."),
    mask_prob: float | None = typer.Option(None, help="Share of tokens to predict (default 0.15)."),
    max_predictions_per_seq: int | None = typer.Option(None, help="Static masking: most predictions per example "
                                                       "(default ceil(max_seq_length * mask_prob): 20 at 128)."),
    whole_word_masking: bool | None = typer.Option(None, "--whole-word-masking/--token-masking",
                                                   help="Mask whole words (all their pieces) or single tokens (default)."),
    dupe_factor: int | None = typer.Option(None, help="Passes over the corpus with new random choices (default 1)."),
    short_seq_prob: float | None = typer.Option(None, help="Share of shorter nsp/sop examples (default 0.1)."),
    validation_fraction: float | None = typer.Option(None, help="Share of documents in the validation split (default 0.01)."),
    seed: int | None = typer.Option(None, help="Random seed (default 12345)."),
    cluster: str | None = typer.Option(None, help="Run the tasks on this Dask scheduler, e.g. tcp://host:8786 "
                                       "(default $BERTPLAT_DASK_ADDRESS, else local processes). Same output."),
    workers: int | None = typer.Option(None, help="Worker processes (default: all cores)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of examples options; command-line "
                                       "options override it."),
) -> None:
    """Build pretraining examples (MLM with NSP, SOP or nothing) from a corpus and a vocabulary."""
    from bertplat.examples.config import ExamplesConfig
    from bertplat.examples.stage import run_examples

    _, lake, catalog = _context()
    overrides = dict(objective=objective, max_seq_length=max_seq_length, masking=masking, mask_prob=mask_prob,
                     max_predictions_per_seq=max_predictions_per_seq, whole_word_masking=whole_word_masking,
                     dupe_factor=dupe_factor, short_seq_prob=short_seq_prob, validation_fraction=validation_fraction,
                     seed=seed, workers=workers, cluster=cluster)
    cfg = _run(ExamplesConfig.from_yaml, config, **overrides) if config else _run(ExamplesConfig.build, {}, overrides)
    corpus_handle = _run(lake.resolve, "corpus", corpus)
    vocab_handle = _run(lake.resolve, "vocab", vocab)
    result = _run(run_examples, corpus_handle, vocab_handle, name, cfg, lake, catalog, progress=_progress())
    typer.echo(result.summary())
    _report_deferred(catalog, result)


# -- pretrain ----------------------------------------------------------------------------------
@app.command()
def pretrain(
    examples: str = typer.Option(..., "--examples", help="Examples dataset: NAME (newest version) or NAME@FINGERPRINT."),
    name: str = typer.Option(..., "--name", "-n", help="Model name; the export goes to <data_dir>/models/<name>/<fingerprint>/."),
    model: str | None = typer.Option(None, "--model", "-m", help="Size preset: tiny, mini (default), small, medium, "
                                     "base, large, albert-base."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of pretraining options (see "
                                       "configs/pretrain/); command-line options override it."),
    init_from: str | None = typer.Option(None, help="Continue pretraining from this model's weights (a model "
                                         "directory, registry reference or NAME[@FINGERPRINT]); its architecture "
                                         "replaces the preset and its vocab.txt must be the examples' vocabulary."),
    max_steps: int | None = typer.Option(None, help="Optimizer steps to train for (default 1000)."),
    max_tokens: int | None = typer.Option(None, help="Token budget; the smaller of this and max_steps wins."),
    micro_batch_size: int | None = typer.Option(None, help="Sequences per device per forward pass (default 32)."),
    accumulate_grad_batches: int | None = typer.Option(None, help="Micro batches per optimizer step (default 1)."),
    lr: float | None = typer.Option(None, help="Peak learning rate (default 5e-4)."),
    optimizer: str | None = typer.Option(None, help="adamw (default; fused on GPU) or lamb."),
    schedule: str | None = typer.Option(None, help="Decay after warmup: linear (default) or cosine."),
    mask_prob: float | None = typer.Option(None, help="Dynamic mask rate (default: the examples' rate; MosaicBERT "
                                           "uses 0.3)."),
    precision: str | None = typer.Option(None, help="auto (default: bf16-mixed on GPU, 32-true on CPU), 32-true, "
                                         "bf16-mixed, 16-mixed or bf16-true."),
    accelerator: str | None = typer.Option(None, help="auto (default), cpu or gpu."),
    strategy: str | None = typer.Option(None, help="auto (default), ddp, ddp_spawn or fsdp."),
    devices: str | None = typer.Option(None, help="Devices per node: a number or 'auto' (default)."),
    num_nodes: int | None = typer.Option(None, help="Machines (default 1)."),
    compile: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile the model (default off)."),
    num_workers: int | None = typer.Option(None, help="DataLoader workers per device (default 0)."),
    seed: int | None = typer.Option(None, help="Seed of weights, data order, masks and dropout (default 0)."),
    resume: bool = typer.Option(False, "--resume", help="Continue this run from its last checkpoint (after a stop, "
                                "a crash or a SIGTERM); starts it if it has none."),
    run_dir: Path | None = typer.Option(None, help="Run directory (default <data_dir>/runs/<name>-<fingerprint>)."),
) -> None:
    """Pretrain a BERT-family model on an examples dataset; export it in Hugging Face format if the gate passes."""
    from bertplat.pretrain import PretrainConfig, PretrainInterrupted, run_pretrain

    _, lake, catalog = _context()
    dev: int | str | None = devices
    if devices is not None and devices != "auto":
        if not devices.isdigit():
            _fail(f"--devices must be a number or 'auto', got {devices!r}", code=2)
        dev = int(devices)
    overrides = dict(model=model, init_from=init_from, max_steps=max_steps, max_tokens=max_tokens,
                     micro_batch_size=micro_batch_size, accumulate_grad_batches=accumulate_grad_batches, lr=lr, optimizer=optimizer, schedule=schedule,
                     mask_prob=mask_prob, precision=precision, accelerator=accelerator, strategy=strategy,
                     devices=dev, num_nodes=num_nodes, compile=compile, num_workers=num_workers, seed=seed)
    cfg = _run(PretrainConfig.from_yaml, config, **overrides) if config else _run(PretrainConfig.build, {}, overrides)
    examples_handle = _run(lake.resolve, "examples", examples)
    try:
        result = _run(run_pretrain, examples_handle, name, cfg, lake, catalog, progress=_progress(),
                      run_dir=run_dir, resume=resume)
    except PretrainInterrupted as exc:
        _fail(str(exc), code=130)
    typer.echo(result.summary())


# -- SQL and the catalog -----------------------------------------------------------------------
@app.command()
def sql(
    query: str = typer.Argument(..., help="A SQL query over the catalog's views, e.g. "
                                "\"SELECT label, count(*) FROM corpus_demo GROUP BY label\"."),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="A value for the next ? placeholder "
                                              "(repeatable); values are bound, never pasted into the SQL."),
    max_rows: int = typer.Option(40, help="Rows to print (the query itself is not limited)."),
    output: str = typer.Option("table", "--output", "-o", help="table, csv or json."),
) -> None:
    """Run one read-only SELECT over the catalog's views and tables and print the result.

    The query reads the lake's datasets and the catalog and nothing else, and writes nothing: COPY,
    CREATE, ATTACH, SET, a second statement or a path outside the lake are refused.
    """
    import duckdb

    from bertplat.catalog import QueryRefused, refusal_reason

    _, lake, catalog = _context()
    try:
        columns, rows = catalog.fetch(query, list(param or []))
    except QueryRefused as exc:
        _fail(f"query refused: {exc}")
    except duckdb.Error as exc:
        reason = refusal_reason(exc, lake)
        _fail(f"query refused: {reason}" if reason else f"query failed: {exc}")
    print_table(columns, rows, max_rows, output)
    _note_pending(catalog)


def _note_pending(catalog) -> None:
    if pending := catalog.pending():
        typer.echo(f"note: {len(pending)} dataset versions are in the lake but not indexed yet (the catalog was "
                   "busy when they were written); `bertplat catalog rebuild` indexes them", err=True)


def print_table(columns: list[str], rows: list[tuple], max_rows: int = 40, output: str = "table") -> None:
    if output == "json":
        typer.echo(json.dumps([dict(zip(columns, r)) for r in rows], default=str, ensure_ascii=False, indent=1))
        return
    if output == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold", max_width=60)
    for r in rows[:max_rows]:
        table.add_row(*(_cell(v) for v in r))
    Console(width=max(120, min(200, len(columns) * 30))).print(table)
    more = f", {len(rows) - max_rows} not shown (--max-rows)" if len(rows) > max_rows else ""
    typer.echo(f"{len(rows)} rows{more}")


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= 200 else text[:197] + "..."


@app.command()
def datasets(kind: str | None = typer.Option(None, help="Only this kind: corpus, vocab, examples, ...")) -> None:
    """List every dataset version in the catalog."""
    _, _, catalog = _context()
    rows = _run(catalog.versions, kind)
    print_table(["kind", "name", "fingerprint", "created_at", "counts", "path"],
                [tuple(r.values()) for r in rows], max_rows=1000)
    _note_pending(catalog)


@catalog_app.command("rebuild")
def catalog_rebuild() -> None:
    """Re-index every complete dataset version in the lake and recreate all views."""
    settings, _, catalog = _context()
    n = _run(catalog.rebuild)
    typer.echo(f"catalog {settings.catalog_file}: {n} dataset versions indexed")


@catalog_app.command("check")
def catalog_check() -> None:
    """Compare the catalog with the lake: every version indexed, every view present; exit 1 if not."""
    settings, lake, catalog = _context()
    problems = _run(catalog.check)
    if not problems:
        typer.echo(f"catalog {settings.catalog_file} matches the lake {lake.root}")
        return
    for line in problems:
        typer.echo(f"  {line}", err=True)
    _fail(f"the catalog {settings.catalog_file} disagrees with the lake {lake.root} ({len(problems)} problems); "
          "run `bertplat catalog rebuild` to re-index the lake")


@catalog_app.command("lineage")
def catalog_lineage(kind: str = typer.Argument(..., help="Dataset kind."),
                    name: str = typer.Argument(..., help="Dataset name.")) -> None:
    """Show the newest version of a dataset and everything it was made from."""
    _, _, catalog = _context()
    print_table(["kind", "name", "fingerprint"], _run(catalog.lineage, kind, name))


def _full_short_help(typer_app: typer.Typer) -> None:
    """Show each command's whole first docstring line in ``--help`` (click cuts it at 45 characters)."""
    for info in typer_app.registered_commands:
        if info.short_help is None and info.callback is not None and info.callback.__doc__:
            info.short_help = info.callback.__doc__.strip().splitlines()[0]
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _full_short_help(group.typer_instance)


_full_short_help(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
