"""The real corpora in ../shared/data: counts, titles, licence stripping, Chinese segmentation."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_english_wikipedia_wikitasks(shared_data, ingest, catalog):
    result = ingest([shared_data / "corpora/en/wikipedia/wikitasks_2021"], name="enwiki", workers=2)
    assert result.counts["documents_before_dedup"] == 96_339
    _, ((docs, with_title, files),) = catalog.fetch(
        "SELECT count(*), count(title), count(DISTINCT source_file) FROM corpus_enwiki")
    assert docs == result.counts["documents"] and with_title == docs and files == 64
    # FILES.tsv (the folder's file list) is not text: it is rejected by name, not dropped silently
    _, rejects = catalog.fetch("SELECT source_file, reason FROM rejects_enwiki")
    assert rejects == [("wikitasks_2021/FILES.tsv", "missing_column")]
    _, sample = catalog.fetch("SELECT title, sentences FROM corpus_enwiki WHERE title = 'Jarred Shaw'")
    title, sentences = sample[0]
    assert sentences[:3] == ["Jarred Shaw", "Jarred Shaw (born September 28, 1990) is an American professional "
                             "basketball player for Trouville of the Liga Uruguaya de Básquetbol (LUB).",
                             "Professional career."]


def test_gutenberg_books_lose_their_licence_text(shared_data, ingest, catalog):
    result = ingest([shared_data / "corpora/en/gutenberg"], name="gutenberg", format="gutenberg",
                    include=["*.txt"], workers=2)
    assert result.counts["documents"] == 70 and result.counts["rejects"] == 0
    _, ((leftover,),) = catalog.fetch(
        r"SELECT count(*) FROM corpus_gutenberg WHERE regexp_matches(text, '\*\*\* ?(START|END) OF')")
    assert leftover == 0
    _, ((ulysses,),) = catalog.fetch("SELECT text FROM corpus_gutenberg WHERE title = 'Ulysses'")
    assert ulysses.startswith("cover\n\nUlysses\n\nby James Joyce") and "Stately, plump Buck Mulligan" in ulysses
    assert ulysses.endswith("yes I said yes I will Yes.\n\nTrieste-Zurich-Paris\n\n1914-1921")


def test_gutenberg_auto_format_rejects_the_file_list(shared_data, ingest, catalog):
    result = ingest([shared_data / "corpora/en/gutenberg"], name="gb_auto", workers=2)
    assert result.counts["documents"] == 70
    _, rejects = catalog.fetch("SELECT source_file, reason FROM rejects_gb_auto")
    assert rejects == [("gutenberg/FILES.tsv", "missing_column")]


def test_chinese_novels_and_wikipedia_split_on_chinese_punctuation(shared_data, ingest, catalog):
    result = ingest([shared_data / "corpora/zh"], name="zh", workers=2)
    assert result.counts["rejects"] == 0
    _, novels = catalog.fetch("SELECT title, n_sentences, sentences FROM corpus_zh WHERE source_file LIKE 'zh/novels/%' "
                              "ORDER BY title")
    assert [t for t, _, _ in novels] == ["三国演义", "水浒传", "红楼梦", "西游记"]
    for _, n, sentences in novels:
        assert n > 10_000
        # 红楼梦 ends its sentences with the full-width full stop ．(U+FF0E), a sentence end since issue 15
        ends = sum(s[-1] in "。！？”」．" or s.endswith("……") for s in sentences)
        assert ends / n > 0.6, "most sentences end on Chinese sentence punctuation"
        assert max(len(s) for s in sentences) < 2_000
    _, wiki = catalog.fetch("SELECT title, sentences FROM corpus_zh WHERE title = '数学'")
    assert wiki[0][1][:2] == ["数学", "数学是利用符号语言研究数量、结构、变化以及空间等概念的一门学科，从某种角度看属于形式科学的一种。"]
    _, ((titled, total),) = catalog.fetch("SELECT count(title), count(*) FROM corpus_zh WHERE source_file LIKE 'zh/zhwiki/%'")
    assert titled == total > 200
