"""run_embed: a model and a corpus or task dataset in, a validated embeddings dataset out.

The input is read in chunks of ``shard_rows`` rows; each chunk is embedded (sorted by length,
batched under a token budget, unpadded) and written as one Parquet shard into a work directory
named after the version's fingerprint (``<data_dir>/work/embed/<name>-<fp>/``). A killed run
therefore resumes at its first unfinished shard; finished shards are never embedded again. When
every shard is there, the gate reads them back, and only then are they moved into the version
directory and committed, so no half-written version is ever visible.

Table ``embeddings`` (view ``embeddings_<name>``): ``id`` (row number, 0-based), the source's key
columns, ``text`` (unless store_text is off), ``label`` and ``vector`` (``FLOAT[dim]``; read back
from Parquet it is ``FLOAT[]``: cast with ``::FLOAT[dim]``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertplat.catalog import Catalog
from bertplat.embed.config import EmbedConfig
from bertplat.embed.encoder import Encoder, ModelSpec, model_fingerprint, quantize_int8, read_model_spec
from bertplat.embed.gate import check_embeddings
from bertplat.embed.report import plot_pca
from bertplat.embed.source import SourceSpec, count_rows, iter_chunks
from bertplat.executor import cluster_address, run_tasks
from bertplat.lake import DatasetHandle, Lake, check_name, fingerprint, read_manifest
from bertplat.progress import NullProgress, Progress
from bertplat.registry.refs import resolve_model
from bertplat.stages import StageResult, catalog_status, find_existing
from bertplat.validation import GateError, GateReport

KIND = "embeddings"
SCHEMA_VERSION = 1
ALGORITHM_VERSION = 2  # bump when the same model, input and config would give other vectors


class Int8Refused(ValueError):
    """int8 quantisation agrees too little with float32 on the sample; the message gives the figures."""


class EmbedResult(StageResult):
    source: DatasetHandle

    def summary(self) -> str:
        s = self.stats
        verb = self._verb("embedded")
        speed = f", {s['rows_per_s']:,.0f} rows/s" if s.get("rows_per_s") else ""
        int8 = s.get("int8")
        q = (f"; int8 agrees with float32: mean cosine {int8['mean_cosine']:.5f}, min {int8['min_cosine']:.5f}"
             if int8 else "")
        return (f"embeddings {self.dataset.name}@{self.dataset.fingerprint}: {s['rows']:,} vectors of dimension "
                f"{s['dim']} ({s['pooling']} pooling{', L2-normalised' if s['normalized'] else ''}) from "
                f"{self.source.ref()}{speed}{q} - {verb}\n  {self.dataset.uri}\n"
                f"  DuckDB: SELECT id, text, vector FROM embeddings_{self.dataset.name};  search: bertplat search "
                f"--embeddings {self.dataset.name} \"query text\"")


def embed_fingerprint(source: DatasetHandle, model_hash: str, config: EmbedConfig, encoder_dtype: str,
                      pooling: str, normalize: bool, max_length: int) -> str:
    inputs = [f"{source.kind}:{source.fingerprint}", f"model:{model_hash}", f"dtype:{encoder_dtype}",
              f"pooling:{pooling}:{normalize}:{max_length}", f"algorithm:{ALGORITHM_VERSION}"]
    return fingerprint(KIND, config.content_json(), inputs, SCHEMA_VERSION)


def run_embed(model: str | Path, source: DatasetHandle, name: str, config: EmbedConfig, lake: Lake,
              catalog: Catalog | None = None, progress: Progress | None = None) -> EmbedResult:
    """Embed ``source`` with ``model`` as the embeddings dataset ``name``.

    ``model`` is resolved by `bertplat.registry.refs.resolve_model`, as fine-tuning and evaluation
    resolve theirs: a model directory, ``package:PACKAGE/DIR``, or a model reference NAME[@FINGERPRINT]
    (an export under <data_dir>/models, or a registry reference once the registry resolves there)."""
    progress = progress or NullProgress()
    start = time.monotonic()
    check_name(name)
    spec = read_model_spec(resolve_model(model, lake))
    src = SourceSpec.of(source, config)
    model_hash = model_fingerprint(spec)
    encoder = Encoder.from_config(spec, config.model_copy(update={"quantize": "none"}))
    dtype = encoder.precision
    fp = embed_fingerprint(source, model_hash, config, dtype, encoder.pooling, encoder.normalize, encoder.max_length)
    if found := find_existing(lake, catalog, KIND, name, fp):
        handle, m = found
        return EmbedResult(dataset=handle, source=source, reused=True, report=GateReport(**m["validation"]),
                           stats=m["stats"], elapsed_s=time.monotonic() - start,
                           catalog_status=catalog_status(catalog, handle))

    stats: dict = {"pooling": encoder.pooling, "normalized": encoder.normalize, "max_length": encoder.max_length,
                   "dim": encoder.dim, "device": str(encoder.device), "dtype": dtype, "quantize": config.quantize}
    head = None   # int8: the sample's vectors, already embedded for the agreement check
    if config.quantize == "int8":
        encoder, stats["int8"], head = _int8_encoder(encoder, src, config)
    expected = count_rows(src, config)
    work = lake.data_dir / "work" / "embed" / f"{name}-{fp}"
    if cluster_address(config.cluster):
        shards, timing = _embed_shards_on_cluster(spec, src, config, work, expected, progress)
    else:
        shards, timing = _embed_shards(encoder, src, config, work, expected, progress, head)
    report = check_embeddings(shards, expected, encoder.dim, encoder.normalize, config, dataset=f"{KIND}/{name}@{fp}")
    stats.update(rows=expected, **timing)

    with lake.writer(KIND, name, fp) as writer:
        if not report.passed:
            path = report.write(lake.data_dir / "reports")
            shutil.rmtree(work, ignore_errors=True)  # the same model and input would fail the same way
            raise GateError(report, path)
        for i, shard in enumerate(shards):
            os.replace(shard, writer.path(f"part-{i:05d}.parquet"))
        stats["pca"] = plot_pca(sorted(writer.tmp.glob("part-*.parquet")), writer.path("_report/pca.png"),
                                title=f"embeddings {name}: PCA of a sample")
        handle = writer.commit({
            "schema_version": SCHEMA_VERSION,
            "config": config.model_dump(mode="json"),
            "parents": [source.model_dump(include={"kind", "name", "fingerprint"}),
                        {"kind": "model", "name": spec.path.name, "fingerprint": model_hash[:16]}],
            "inputs": [{"source": source.ref(), "unit": src.unit, "keys": list(src.keys)},
                       {"model": str(spec.path), "ref": str(model), "sha256": model_hash}],
            "model": {"path": str(spec.path), "ref": str(model), "sha256": model_hash, "pooling": encoder.pooling,
                      "normalize": encoder.normalize, "max_length": encoder.max_length, "dim": encoder.dim},
            "counts": {"rows": expected, "dim": encoder.dim, "shards": len(shards)},
            "tables": {"embeddings": "part-*.parquet"},
            "validation": report.model_dump(mode="json"),
            "stats": stats,
        }, catalog)
    shutil.rmtree(work, ignore_errors=True)
    return EmbedResult(dataset=handle, source=source, reused=False, report=report, stats=stats,
                       elapsed_s=time.monotonic() - start, catalog_status=catalog_status(catalog, handle))


def _embed_shards(encoder: Encoder, src: SourceSpec, config: EmbedConfig, work: Path, expected: int,
                  progress: Progress, head: tuple[list[str], np.ndarray, float] | None = None
                  ) -> tuple[list[Path], dict]:
    """Every shard in ``work``, embedding only those a previous run did not finish. ``head``: (texts,
    vectors, seconds) of the input's first texts, already embedded by this encoder, which the first shard
    reuses instead of embedding them again."""
    work.mkdir(parents=True, exist_ok=True)
    shards, resumed, embedded, seconds, row = [], 0, 0, 0.0, 0
    with progress.task("embedding", total=expected, unit="rows") as bar:
        for i, chunk in enumerate(iter_chunks(src, config)):
            path = work / f"shard-{i:05d}.parquet"
            if path.is_file() and pq.ParquetFile(path).metadata.num_rows == len(chunk):
                resumed += 1
            else:
                t0 = time.perf_counter()
                texts = chunk.column("text").to_pylist()
                if i == 0 and head is not None and texts[:len(head[0])] == head[0]:
                    vectors = np.concatenate([head[1], encoder.encode(texts[len(head[0]):])])
                    seconds += head[2]
                else:
                    vectors = encoder.encode(texts)
                _write_shard(chunk, vectors, row, src, config, path)
                seconds += time.perf_counter() - t0
                embedded += len(chunk)
            shards.append(path)
            row += len(chunk)
            bar.advance(len(chunk))
    return _finish_shards(work, shards, resumed, embedded, seconds)


def _finish_shards(work: Path, shards: list[Path], resumed: int, embedded: int, seconds: float) -> tuple[list[Path], dict]:
    for stale in work.glob("shard-*.parquet"):  # a shard from a run with a larger input cannot be ours
        if stale not in shards:
            stale.unlink()
    return shards, {"shards_resumed": resumed, "rows_embedded": embedded, "embed_seconds": round(seconds, 3),
                    "rows_per_s": embedded / seconds if seconds else None}


def _embed_shards_on_cluster(spec: ModelSpec, src: SourceSpec, config: EmbedConfig, work: Path, expected: int,
                             progress: Progress) -> tuple[list[Path], dict]:
    """As :func:`_embed_shards`, with each unfinished shard a task on the Dask cluster ``config.cluster``: the
    chunks are read here and sent as they are needed (a few per worker in flight), every worker loads the
    model once and writes its shards into ``work`` (which it must see: one machine or a shared file system)."""
    work.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[Path, int]] = []

    def calls():
        row = 0
        for i, chunk in enumerate(iter_chunks(src, config)):
            path = work / f"shard-{i:05d}.parquet"
            plan.append((path, len(chunk)))
            if not (path.is_file() and pq.ParquetFile(path).metadata.num_rows == len(chunk)):
                yield (str(spec.path), config.model_dump_json(), chunk, row, src, str(path))
            else:
                bar.advance(len(chunk))
            row += len(chunk)

    with progress.task("embedding", total=expected, unit="rows") as bar:
        done = run_tasks(_embed_task, calls(), workers=1, cluster=config.cluster, window=8,
                         on_done=lambda i, r: bar.advance(r[0]))
    embedded, seconds = sum(r[0] for r in done), sum(r[1] for r in done)
    return _finish_shards(work, [p for p, _ in plan], len(plan) - len(done), embedded, seconds)


_WORKER_ENCODERS: dict[tuple[str, str], Encoder] = {}


def _embed_task(model_dir: str, config_json: str, chunk: pa.Table, first_id: int, src: SourceSpec,
                path: str) -> tuple[int, float]:
    """One shard on a cluster worker: (rows, seconds). The encoder is built once per worker process, as
    run_embed builds it here (int8 included: its agreement with float32 was checked before any task)."""
    key = (model_dir, config_json)
    if key not in _WORKER_ENCODERS:
        config = EmbedConfig.model_validate_json(config_json)
        encoder = Encoder.from_config(read_model_spec(Path(model_dir)), config.model_copy(update={"quantize": "none"}))
        if config.quantize == "int8":
            encoder = encoder.with_backbone(quantize_int8(encoder.backbone, config.int8_scheme))
        _WORKER_ENCODERS.clear()
        _WORKER_ENCODERS[key] = encoder
    config = EmbedConfig.model_validate_json(config_json)
    t0 = time.perf_counter()
    vectors = _WORKER_ENCODERS[key].encode(chunk.column("text").to_pylist())
    _write_shard(chunk, vectors, first_id, src, config, Path(path))
    return len(chunk), time.perf_counter() - t0


def _write_shard(chunk: pa.Table, vectors: np.ndarray, first_id: int, src: SourceSpec, config: EmbedConfig,
                 path: Path) -> None:
    """One shard, written beside its final name and renamed: a killed write leaves no shard."""
    dim = vectors.shape[1]
    columns = {"id": pa.array(np.arange(first_id, first_id + len(chunk)), pa.int64())}
    columns.update({k: chunk.column(k) for k in src.keys})
    if config.store_text:
        columns["text"] = chunk.column("text")
    columns["label"] = chunk.column("label")
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(pa.table(columns), tmp, compression="zstd", row_group_size=4096)
    os.replace(tmp, path)


def _int8_encoder(encoder: Encoder, src: SourceSpec, config: EmbedConfig
                  ) -> tuple[Encoder, dict, tuple[list[str], np.ndarray, float]]:
    """The int8 encoder, after checking its agreement with float32 on the first ``int8_sample`` texts, and
    (texts, int8 vectors, seconds) of that sample, which the first shard reuses."""
    if encoder.device.type != "cpu":
        raise ValueError("quantize=int8 is dynamic CPU quantisation; use device=cpu (on a GPU, bfloat16 is the fast path)")
    sample: list[str] = []
    for chunk in iter_chunks(src, config.model_copy(update={"shard_rows": config.int8_sample})):
        sample = chunk.column("text").to_pylist()
        break
    quantized = encoder.with_backbone(quantize_int8(encoder.backbone, config.int8_scheme))
    agreement, vectors, seconds = int8_agreement(encoder, quantized, sample)
    if agreement["mean_cosine"] < config.int8_min_mean_cosine or agreement["min_cosine"] < config.int8_min_cosine:
        raise Int8Refused(
            f"int8 quantisation is refused for this model: on {agreement['sample']} texts its vectors have mean "
            f"cosine {agreement['mean_cosine']:.6f} (threshold {config.int8_min_mean_cosine}) and minimum "
            f"{agreement['min_cosine']:.6f} (threshold {config.int8_min_cosine}) to float32. Embed in float32 "
            "(quantize=none), or lower int8_min_mean_cosine / int8_min_cosine if that loss is acceptable")
    return quantized, agreement, (sample, vectors, seconds)


def int8_agreement(fp32: Encoder, int8: Encoder, texts: list[str]) -> tuple[dict, np.ndarray, float]:
    """Mean and minimum cosine between the two encoders' vectors of ``texts``, and the int8 speed-up;
    then the int8 vectors and the seconds they took."""
    t0 = time.perf_counter()
    a = fp32.encode(texts)
    t1 = time.perf_counter()
    b = int8.encode(texts)
    t2 = time.perf_counter()
    a64, b64 = a.astype(np.float64), b.astype(np.float64)  # float32 rounds a mean of 0.99999 cosines to 1.0
    cos = (a64 * b64).sum(1) / np.maximum(np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1), 1e-12)
    return {"sample": len(texts), "mean_cosine": float(cos.mean()) if len(cos) else 1.0,
            "min_cosine": float(cos.min()) if len(cos) else 1.0,
            "speedup_on_sample": (t1 - t0) / (t2 - t1) if t2 > t1 else None}, b, t2 - t1


def embeddings_manifest(handle: DatasetHandle) -> dict:
    m = read_manifest(handle)
    if "model" not in m:
        raise ValueError(f"{handle.ref()} has no model record in its manifest; it was not written by run_embed")
    return m


def model_spec_of(handle: DatasetHandle) -> ModelSpec:
    """The model an embeddings version was made with (its directory must still exist)."""
    path = Path(embeddings_manifest(handle)["model"]["path"])
    if not path.is_dir():
        raise FileNotFoundError(f"{handle.ref()} was embedded with the model at {path}, which no longer exists; "
                                "queries must be embedded with the same model")
    return read_model_spec(path)
