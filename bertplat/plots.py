"""Plots people would rather look at than read: length histograms and loss curves (PNG, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    """matplotlib, imported on first use (it costs a second; most processes never plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(edge: float) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if edge >= div:
            return f"{edge / div:g}{suffix}"
    return f"{edge:g}"


def plot_length_histogram(edges: Sequence[float], counts: Sequence[int], path: Path, title: str,
                          xlabel: str = "characters per document") -> Path:
    """Bars for log-spaced bins ``[edges[i], edges[i+1])``; the last bin is open-ended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    labels = [f"{_label(a)}-{_label(b)}" for a, b in zip(edges[:-1], edges[1:])] + [f">={_label(edges[-1])}"]
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.bar(range(len(counts)), counts, color="#3b75af")
    ax.set_xticks(range(len(counts)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, title: str,
                xlabel: str, ylabel: str, logy: bool = False) -> Path:
    """One line per named (x, y) series, e.g. train and validation loss against steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name, marker="o" if len(x) < 30 else None, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def text_histogram(edges: Sequence[float], counts: Sequence[int], width: int = 40) -> str:
    """The same histogram as Markdown table rows with bars, for logs and Prefect artifacts."""
    top = max(counts) if counts and max(counts) else 1
    labels = [f"{_label(a)}-{_label(b)}" for a, b in zip(edges[:-1], edges[1:])] + [f">={_label(edges[-1])}"]
    rows = ["| bin | count | |", "|---|---:|---|"]
    for label, count in zip(labels, counts):
        rows.append(f"| {label} | {count:,} | {'█' * round(width * count / top)} |")
    return "\n".join(rows)
