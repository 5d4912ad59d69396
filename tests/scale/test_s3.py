"""Issue 16: the lake, exports and run directories on an S3-compatible bucket. A real ``moto_server`` is
started on a free loopback port for this module (stopped even when a test fails); the stages run against
``s3://`` data roots exactly as against a directory, and give the same fingerprints and bytes.

The commit protocol on a bucket is "files under the final prefix, ``_manifest.json`` last": a writer
killed (SIGKILL, for real) after its data files and before the manifest leaves nothing any reader takes
for a version, and the sweep removes it."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from bertplat.catalog import Catalog
from bertplat.examples.config import ExamplesConfig
from bertplat.examples.stage import run_examples
from bertplat.ingest import IngestConfig, run_ingest
from bertplat.lake import Lake
from bertplat.objectstore import ObjectStore, ObjectStoreError
from bertplat.pretrain import PretrainConfig, run_pretrain
from bertplat.vocab import VocabConfig, run_vocab

pytestmark = pytest.mark.slow
MOTO = Path(sys.executable).with_name("moto_server")
REPO = Path(__file__).resolve().parents[2]
INGEST = dict(format="json", text_field="extract", title_field="title")
PRETRAIN = dict(model="tiny", max_steps=6, micro_batch_size=16, val_every_n_steps=6, val_examples=64,
                checkpoint_every_n_steps=3, accelerator="cpu", min_val_mlm_accuracy=0.0,
                min_val_mlm_accuracy_over_baseline=0.0, require_loss_decrease=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on loopback; yields the environment that points the AWS variables at it."""
    if not MOTO.exists():
        pytest.skip("moto_server is not installed (make setup installs moto[server] with the dev extra)")
    port = free_port()
    root = tmp_path_factory.mktemp("moto")
    log = open(root / "moto.log", "wb")
    proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start: {(root / 'moto.log').read_text()}") from None
                time.sleep(0.1)
        admin = pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                                  endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True)
        admin.create_dir("lake")
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


def digests(version: Path) -> dict[str, str]:
    return {str(p.relative_to(version)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(version.rglob("*.parquet"))}


def keys(store: ObjectStore, rel: str) -> set[str]:
    base = store.key(rel)
    return {i.path[len(base) + 1:] for i in store.files(rel)}


def test_the_pipeline_on_a_bucket_matches_a_directory(s3, demo_corpus_file, tmp_path):
    uri = "s3://lake/pipeline"
    lake = Lake(uri, cache_dir=str(tmp_path / "mirror-a"))
    catalog = Catalog(tmp_path / "a.duckdb", lake)
    corpus = run_ingest([str(demo_corpus_file)], "wiki", IngestConfig(**INGEST), lake, catalog).dataset
    vocab = run_vocab(corpus, "wiki", VocabConfig(vocab_size=1024), lake, catalog).dataset
    examples = run_examples(corpus, vocab, "wiki", ExamplesConfig(max_seq_length=64), lake, catalog).dataset
    model = run_pretrain(examples, "tiny", PretrainConfig(**PRETRAIN), lake, catalog)

    # the same stages on a directory: the same fingerprints and the same bytes
    local = Lake(str(tmp_path / "local"))
    l_corpus = run_ingest([str(demo_corpus_file)], "wiki", IngestConfig(**INGEST), local).dataset
    assert l_corpus.fingerprint == corpus.fingerprint and digests(l_corpus.path) == digests(corpus.path)
    l_examples = run_examples(l_corpus, vocab, "wiki", ExamplesConfig(max_seq_length=64), local).dataset
    assert l_examples.fingerprint == examples.fingerprint and digests(l_examples.path) == digests(examples.path)

    # everything is in the bucket, each version with its manifest
    store = lake.store
    assert corpus.uri == f"{uri}/lake/corpus/wiki/{corpus.fingerprint}"
    for handle in (corpus, vocab, examples):
        rel = f"lake/{handle.kind}/{handle.name}/{handle.fingerprint}"
        assert keys(store, rel) == {p.relative_to(handle.path).as_posix() for p in handle.path.rglob("*") if p.is_file()}
        assert "_manifest.json" in keys(store, rel)
    export = keys(store, f"models/tiny/{model.fingerprint}")
    assert {"_manifest.json", "model.safetensors", "config.json", "vocab.txt"} <= export
    run = keys(store, f"runs/tiny-{model.fingerprint}")
    assert {"checkpoints/last.ckpt", "checkpoints/state.json", "config.yaml", "metrics.json"} <= run

    # another machine (an empty mirror, a new catalog) finds it all in the bucket
    other = Lake(uri, cache_dir=str(tmp_path / "mirror-b"))
    assert other.names("corpus") == ["wiki"] and other.latest("examples", "wiki").fingerprint == examples.fingerprint
    cat_b = Catalog(tmp_path / "b.duckdb", other)
    assert cat_b.rebuild() == 3
    assert cat_b.check() == []
    _, rows = cat_b.fetch("SELECT count(*), sum(length(text)) FROM corpus_wiki")
    cat_local = Catalog(tmp_path / "l.duckdb", local)
    cat_local.rebuild()
    assert rows == cat_local.fetch("SELECT count(*), sum(length(text)) FROM corpus_wiki")[1]
    assert rows[0][0] == 10_033
    _, splits = cat_b.fetch("SELECT split, count(*) FROM examples_wiki GROUP BY split ORDER BY split")
    assert [s for s, _ in splits] == ["train", "validation"]
    # the views read the bucket: nothing of the corpus was copied to this machine
    assert not list((tmp_path / "mirror-b").rglob("*.parquet"))

    # ... and reuses the export from the bucket instead of training again
    again = run_pretrain(other.latest("examples", "wiki"), "tiny", PretrainConfig(**PRETRAIN), other, cat_b)
    assert again.reused and again.fingerprint == model.fingerprint
    assert (again.model_dir / "model.safetensors").read_bytes() == (model.model_dir / "model.safetensors").read_bytes()

    # without the export, a third machine resumes the run from the checkpoint in the bucket: nothing is retrained
    store.delete_dir(f"models/tiny/{model.fingerprint}")
    third = Lake(uri, cache_dir=str(tmp_path / "mirror-c"))
    resumed = run_pretrain(third.latest("examples", "wiki"), "tiny", PretrainConfig(**PRETRAIN), third, resume=True)
    assert resumed.resumed_from_step == PRETRAIN["max_steps"] and not resumed.reused
    assert (resumed.model_dir / "model.safetensors").read_bytes() == (model.model_dir / "model.safetensors").read_bytes()
    assert "_manifest.json" in keys(store, f"models/tiny/{model.fingerprint}")


KILLED_INGEST = """
import os, signal, sys
from bertplat import objectstore
from bertplat.ingest import IngestConfig, run_ingest
from bertplat.lake import Lake

put = objectstore.ObjectStore.put_file
def put_then_die(self, local, rel):
    if rel.endswith("_manifest.json"):      # every data file is in the bucket: die before the commit marker
        os.kill(os.getpid(), signal.SIGKILL)
    put(self, local, rel)
objectstore.ObjectStore.put_file = put_then_die
run_ingest([sys.argv[1]], "killed", IngestConfig(format="json", text_field="extract"), Lake(sys.argv[2], sys.argv[3]))
"""


def test_a_writer_killed_before_the_manifest_leaves_no_version(s3, demo_corpus_file, tmp_path):
    uri = "s3://lake/killed"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_INGEST), str(demo_corpus_file), uri,
                           str(tmp_path / "mirror")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    lake = Lake(uri, cache_dir=str(tmp_path / "reader"))
    store = lake.store
    (fp,) = store.children("lake/corpus/killed")
    left = keys(store, f"lake/corpus/killed/{fp}")
    assert any(k.endswith(".parquet") for k in left) and "_manifest.json" not in left  # the data files got there

    # no reader takes it for a version
    assert lake.find("corpus", "killed", fp) is None
    assert lake.versions("corpus", "killed") == [] and lake.names("corpus") == []
    catalog = Catalog(tmp_path / "c.duckdb", lake)
    assert catalog.rebuild() == 0
    cols, views = catalog.fetch("SELECT view_name FROM duckdb_views() WHERE NOT internal AND view_name LIKE '%killed%'")
    assert views == []

    # a young uncommitted prefix may belong to a writer still uploading on another machine: kept; an old one goes
    assert lake.sweep(stale_after_s=3600) == [] and keys(store, f"lake/corpus/killed/{fp}") == left
    assert lake.sweep(stale_after_s=0) == [f"lake/corpus/killed/{fp}"]
    assert keys(store, f"lake/corpus/killed/{fp}") == set()

    # the same command through the CLI then commits it, and `bertplat sql` reads it from the bucket
    env = {**os.environ, **s3, "BERTPLAT_DATA_DIR": uri, "BERTPLAT_CACHE_DIR": str(tmp_path / "cli")}
    cli = Path(sys.executable).with_name("bertplat")
    done = subprocess.run([str(cli), "ingest", str(demo_corpus_file), "-n", "killed", "-f", "json",
                           "--text-field", "extract"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{uri}/lake/corpus/killed/{fp}" in done.stdout
    query = subprocess.run([str(cli), "sql", "SELECT count(*) AS n FROM corpus_killed"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert query.returncode == 0 and "10033" in query.stdout, query.stdout + query.stderr


def test_a_missing_bucket_or_an_unreachable_store_is_a_clear_error(s3, tmp_path, monkeypatch):
    with pytest.raises(ObjectStoreError, match=r"object store s3://no-such-bucket at 127\.0\.0\.1:\d+: the bucket "
                                               r"does not exist. Create it"):
        Lake("s3://no-such-bucket/x", cache_dir=str(tmp_path / "n"))
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(ObjectStoreError, match=f"object store s3://lake at 127.0.0.1:{port}: looking up the bucket "
                                               "lake failed: .*AWS_ENDPOINT_URL"):
        Lake("s3://lake/nowhere", cache_dir=str(tmp_path / "m"))
    assert time.monotonic() - start < 60
    assert not (tmp_path / "m").exists() and not (tmp_path / "n").exists()  # nothing written
