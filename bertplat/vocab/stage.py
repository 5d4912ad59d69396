"""run_vocab: a corpus dataset in, a validated WordPiece vocabulary dataset out.

Training streams the corpus's ``text`` column row group by row group into HF tokenizers'
``train_from_iterator`` (no text dump on disk), after a first pass that counts the characters: the
alphabet planned from those counts makes the trained vocabulary the same in every run. A stable
slice of documents (chosen by doc_id) is held out of training; the gate measures the unknown-token
rate, fertility and whole-word coverage on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from bertplat.catalog import Catalog
from bertplat.lake import DatasetHandle, Lake, check_name, fingerprint, read_manifest
from bertplat.plots import plot_length_histogram
from bertplat.progress import NullProgress, Progress
from bertplat.splits import in_holdout
from bertplat.stages import StageResult, catalog_status, find_existing
from bertplat.validation import GateError, GateReport
from bertplat.vocab.config import SPECIAL_TOKENS, VocabConfig
from bertplat.vocab.tokenizer import (
    CONTINUATION_PREFIX,
    CharacterCounts,
    VocabInfo,
    finish_tokenizer,
    new_tokenizer,
    new_trainer,
    plan_alphabet,
    save_tokenizer_dir,
)

KIND = "vocab"
SCHEMA_VERSION = 2  # 2: the alphabet is planned before training, so a corpus and config give one vocabulary
TOKENS_SCHEMA = pa.schema([
    pa.field("id", pa.int32(), nullable=False),
    pa.field("token", pa.string(), nullable=False),
    pa.field("is_special", pa.bool_(), nullable=False),
    pa.field("is_continuation", pa.bool_(), nullable=False),   # a '##' piece
    pa.field("is_unused", pa.bool_(), nullable=False),         # an [unusedN] padding slot
    pa.field("n_chars", pa.int32(), nullable=False),           # characters, '##' excluded
])


class VocabResult(StageResult):
    corpus: DatasetHandle

    def summary(self) -> str:
        s = self.stats
        verb = self._verb("trained")
        return (f"vocab {self.dataset.name}@{self.dataset.fingerprint}: {s['size']:,} tokens "
                f"({s['learned_tokens']:,} learned) from corpus {self.corpus.name}; held-out [UNK] rate "
                f"{s['heldout']['unk_rate']:.3%}, fertility {s['heldout']['fertility']:.2f} - {verb}\n"
                f"  {self.dataset.uri}\n"
                f"  DuckDB: SELECT * FROM vocab_{self.dataset.name};  transformers: "
                f"BertTokenizerFast.from_pretrained('{self.dataset.path}')")


def iter_corpus_texts(corpus: DatasetHandle, fraction: float, heldout: list[str], heldout_max: int,
                      on_bytes=lambda n: None) -> Iterator[list[str]]:
    """Training texts, a row group at a time; held-out documents go to ``heldout`` instead."""
    for part in sorted(corpus.path.glob("part-*.parquet")):
        pf = pq.ParquetFile(part)
        for i in range(pf.num_row_groups):
            group = pf.read_row_group(i, columns=["doc_id", "text"])
            held = in_holdout(group.column("doc_id"), fraction)
            texts = group.column("text")
            if held.any():
                room = heldout_max - len(heldout)
                if room > 0:
                    heldout.extend(texts.filter(pa.array(held)).to_pylist()[:room])
                texts = texts.filter(pa.array(~held))
            on_bytes(sum(b.size for chunk in texts.chunks for b in chunk.buffers()[2:3] if b is not None))
            yield texts.to_pylist()


def measure_heldout(tok: Tokenizer, texts: list[str], unk_id: int) -> dict[str, float]:
    """[UNK] rate, fertility (pieces per word) and the share of words that are one known token."""
    tokens = unks = words = whole = 0
    for start in range(0, len(texts), 256):
        for enc in tok.encode_batch(texts[start:start + 256], add_special_tokens=False):
            ids = np.asarray(enc.ids)
            word_ids = np.asarray([-1 if w is None else w for w in enc.word_ids])
            tokens += len(ids)
            unks += int((ids == unk_id).sum())
            if len(ids):
                _, counts = np.unique(word_ids, return_counts=True)
                words += len(counts)
                single = np.isin(word_ids, np.flatnonzero(np.bincount(word_ids + 1)[1:] == 1))
                whole += int((single & (ids != unk_id)).sum())
    return {"documents": len(texts), "tokens": tokens, "words": words,
            "unk_rate": unks / tokens if tokens else 0.0,
            "fertility": tokens / words if words else 0.0,
            "whole_word_share": whole / words if words else 0.0}


def run_vocab(corpus: DatasetHandle, name: str, config: VocabConfig, lake: Lake, catalog: Catalog | None = None,
              progress: Progress | None = None) -> VocabResult:
    """Train a WordPiece vocabulary on ``corpus`` and write it as the vocab dataset ``name``."""
    progress = progress or NullProgress()
    start = time.monotonic()
    check_name(name)
    corpus_manifest = read_manifest(corpus)
    fp = fingerprint(KIND, config.canonical_json(), [f"corpus:{corpus.fingerprint}"], SCHEMA_VERSION)
    if found := find_existing(lake, catalog, KIND, name, fp):
        handle, m = found
        return VocabResult(dataset=handle, corpus=corpus, reused=True, catalog_status=catalog_status(catalog, handle), report=GateReport(**m["validation"]),
                           stats=m["stats"], elapsed_s=time.monotonic() - start)

    heldout: list[str] = []
    tok = new_tokenizer(config)
    total_chars = int(corpus_manifest["counts"].get("characters", 0))
    counts = CharacterCounts(tok)
    with progress.task("counting characters", total=total_chars or None, unit="B") as bar:
        for texts in iter_corpus_texts(corpus, config.heldout_fraction, [], 0, bar.advance):
            counts.add(texts)
    alphabet = plan_alphabet(counts, config.limit_alphabet)
    with progress.task("training WordPiece", total=total_chars or None, unit="B") as bar:
        texts = iter_corpus_texts(corpus, config.heldout_fraction, heldout, config.heldout_max_docs, bar.advance)
        tok.train_from_iterator(texts, trainer=new_trainer(config, alphabet))
    learned = tok.get_vocab_size(with_added_tokens=True)
    tok = finish_tokenizer(tok, config)
    info = VocabInfo.from_tokenizer(tok)
    with progress.task("measuring held-out text", total=len(heldout), unit="docs") as bar:
        heldout_stats = measure_heldout(tok, heldout, info.unk_id)
        bar.advance(len(heldout))
    report = gate(tok, info, config, learned, heldout_stats, dataset=f"{KIND}/{name}@{fp}")

    with lake.writer(KIND, name, fp) as writer:
        if not report.passed:
            path = report.write(lake.data_dir / "reports")
            raise GateError(report, path)
        save_tokenizer_dir(tok, config, writer.tmp)
        tokens = token_table(tok)
        pq.write_table(tokens, writer.path("tokens.parquet"), compression="zstd")
        stats = {"size": info.size, "learned_tokens": learned, "heldout": heldout_stats,
                 "continuation_tokens": int(info.continuation.sum()),
                 "token_length_histogram": _length_hist(tokens)}
        plot_length_histogram(TOKEN_LENGTH_BINS, stats["token_length_histogram"],
                              writer.path("_report/token_lengths.png"), title=f"vocab {name}: characters per token",
                              xlabel="characters per token ('##' excluded)")
        handle = writer.commit({
            "schema_version": SCHEMA_VERSION,
            "config": config.model_dump(mode="json"),
            "parents": [corpus.model_dump(include={"kind", "name", "fingerprint"})],
            "inputs": [{"corpus": corpus.ref(), "documents": corpus_manifest["counts"].get("documents")}],
            "counts": {"tokens": info.size, "learned_tokens": learned, "heldout_documents": len(heldout)},
            "special_tokens": {t: tok.token_to_id(t) for t in SPECIAL_TOKENS},
            "tables": {"vocab": "tokens.parquet"},
            "validation": report.model_dump(mode="json"),
            "stats": stats,
        }, catalog=catalog)
    return VocabResult(dataset=handle, corpus=corpus, reused=False, catalog_status=catalog_status(catalog, handle), report=report, stats=stats,
                       elapsed_s=time.monotonic() - start)


def gate(tok: Tokenizer, info: VocabInfo, cfg: VocabConfig, learned: int, heldout: dict[str, float],
         dataset: str) -> GateReport:
    report = GateReport(stage="vocab", dataset=dataset)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    report.add("special tokens present with their ids", ids == {t: i for i, t in enumerate(SPECIAL_TOKENS)},
               observed=ids, expected={t: i for i, t in enumerate(SPECIAL_TOKENS)})
    report.add("size", info.size == cfg.target_size(), observed=info.size, expected=cfg.target_size())
    share = learned / cfg.target_size()
    report.add("learned share of the vocabulary", share >= cfg.min_learned_share, observed=round(share, 4),
               expected=f">= {cfg.min_learned_share}",
               detail="" if share >= cfg.min_learned_share else
               f"the corpus filled only {learned} of {cfg.target_size()} slots; use a smaller --vocab-size or more text")
    report.add("held-out documents measured", heldout["documents"] > 0, observed=heldout["documents"], expected="> 0",
               detail="" if heldout["documents"] else "the corpus is too small for a held-out slice; raise heldout_fraction")
    report.add("[UNK] rate on held-out text", heldout["unk_rate"] < cfg.max_unk_rate,
               observed=round(heldout["unk_rate"], 6), expected=f"< {cfg.max_unk_rate}",
               detail="" if heldout["unk_rate"] < cfg.max_unk_rate else
               "characters are missing from the vocabulary; for CJK corpora raise --limit-alphabet (e.g. 8000)")
    report.add("fertility (pieces per word)", heldout["fertility"] < cfg.max_fertility,
               observed=round(heldout["fertility"], 4), expected=f"< {cfg.max_fertility}")
    report.add("whole-word share", heldout["whole_word_share"] >= cfg.min_whole_word_share,
               observed=round(heldout["whole_word_share"], 4), expected=f">= {cfg.min_whole_word_share}")
    return report


def token_table(tok: Tokenizer) -> pa.Table:
    vocab = tok.get_vocab(with_added_tokens=True)
    ordered = sorted(vocab, key=vocab.__getitem__)
    special = set(SPECIAL_TOKENS)
    cont = [t.startswith(CONTINUATION_PREFIX) and len(t) > 2 for t in ordered]
    return pa.table({
        "id": pa.array(range(len(ordered)), pa.int32()),
        "token": ordered,
        "is_special": [t in special for t in ordered],
        "is_continuation": cont,
        "is_unused": [t.startswith("[unused") and t.endswith("]") for t in ordered],
        "n_chars": pa.array([len(t) - 2 * c for t, c in zip(ordered, cont)], pa.int32()),
    }, schema=TOKENS_SCHEMA)


TOKEN_LENGTH_BINS = [1, 2, 3, 4, 5, 6, 8, 10, 15, 20]


def _length_hist(tokens: pa.Table) -> list[int]:
    lengths = tokens.column("n_chars").to_numpy()
    return np.histogram(lengths, bins=[*TOKEN_LENGTH_BINS, 1 << 30])[0].tolist()


def vocab_dir(handle: DatasetHandle) -> Path:
    """The directory transformers and tokenizers load (the version directory itself)."""
    return handle.path
