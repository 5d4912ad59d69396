"""The vocab stage: BERT's pipeline, golden ids, HF interop, the gate, and real corpora."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bertplat.catalog import Catalog
from bertplat.ingest import IngestConfig, run_ingest
from bertplat.lake import Lake
from bertplat.validation import GateError
from bertplat.vocab import SPECIAL_TOKENS, VocabConfig, VocabInfo, load_tokenizer, run_vocab
from bertplat.vocab.tokenizer import (
    CharacterCounts,
    new_tokenizer,
    new_trainer,
    plan_alphabet,
    tokenizer_from_vocab,
)

GOLDEN = Path(__file__).parent / "golden"


def test_golden_ids_tokens_and_offsets():
    expected = json.loads((GOLDEN / "expected.json").read_text())
    tok = tokenizer_from_vocab((GOLDEN / "vocab.txt").read_text().split(), VocabConfig())
    enc = tok.encode(expected["text"], expected["pair"])
    assert enc.tokens == expected["tokens"]
    assert enc.ids == expected["ids"]
    assert [list(o) for o in enc.offsets] == expected["offsets"]
    first_b = expected["type_ids_from"]
    assert enc.type_ids == [0] * first_b + [1] * (len(enc.ids) - first_b)


def test_cased_vocab_keeps_case_and_accents():
    tok = tokenizer_from_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Café", "café"],
                               VocabConfig(lowercase=False))
    assert tok.encode("Café café", add_special_tokens=False).tokens == ["Café", "café"]


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory, demo_corpus_file):
    """The packaged demo corpus, ingested once for this module."""
    path = demo_corpus_file
    root = tmp_path_factory.mktemp("vocab")
    lake = Lake(str(root / "data"))
    corpus = run_ingest([str(path)], "demo", IngestConfig(format="json", text_field="extract", title_field="title",
                                                          workers=1), lake).dataset
    return lake, Catalog(root / "data" / "catalog.duckdb", lake), corpus


def test_vocab_stage_writes_a_validated_hf_loadable_vocabulary(demo_lake):
    lake, catalog, corpus = demo_lake
    result = run_vocab(corpus, "v", VocabConfig(vocab_size=4000, pad_to_multiple_of=64), lake, catalog)
    assert result.report.passed and result.stats["size"] == 4032          # 4000 rounded up to 64s
    path = result.dataset.path
    assert {p.name for p in path.iterdir()} >= {"tokenizer.json", "vocab.txt", "tokenizer_config.json",
                                                "special_tokens_map.json", "tokens.parquet", "_manifest.json"}
    lines = (path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert lines[:5] == list(SPECIAL_TOKENS) and len(lines) == 4032
    info = VocabInfo.from_tokenizer(load_tokenizer(path))
    assert info.special_ids == (0, 1, 2, 3, 4) and info.id_dtype.name == "uint16"
    assert info.continuation.sum() == sum(t.startswith("##") for t in lines)
    _, rows = catalog.fetch("SELECT count(*), sum(is_special::INT), sum(is_continuation::INT) FROM vocab_v")
    assert rows == [(4032, 5, int(info.continuation.sum()))]
    held = result.stats["heldout"]
    assert held["unk_rate"] < 0.005 and 1.0 < held["fertility"] < 1.6 and held["whole_word_share"] > 0.7
    again = run_vocab(corpus, "v", VocabConfig(vocab_size=4000, pad_to_multiple_of=64), lake, catalog)
    assert again.reused and again.dataset == result.dataset


@pytest.mark.interop
def test_transformers_bert_tokenizer_fast_gives_identical_ids_and_offsets(demo_lake):
    transformers = pytest.importorskip("transformers")
    lake, catalog, corpus = demo_lake
    result = run_vocab(corpus, "v", VocabConfig(vocab_size=4000, pad_to_multiple_of=64), lake, catalog)
    ours = load_tokenizer(result.dataset.path)
    hf = transformers.BertTokenizerFast.from_pretrained(str(result.dataset.path))
    part = next(result.corpus.path.glob("part-*.parquet"))
    texts = pq.read_table(part, columns=["text"]).column("text").to_pylist()[:300]
    for a, b in zip(texts[::2], texts[1::2]):
        mine = ours.encode(a, b)
        theirs = hf(a, b, return_offsets_mapping=True)
        assert mine.ids == theirs["input_ids"]
        assert mine.type_ids == theirs["token_type_ids"]
        assert [tuple(o) for o in mine.offsets] == [tuple(o) for o in theirs["offset_mapping"]]
    # the slow tokenizer, built from vocab.txt alone, agrees too
    slow = transformers.BertTokenizer(str(result.dataset.path / "vocab.txt"), do_lower_case=True)
    assert slow(texts[0])["input_ids"] == ours.encode(texts[0]).ids


# Accents, Greek capitals, Hangul (decomposed by accent stripping), CJK, full-width stops, control and
# zero-width characters, ligatures, digits and punctuation inside and around words.
TRICKY = ["Café crème brûlée, naïve résumé; ΟΔΟΣ ΣΟΦΟΣ σοφός", "한국어 문장입니다. 서울은 크다!",
          "数学是一门学科，红楼梦．第一回", "e\u0301te\u0301 A\u200bB tab\there\x07bell",
          "don't re-enter (x) [y] {z} 3.14 100% $5 ©2020 20°C ﬁne Ǆemal", "İstanbul ǅ Straße"]


@pytest.mark.parametrize("lowercase", [True, False])
def test_the_planned_alphabet_is_the_one_the_trainer_finds(lowercase):
    cfg = VocabConfig(vocab_size=300, lowercase=lowercase, min_frequency=1, limit_alphabet=None)
    counts = CharacterCounts(new_tokenizer(cfg))
    counts.add(TRICKY)
    planned = plan_alphabet(counts, None)
    tok = new_tokenizer(cfg)
    tok.train_from_iterator(TRICKY, trainer=new_trainer(cfg))  # HF's own choice, unplanned
    vocab = tok.get_vocab()
    assert planned.chars == sorted(t for t in vocab if len(t) == 1)
    assert planned.continuations == sorted(t[2:] for t in vocab if t.startswith("##") and len(t) == 3)
    assert "가" not in planned.chars or not lowercase  # uncased strips accents: Hangul goes to jamo
    # a limit keeps the most frequent characters, ties by code point
    top = plan_alphabet(counts, 5)
    assert len(top.chars) == 5 and set(top.continuations) <= set(top.chars)


_TRAIN_IN_A_FRESH_PROCESS = """
import json, sys
from bertplat.vocab import VocabConfig
from bertplat.vocab.tokenizer import CharacterCounts, finish_tokenizer, new_tokenizer, new_trainer, plan_alphabet
texts = json.load(open(sys.argv[1], encoding="utf-8"))
cfg = VocabConfig(vocab_size=4000, limit_alphabet=int(sys.argv[2]))
counts = CharacterCounts(new_tokenizer(cfg))
counts.add(texts)
tok = new_tokenizer(cfg)
tok.train_from_iterator(texts, trainer=new_trainer(cfg, plan_alphabet(counts, cfg.limit_alphabet)))
vocab = finish_tokenizer(tok, cfg).get_vocab()
print("\\n".join(sorted(vocab, key=vocab.__getitem__)))
"""


def test_the_same_corpus_gives_the_same_vocabulary_in_every_process(demo_corpus_file, tmp_path):
    # Unplanned, HF's trainer gave 22-34 different tokens out of 4,000 from run to run on these texts
    # (huggingface/tokenizers#1794); a limit of 80 characters also cuts through equal counts.
    data = json.loads(demo_corpus_file.read_text(encoding="utf-8"))
    texts = [d["extract"] for d in (data if isinstance(data, list) else data.values())][:3000]
    src = tmp_path / "texts.json"
    src.write_text(json.dumps(texts), encoding="utf-8")
    for limit in ("1000", "80"):
        runs = [subprocess.run([sys.executable, "-c", _TRAIN_IN_A_FRESH_PROCESS, str(src), limit], check=True,
                               capture_output=True, text=True).stdout for _ in range(3)]
        assert len(runs[0].splitlines()) == 4000 and runs[0] == runs[1] == runs[2]


def test_gate_fails_with_an_actionable_message_when_characters_are_missing(tmp_path):
    lake = Lake(str(tmp_path / "data"))
    lines = [json.dumps({"text": "".join(chr(0x4E00 + (i * 7 + j) % 3000) for j in range(60)) + "。"}, ensure_ascii=False)
             for i in range(3000)]
    src = tmp_path / "zh.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = run_ingest([str(src)], "zh", IngestConfig(workers=1), lake).dataset
    with pytest.raises(GateError, match="limit-alphabet"):
        run_vocab(corpus, "small_alphabet", VocabConfig(vocab_size=600, limit_alphabet=100, min_learned_share=0.0), lake)
    assert lake.versions("vocab", "small_alphabet") == []
    ok = run_vocab(corpus, "big_alphabet", VocabConfig(vocab_size=7000, limit_alphabet=4000, min_learned_share=0.0), lake)
    assert ok.stats["heldout"]["unk_rate"] < 0.005


def test_a_corpus_too_small_for_the_vocabulary_fails_the_gate(tmp_path):
    lake = Lake(str(tmp_path / "data"))
    src = tmp_path / "tiny.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"Tiny corpus line {i}."}) for i in range(400)) + "\n")
    corpus = run_ingest([str(src)], "tiny", IngestConfig(workers=1), lake).dataset
    with pytest.raises(GateError, match="smaller --vocab-size"):
        run_vocab(corpus, "huge", VocabConfig(vocab_size=30522), lake)


@pytest.mark.data
@pytest.mark.slow
def test_chinese_vocabulary_carries_its_characters(shared_data, tmp_path):
    lake = Lake(str(tmp_path / "data"))
    corpus = run_ingest([str(shared_data / "corpora/zh")], "zh", IngestConfig(), lake).dataset
    # the shared Chinese corpora fill about 10,500 learned slots since mojibake lines are rejected: 21,128 would
    # leave the learned share just under the gate's 0.5, so the size is lowered (the gate's advice)
    cfg = VocabConfig.from_yaml(Path(__file__).parents[2] / "configs" / "vocab" / "chinese.yaml").model_copy(
        update={"vocab_size": 18000})
    result = run_vocab(corpus, "zh", cfg, lake)
    assert result.report.passed and result.stats["heldout"]["unk_rate"] < 0.005
    tok = load_tokenizer(result.dataset.path)
    assert tok.encode("数学是一门学科", add_special_tokens=False).tokens == list("数学是一门学科")
