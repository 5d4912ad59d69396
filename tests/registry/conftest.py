"""A small real chain, built once per session: raw text files -> ingest -> vocab -> examples -> a 4-step
tiny pretraining -> a toy sentiment task -> a short fine-tune; then each test gets its own copy of the
data root (lake, models, catalog) to register and promote in."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from bertplat.catalog import Catalog
from bertplat.lake import Lake
from tests.finetune.conftest import BAD, GOOD, import_sentiment

FILLER = ["the", "film", "was", "a", "very", "plot", "it", "really", "story", "actor", "scene", "and", "but", "not"]


def write_corpus(root: Path, n_files: int = 3, docs_per_file: int = 40) -> list[Path]:
    """Plain-text files of blank-line separated documents in the toy task's words."""
    rng = random.Random(11)
    paths = []
    for f in range(n_files):
        docs = []
        for _ in range(docs_per_file):
            sents = [" ".join(rng.sample(FILLER, 5) + [rng.choice(GOOD + BAD)]) + "." for _ in range(rng.randint(3, 6))]
            docs.append(" ".join(sents))
        path = root / f"part{f}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def chain(tmp_path_factory) -> dict:
    """Every stage once, at the smallest settings, registered in a catalog: paths and handles."""
    from bertplat.examples.config import ExamplesConfig
    from bertplat.examples.stage import run_examples
    from bertplat.finetune.config import FinetuneConfig
    from bertplat.finetune.stage import run_finetune
    from bertplat.ingest import IngestConfig, run_ingest
    from bertplat.pretrain import PretrainConfig, run_pretrain
    from bertplat.vocab import VocabConfig, run_vocab

    base = tmp_path_factory.mktemp("registry-chain")
    lake = Lake(str(base / "data"))
    catalog = Catalog(lake.data_dir / "catalog.duckdb", lake)
    raw = write_corpus(base / "raw")
    corpus = run_ingest([str(p) for p in raw], "toy", IngestConfig(format="text", text_mode="paragraphs", workers=1),
                        lake, catalog).dataset
    vocab = run_vocab(corpus, "toy", VocabConfig(vocab_size=200, min_frequency=1, max_unk_rate=1.0, max_fertility=50,
                                                 min_whole_word_share=0.0, min_learned_share=0.0), lake, catalog).dataset
    examples = run_examples(corpus, vocab, "toy", ExamplesConfig(workers=1, max_seq_length=32, validation_fraction=0.2,
                                                                 max_label_imbalance=0.5, mask_rate_tolerance=0.5),
                            lake, catalog).dataset
    pre = run_pretrain(examples, "toy-tiny", PretrainConfig(
        model="tiny", micro_batch_size=8, max_steps=4, warmup_steps=1, val_every_n_steps=4, val_examples=16,
        log_every_n_steps=1, accelerator="cpu", min_val_mlm_accuracy=0.0, require_loss_decrease=False), lake, catalog)
    task = import_sentiment(base / "task", lake, catalog, n_train=48, n_dev=16, name="sent")
    ft_cfg = FinetuneConfig(epochs=1, batch_size=16, max_length=32, lr=1e-3, accelerator="cpu",
                            require_beats_baseline=False, seed=1)
    ft = run_finetune(pre.model_dir, task, "toy_sent", ft_cfg, lake, catalog)
    ft2 = run_finetune(pre.model_dir, task, "toy_sent", ft_cfg.model_copy(update={"seed": 2}), lake, catalog)
    return {"root": base / "data", "raw": raw, "task_files": sorted((base / "task").glob("*.tsv")),
            "pretrained": pre.model_dir, "finetuned": ft.model_dir, "finetuned2": ft2.model_dir, "task": task,
            "corpus": corpus, "vocab": vocab, "examples": examples, "ft": ft, "ft2": ft2}


@pytest.fixture()
def reg(chain, tmp_path):
    """A copy of the chain's data root for one test; the lake, models and catalog at their original paths are
    left alone, so the models' recorded paths point into the copy."""
    root = tmp_path / "data"
    shutil.copytree(chain["root"], root, symlinks=True)
    lake = Lake(str(root))
    catalog = Catalog(root / "catalog.duckdb", lake)
    models = root / "models"

    def model_dir(key: str) -> Path:
        return models / chain[key].parent.name / chain[key].name

    return {"lake": lake, "catalog": catalog, "dir": model_dir, **{k: v for k, v in chain.items() if k != "root"}}


def write_fake_hf(directory: Path, seed: int) -> Path:
    """A small Hugging Face directory (config.json, model.safetensors, vocab.txt) that differs by ``seed``."""
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 4, "vocab_size": 8}))
    torch.manual_seed(seed)
    save_file({"embeddings.word_embeddings.weight": torch.randn(8, 4)}, str(directory / "model.safetensors"))
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]) + "\n")
    return directory
