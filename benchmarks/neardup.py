"""Near-duplicate removal on the two shared English Wikipedia shards (issue 15, evidence 3).

    python -m benchmarks.neardup                  # both shards, then a 5,000-document sample
    python -m benchmarks.neardup --sample 5000 --seed 15 --pairs 12

1. Both shards (``wikitasks_2021`` and ``mlm_pipeline``) are ingested twice with the default options, once
   without and once with near-dedup at Jaccard 0.8. It prints how many documents near-dedup removed, the
   extra time, and a few removed/kept pairs (random, seeded) to check by eye.
2. ``--sample`` documents are drawn from the ingested corpus and ingested again with near-dedup. The
   truth is the exact Jaccard similarity of every pair over the same shingles (a sparse matrix
   product). A document should be removed when an earlier one is at Jaccard >= threshold.
   Precision is the share of removed documents that have such an earlier document, and recall the
   share of such documents that were removed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, mb, require_shared_data  # noqa: E402
from bertplat.ingest import IngestConfig, run_ingest  # noqa: E402
from bertplat.ingest.neardup import NearDedup, sketch  # noqa: E402
from bertplat.lake import Lake  # noqa: E402


def ingest(paths: list[str], lake: Path, name: str, threshold: float | None, workers: int):
    options = {"workers": workers, "include": ("wiki_*", "*.jsonl")}
    if threshold is not None:
        options["near_dedup"] = {"threshold": threshold}
    start = time.perf_counter()
    result = run_ingest(paths, name, IngestConfig.build(options), Lake(str(lake)))
    return result, time.perf_counter() - start


def exact_truth(texts: list[str], threshold: float) -> tuple[np.ndarray, int]:
    """For every document, whether an earlier one is at exact Jaccard >= threshold; and the pair count."""
    from scipy import sparse

    cfg = NearDedup.model_construct(threshold=threshold, shingle_words=5, num_perm=128, bands=16,
                                    exact_shingles=10**9)
    _, sets = sketch(pa.array(texts), cfg)
    offsets = np.asarray(sets.offsets)
    values = np.asarray(sets.values)
    cols = np.unique(values, return_inverse=True)[1]
    rows = np.repeat(np.arange(len(texts)), np.diff(offsets))
    m = sparse.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(texts), cols.max() + 1))
    size = np.diff(offsets).astype(np.float64)
    inter = (m @ m.T).tocoo()
    keep = inter.row > inter.col                               # later document, earlier one
    r, c, v = inter.row[keep], inter.col[keep], inter.data[keep]
    jac = v / (size[r] + size[c] - v)
    hit = jac >= threshold
    should = np.zeros(len(texts), dtype=bool)
    should[r[hit]] = True
    return should, int(hit.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold (default 0.8)")
    parser.add_argument("--sample", type=int, default=5000, help="documents in the exact-Jaccard sample")
    parser.add_argument("--seed", type=int, default=15, help="seed of the sample and of the pairs shown")
    parser.add_argument("--pairs", type=int, default=12, help="removed/kept pairs to print for the eye check")
    parser.add_argument("--eye-min-chars", type=int, default=200,
                        help="the pairs shown have removed documents of at least this many characters (default 200)")
    parser.add_argument("--workers", type=int, default=1, help="ingest workers (default 1, per-core figures)")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()

    shared = require_shared_data()
    wiki = shared / "corpora/en/wikipedia"
    paths = [str(wiki / "wikitasks_2021"), str(wiki / "mlm_pipeline")]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-neardup-"))
    print(f"machine: {machine()}")
    try:
        plain, t_plain = ingest(paths, work / "lake", "plain", None, args.workers)
        near, t_near = ingest(paths, work / "lake", "near", args.threshold, args.workers)
        size = mb(plain.counts["input_bytes"])
        print(f"\nboth shards: {size:.1f} MB, {plain.counts['documents']:,} documents after exact dedup "
              f"({plain.counts['duplicates']:,} exact duplicates)")
        print(f"  near-dedup at {args.threshold}: {near.counts['near_duplicates']:,} removed, "
              f"{near.counts['documents']:,} kept")
        print(f"  ingest without near-dedup {t_plain:.1f} s ({size / t_plain / args.workers:.1f} MB/s per core), "
              f"with {t_near:.1f} s ({size / t_near / args.workers:.1f} MB/s per core): ratio {t_near / t_plain:.2f}")
        con = duckdb.connect()
        rejects = con.sql(f"SELECT reason, detail FROM '{near.dataset.path}/rejects/*.parquet' "
                          "WHERE reason = 'near_duplicate'").fetchall()
        exact = sum("(Jaccard " in d for _, d in rejects)
        print(f"  decided on exact Jaccard (short documents): {exact:,}; on the MinHash estimate: {len(rejects) - exact:,}")
        corpus = f"'{plain.dataset.path}/*.parquet'"
        removed_sql = f"""
            SELECT r.detail, c.text AS removed_text, k.text AS kept_text
            FROM '{near.dataset.path}/rejects/near_duplicates.parquet' r
            JOIN {corpus} c ON c.source_file = r.source_file AND c.source_record = r.record
            JOIN {corpus} k ON k.doc_id = regexp_extract(r.detail, 'doc_id ([0-9a-f]+)', 1)
            WHERE c.n_chars >= {args.eye_min_chars}
            ORDER BY hash(r.source_file || r.record::VARCHAR || '{args.seed}') LIMIT {args.pairs}"""
        by_length = con.sql(f"""
            SELECT count(*) FILTER (c.n_chars < 100), count(*) FILTER (c.n_chars >= 100 AND c.n_chars < 1000),
                   count(*) FILTER (c.n_chars >= 1000)
            FROM '{near.dataset.path}/rejects/near_duplicates.parquet' r
            JOIN {corpus} c ON c.source_file = r.source_file AND c.source_record = r.record""").fetchall()[0]
        print(f"  removed documents by length: {by_length[0]:,} under 100 characters, {by_length[1]:,} of 100-999, "
              f"{by_length[2]:,} of 1,000 or more")
        print(f"\n{args.pairs} removed/kept pairs of {args.eye_min_chars}+ characters (first 110 characters each):")
        for detail, removed, kept in con.sql(removed_sql).fetchall():
            print(f"- {detail.split(') of ')[0]})")
            print(f"    removed: {removed[:110]!r}")
            print(f"    kept:    {kept[:110]!r}")

        # the exact-Jaccard sample
        texts = [t for (t,) in con.sql(f"SELECT text FROM {corpus} ORDER BY hash(doc_id || '{args.seed}') "
                                       f"LIMIT {args.sample}").fetchall()]
        sample = work / "sample.jsonl"
        sample.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        result, t_sample = ingest([str(sample)], work / "lake", "sample", args.threshold, args.workers)
        removed = np.zeros(len(texts), dtype=bool)
        for (record,) in con.sql(f"SELECT record FROM '{result.dataset.path}/rejects/near_duplicates.parquet'"
                                 ).fetchall() if result.counts["near_duplicates"] else []:
            removed[record - 1] = True
        should, pairs = exact_truth(texts, args.threshold)
        tp = int((removed & should).sum())
        precision = tp / max(removed.sum(), 1)
        recall = tp / max(should.sum(), 1)
        print(f"\nsample of {len(texts):,} documents (seed {args.seed}): {pairs} pairs at exact Jaccard >= "
              f"{args.threshold}, {int(should.sum())} documents to remove; removed {int(removed.sum())}")
        print(f"  precision {precision:.3f}, recall {recall:.3f}")
        for i in np.flatnonzero(removed & ~should)[:5]:
            print(f"  false positive: {texts[i][:100]!r}")
        for i in np.flatnonzero(should & ~removed)[:5]:
            print(f"  missed: {texts[i][:100]!r}")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
