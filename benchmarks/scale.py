"""Dask overhead: ingest and examples on the local process pool against a Dask cluster of the same
number of single-threaded workers on this machine, in the same run (issue 16).

    python -m benchmarks.scale                    # 2 workers, English Wikipedia + Gutenberg (~91 MB)
    python -m benchmarks.scale --workers 1 2

Each arm runs the same stage on the same inputs into its own lake. The arms alternate (local, Dask,
then Dask, local), and each figure is the mean of the two. Dask's scheduler and workers are started
before timing, as a user's cluster would be. The target is an overhead of at most 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, mb, require_shared_data  # noqa: E402
from bertplat.examples.config import ExamplesConfig  # noqa: E402
from bertplat.examples.stage import run_examples  # noqa: E402
from bertplat.ingest import IngestConfig, run_ingest  # noqa: E402
from bertplat.lake import Lake  # noqa: E402
from bertplat.vocab import VocabConfig, run_vocab  # noqa: E402

TARGET_OVERHEAD = 0.10


def start_cluster(root: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    dask = str(Path(sys.executable).with_name("dask"))
    file = root / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env=env)]
    while not file.exists():
        time.sleep(0.1)
    for i in range(workers):
        procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(file), "--nthreads", "1",
                                       "--no-dashboard", "--name", f"w{i}", "--host", "127.0.0.1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                      env=env))
    from distributed import Client

    address = json.loads(file.read_text())["address"]
    with Client(address, set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="worker counts (default 2)")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    shared = require_shared_data()
    paths = [str(shared / "corpora/en/wikipedia/wikitasks_2021/AA"), str(shared / "corpora/en/gutenberg")]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"machine: {machine()}")
    rows = []
    try:
        for n in args.workers:
            (work / f"cluster{n}").mkdir(parents=True)
            address, procs = start_cluster(work / f"cluster{n}", n)
            try:
                times: dict[str, dict[str, list[float]]] = {"local": {"ingest": [], "examples": []},
                                                            "dask": {"ingest": [], "examples": []}}
                size = 0
                vocab = None
                for rep, arm in enumerate(["local", "dask", "dask", "local"]):
                    lake = Lake(str(work / f"lake-{n}-{rep}"))
                    cluster = address if arm == "dask" else None
                    start = time.perf_counter()
                    corpus = run_ingest(paths, "bench", IngestConfig(workers=n, cluster=cluster,
                                                                     include=("*.txt", "wiki_*")), lake)
                    times[arm]["ingest"].append(time.perf_counter() - start)
                    size = corpus.counts["input_bytes"]
                    if vocab is None:   # one vocabulary for every arm (not timed)
                        vocab = run_vocab(corpus.dataset, "bench", VocabConfig(vocab_size=8000), lake).dataset
                    start = time.perf_counter()
                    run_examples(corpus.dataset, vocab, "bench",
                                 ExamplesConfig(masking="static", workers=n, cluster=cluster), lake)
                    times[arm]["examples"].append(time.perf_counter() - start)
                    if rep:   # keep the first lake: it holds the shared vocabulary
                        shutil.rmtree(work / f"lake-{n}-{rep}", ignore_errors=True)
            finally:
                for p in procs:
                    if p.poll() is None:
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait()
            for stage in ("ingest", "examples"):
                print(f"{n} workers, {stage}: local {', '.join(f'{t:.1f}' for t in times['local'][stage])} s; "
                      f"dask {', '.join(f'{t:.1f}' for t in times['dask'][stage])} s (in run order)")
                local = sum(times["local"][stage]) / 2
                dask = sum(times["dask"][stage]) / 2
                rows.append((n, stage, local, dask, dask / local - 1, mb(size)))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'workers':>7} {'stage':>9} {'local s':>8} {'dask s':>8} {'overhead':>9}  input MB")
    for n, stage, local, dask, over, size in rows:
        print(f"{n:>7} {stage:>9} {local:8.1f} {dask:8.1f} {over:+9.1%}  {size:.1f}")
    for n, stage, _, _, over, _ in rows:
        print(f"{stage} on {n} workers: Dask overhead {over:+.1%}, target <= {TARGET_OVERHEAD:.0%}: "
              f"{'met' if over <= TARGET_OVERHEAD else 'NOT met'}")


if __name__ == "__main__":
    main()
