"""A picture of an embeddings dataset: a 2-D PCA of a sample, coloured by label when there are labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bertplat.embed.gate import vectors_of
from bertplat.plots import _pyplot

MAX_LABELS = 12  # more distinct labels than this are not a legend anyone can read


def sample_vectors(shards: Sequence[Path], n: int, seed: int = 0) -> tuple[np.ndarray, list]:
    """About ``n`` rows spread over all shards (the same ones every time): vectors and labels."""
    per = max(1, -(-n // max(1, len(shards))))
    rng = np.random.default_rng(seed)
    vecs, labels = [], []
    for path in shards:
        table = pq.read_table(path, columns=["vector", "label"])
        rows = np.sort(rng.choice(len(table), size=min(per, len(table)), replace=False)) if len(table) else []
        part = table.take(rows)
        vecs.append(vectors_of(part))
        labels += part.column("label").to_pylist()
    return (np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32)), labels


def plot_pca(shards: Sequence[Path], path: Path, title: str, n: int = 2000) -> dict:
    """Project a sample on its first two principal components and save a scatter plot."""
    x, labels = sample_vectors(shards, n)
    if len(x) < 3:
        return {"sample": len(x), "explained_variance": None}
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T  # (n, 2)
    explained = (s[:2] ** 2 / (s ** 2).sum()).round(4).tolist()
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 5))
    distinct = sorted({lab for lab in labels if lab is not None})
    if 0 < len(distinct) <= MAX_LABELS:
        arr = np.asarray(labels, dtype=object)
        for lab in distinct:
            pick = arr == lab
            ax.scatter(xy[pick, 0], xy[pick, 1], s=4, alpha=0.6, label=str(lab))
        ax.legend(markerscale=3, fontsize=8)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6)
    ax.set(title=title, xlabel=f"PC1 ({explained[0]:.1%})", ylabel=f"PC2 ({explained[1]:.1%})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return {"sample": len(x), "explained_variance": explained, "labels": distinct[:MAX_LABELS]}
