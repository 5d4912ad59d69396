"""Issue 15: WikiExtractor clean-up, quality filters, near-duplicate removal, and their report,
with hand-computed expectations."""

from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertplat.ingest.cleanup import clean_markup
from bertplat.ingest.neardup import NearDedup, jaccard_estimate, signatures, sketch
from bertplat.ingest.quality import (
    QUALITY_REASONS,
    QualityFilters,
    drop_mojibake_lines,
    measure_and_filter,
    mojibake_counts,
)
from bertplat.ingest.text import clean_whitespace
from tests.ingest.conftest import write


def cleaned(text: str, token: str = "") -> str:
    """The worker's order: markup clean-up, then whitespace clean-up."""
    return clean_whitespace(clean_markup(pa.array([text]), token), False)[0].as_py()


# -- clean-up --------------------------------------------------------------------------------
def test_entities_are_unescaped_and_escaped_tags_removed():
    assert cleaned("Batman &amp; Robin &quot;1997&quot; &#233;t&eacute;") == 'Batman & Robin "1997" été'
    assert cleaned("One&lt;br&gt;two &lt;ref name=\"a\"&gt;cite&lt;/ref&gt;.") == "One two cite."


def test_markup_only_lines_and_inline_tags_are_removed_but_comparisons_stay():
    assert cleaned("Intro.\n</dl>\n<poem>\nVerse <b>bold</b> here.\n<br> <br/>\nEnd.") == \
        "Intro.\n\nVerse bold here.\n\nEnd."
    assert cleaned("If a < b and b > c then a < c.") == "If a < b and b > c then a < c."


def test_placeholders_removed_or_replaced_and_empty_parentheses_tidied():
    assert cleaned("The albedo formula_5 is small, codice_12 too.") == "The albedo is small, too."
    assert cleaned("The albedo formula_5 is small.", "[MATH]") == "The albedo [MATH] is small."
    assert cleaned("Aegina (; Greek: Αίγινα) is an island.") == "Aegina (Greek: Αίγινα) is an island."
    assert cleaned("Shanghai () is a school , , really.") == "Shanghai is a school, really."
    assert cleaned('a table width:200px; height:10px;">Some text') == "a table Some text"


def test_wikiextractor_title_line_drop_compares_unescaped_text(ingest, tmp_path):
    wiki = write(tmp_path / "wiki_00", '<doc id="1" url="?curid=1" title="Batman &amp; Robin (film)">\n'
                 "Batman &amp; Robin (film)\n\nBatman &amp; Robin is a 1997 film (; formula_1) by J. Schumacher.\n"
                 "</doc>\n")
    kept = ingest([wiki], name="keep")
    text = duckdb.sql(f"SELECT text, title FROM '{kept.dataset.path}/part-*.parquet'").fetchall()[0]
    assert text == ("Batman & Robin (film)\n\nBatman & Robin is a 1997 film by J. Schumacher.", "Batman & Robin (film)")
    dropped = ingest([wiki], name="drop", wikiextractor_title_line="drop")
    text = duckdb.sql(f"SELECT text FROM '{dropped.dataset.path}/part-*.parquet'").fetchall()[0][0]
    assert text == "Batman & Robin is a 1997 film by J. Schumacher."
    raw = ingest([wiki], name="raw", markup_cleanup="off")
    text = duckdb.sql(f"SELECT text FROM '{raw.dataset.path}/part-*.parquet'").fetchall()[0][0]
    assert "&amp;" in text and "formula_1" in text


def test_plain_text_is_not_cleaned_by_default(ingest, tmp_path):
    f = write(tmp_path / "a.txt", "Keep <b>this</b> &amp; formula_1 as written.")
    result = ingest([f])
    assert duckdb.sql(f"SELECT text FROM '{result.dataset.path}/part-*.parquet'").fetchall()[0][0] == \
        "Keep <b>this</b> &amp; formula_1 as written."


# -- quality filters -------------------------------------------------------------------------
def failures(texts: list[str], **cfg) -> dict[int, tuple[str, str]]:
    return {f.row: (f.reason, f.detail) for f in measure_and_filter(pa.array(texts), QualityFilters(**cfg))}


def test_too_few_words_counts_cjk_characters():
    got = failures(["one two three", "one two three four", "数学是学科"], min_words=4)
    assert got == {0: ("quality_too_few_words", "3 words (min_words=4)")}   # 数学是学科: 5 words


def test_mean_word_length_range():
    got = failures(["aa bb cc", "abcd efgh", "abcdefghijkl abcdefghijkl"], mean_word_length=(3, 10))
    assert got[0] == ("quality_mean_word_length", "2 characters per word (mean_word_length=[3, 10])")
    assert 1 not in got and got[2][1].startswith("12 characters")


def test_non_alphabetic_share():
    # "ab 12 #$": non-space characters 6, letters 2 -> 4/6 not letters
    got = failures(["ab 12 #$", "abcd 1"], max_non_alpha_share=0.5)
    assert got == {0: ("quality_non_alpha", "0.6667 of characters are not letters (max_non_alpha_share=0.5)")}


def test_lines_without_end_punctuation():
    got = failures(["Home\nAbout us\nContact\nA sentence.", "A line.\nAnother one!"], max_lines_without_end_punct=0.5)
    assert got == {0: ("quality_no_end_punct",
                       "0.75 of lines end without punctuation (max_lines_without_end_punct=0.5)")}


def test_gopher_repeated_lines():
    text = "Same line.\nSame line.\nSame line.\nOther text here."   # 2 of 4 lines repeat; 20 of 46 chars
    assert failures([text], max_duplicate_line_share=0.4)[0] == (
        "quality_duplicate_lines", "0.5 of lines repeat an earlier one (max_duplicate_line_share=0.4)")
    assert failures([text], max_duplicate_line_share=0.5) == {}
    reason, detail = failures([text], max_duplicate_line_char_share=0.3)[0]
    assert reason == "quality_duplicate_line_chars" and detail.startswith(f"{20 / 46:.4g} of characters")


def test_gopher_top_and_duplicate_ngrams():
    # words: buy now buy now buy now cheap (7); "buy now" 3 times = 3 * 6 chars of 23 word characters
    text = "buy now buy now buy now cheap"
    reason, detail = failures([text], max_top_ngram_share={2: 0.5})[0]
    assert reason == "quality_top_ngram" and detail.startswith(f"{18 / 23:.4g} of word characters")
    assert failures([text], max_top_ngram_share={2: 0.8}) == {}
    assert failures(["a b c d e f g h"], max_top_ngram_share={2: 0.01}) == {}   # nothing repeats
    # "a b c d e" twice, then "z": the 10 words inside a repeated 5-gram hold 10 of 11 characters
    reason, detail = failures(["a b c d e a b c d e z"], max_duplicate_ngram_share={5: 0.5})[0]
    assert reason == "quality_duplicate_ngrams" and detail.startswith(f"{10 / 11:.4g} of word")


def test_mojibake_documents_and_lines():
    garbled = "曹操部下文有谋臣??从泻么??忝怯?酶还蟛荒眩?痪徒褚谷???蠹铱辰"
    got = failures([garbled, "数学是一门学科。", "Caf\u00c3\u00a9 au lait is nice."], max_mojibake_share=0.03)
    assert set(got) == {0, 2} and all(r == "quality_mojibake" for r, _ in got.values())
    text = "好的文字一行很长很长很长很长很长很长很长很长。\n" + garbled + "\n结束。"
    arr, dropped, counts = drop_mojibake_lines(pa.array([text, "fine", garbled[:19]]), 0.02)
    assert arr.to_pylist() == ["好的文字一行很长很长很长很长很长很长很长很长。\n结束。", "fine", garbled[:19]]
    assert [(row, line) for row, line, *_ in dropped] == [(0, 2)]
    assert counts.tolist() == mojibake_counts(arr).tolist() and counts[2] > 1   # the counts of the texts returned; a line under 20 characters stays


EN = "The committee published its annual report on the state of the river and the fish that live in it."
FR = "Le comité a publié son rapport annuel sur l'état de la rivière et des poissons qui y vivent."
ZH = "委员会发布了关于这条河流及其中鱼类状况的年度报告。"


def test_language_identification_keeps_the_named_languages():
    got = failures([EN, FR, ZH, "Ok ok", "Ok ok ok ok ok."], languages=["en", "zh"], min_words=3)
    assert set(got) == {1, 3, 4}
    reason, detail = got[1]
    assert reason == "quality_language" and " probability of 'fr' (languages=['en', 'zh'], min_language_score=0.5)" \
        in detail and float(detail.split()[0]) > 0.9
    # a filter earlier in the order keeps its reason: language identification runs on what passed the others
    assert got[3][0] == "quality_too_few_words"
    # too short to tell: the identifier's best guess has a probability under min_language_score
    assert got[4][0] == "quality_language" and float(got[4][1].split()[0]) < 0.5
    assert failures([EN, FR], languages=["fr"]).keys() == {0}


def test_language_identification_reads_the_middle_of_each_document():
    from bertplat.ingest.quality import identify_languages

    # a book opens with a title page and contents: the sample is centred, so only the English middle is read
    text = FR * 10 + " " + EN + " " + FR * 10
    (lang, _), = identify_languages(pa.array([text]), sample_chars=len(EN))
    assert lang == "en"
    (lang, _), = identify_languages(pa.array([text]), sample_chars=100_000)
    assert lang == "fr"
    (lang, _), = identify_languages(pa.array(["pad", ZH]).slice(1), sample_chars=len(EN))  # shorter than the sample
    assert lang == "zh"


def test_language_rule_in_an_ingest_is_queryable(ingest, tmp_path):
    f = write(tmp_path / "docs.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in (EN, FR, ZH)))
    result = ingest([f], quality={"languages": ["en"]}, max_reject_ratio=0.0)
    assert result.counts["documents"] == 1 and result.counts["filtered"] == 2
    rows = duckdb.sql(f"SELECT record, reason, detail FROM '{result.dataset.path}/rejects/*.parquet' "
                      "ORDER BY record").fetchall()
    assert [(r, reason) for r, reason, _ in rows] == [(2, "quality_language"), (3, "quality_language")]
    assert "probability of 'fr'" in rows[0][2] and "probability of 'zh'" in rows[1][2]


def test_quality_config_is_validated():
    with pytest.raises(ValueError, match=r"unknown language codes \['english'\]; the identifier knows \[.*'en'"):
        QualityFilters(languages=["english"])
    with pytest.raises(ValueError, match="at least one language code"):
        QualityFilters(languages=[])
    with pytest.raises(ValueError, match="mean_word_length"):
        QualityFilters(mean_word_length=(10, 3))
    with pytest.raises(ValueError, match="n-gram"):
        QualityFilters(max_top_ngram_share={0: 0.2})
    with pytest.raises(ValueError, match="must divide"):
        NearDedup(threshold=0.8, num_perm=128, bands=20)


# -- near-duplicates -------------------------------------------------------------------------
def _shingles(text: str, n: int = 5) -> set:
    words = re.findall(r"[a-z0-9]+|[\u4e00-\u9fff]", text.lower())
    return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def test_minhash_estimates_jaccard():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    base = list(rng.choice(vocab, 400))
    texts, exact = [], []
    for k in range(40):                      # 0 to 39 word substitutions
        other = list(base)
        for pos in rng.choice(400, k * 3, replace=False):
            other[pos] = "x" + str(pos)
        texts.append(" ".join(other))
        a, b = _shingles(" ".join(base)), _shingles(" ".join(other))
        exact.append(len(a & b) / len(a | b))
    sig = signatures(pa.array([" ".join(base)] + texts), NearDedup(threshold=0.8, num_perm=128, bands=16))
    est = jaccard_estimate(sig[[0] * 40], sig[1:])
    assert np.abs(est - np.asarray(exact)).max() < 0.15
    assert np.abs(est - np.asarray(exact)).mean() < 0.05


def test_near_duplicates_removed_with_a_pointer(ingest, tmp_path):
    body = " ".join(f"word{i} common text" for i in range(120))
    docs = [body, body.replace("word5 ", "changed5 "), "An unrelated document " * 30, body + " tail words added"]
    f = write(tmp_path / "docs.jsonl", "".join(json.dumps({"text": d}) + "\n" for d in docs))
    result = ingest([f], near_dedup={"threshold": 0.8})
    assert result.counts["near_duplicates"] == 2 and result.counts["documents"] == 2
    rows = duckdb.sql(f"SELECT record, reason, detail FROM '{result.dataset.path}/rejects/*.parquet' "
                      "ORDER BY record").fetchall()
    assert [(r, reason) for r, reason, _ in rows] == [(2, "near_duplicate"), (4, "near_duplicate")]
    assert all("of docs.jsonl record 1 " in d for *_, d in rows)
    assert result.stats["quality"]["near_duplicate"]["documents"] == 2
    assert any(c.name == "quality: near_duplicate" for c in result.report.checks)


def test_short_documents_keep_their_exact_shingle_sets():
    words = [f"w{i}" for i in range(30)]
    long = " ".join(f"x{i}" for i in range(300))
    sig, sets = sketch(pa.array([" ".join(words), " ".join(words[:3]), long, "", " ".join(words + words)]),
                       NearDedup(threshold=0.8, exact_shingles=256))
    lengths = [None if s is None else len(s) for s in sets.to_pylist()]
    # 30 distinct words: 26 shingles; 3 words: one shingle; 296 shingles > 256: none kept; no word: empty;
    # the same 30 words twice: 56 shingles counted with repeats, 30 distinct (26 + 4 across the seam)
    assert lengths == [26, 1, None, 0, 30]
    assert sets[0].as_py() == sorted(sets[0].as_py())
    assert np.array_equal(sig, signatures(pa.array([" ".join(words), " ".join(words[:3]), long, "",
                                                     " ".join(words + words)]), NearDedup(threshold=0.8)))


def test_short_near_duplicates_are_decided_on_exact_jaccard(ingest, tmp_path):
    words = [f"term{i}" for i in range(30)]
    last = words[:-1] + ["other"]            # 25 of 27 shingles shared: Jaccard 25/27 = 0.926
    middle = words[:15] + ["other"] + words[16:]   # 21 of 31: 0.677, below the threshold
    docs = [" ".join(words), " ".join(last), " ".join(middle)]
    f = write(tmp_path / "stubs.jsonl", "".join(json.dumps({"text": d}) + "\n" for d in docs))
    result = ingest([f], near_dedup={"threshold": 0.8})
    rows = duckdb.sql(f"SELECT record, detail FROM '{result.dataset.path}/rejects/*.parquet' "
                      "WHERE reason = 'near_duplicate'").fetchall()
    assert len(rows) == 1 and rows[0][0] == 2
    assert rows[0][1].startswith("near-duplicate (Jaccard 0.926) of stubs.jsonl record 1 ")
    assert result.counts["documents"] == 2


def test_filtered_documents_are_queryable_and_not_rejects(ingest, tmp_path):
    f = write(tmp_path / "docs.jsonl", json.dumps({"text": "short"}) + "\n" + json.dumps({"text": "A real sentence here. " * 20}) + "\n")
    result = ingest([f], quality={"min_words": 10}, max_reject_ratio=0.0)
    assert result.counts["filtered"] == 1 and result.counts["rejects"] == 0 and result.counts["documents"] == 1
    (row,) = duckdb.sql(f"SELECT record, reason, detail FROM '{result.dataset.path}/rejects/*.parquet'").fetchall()
    assert row == (1, "quality_too_few_words", "1 words (min_words=10) (5 characters)")
    q = result.stats["quality"]["quality_too_few_words"]
    assert q["documents"] == 1 and q["characters"] == 5 and q["examples"][0]["text"] == "short"
    assert result.stats["length_histogram_before_filters"][0] == 1 and result.stats["length_histogram"][0] == 0
    assert "1 filtered by quality" in result.summary()
    check = next(c for c in result.report.checks if c.name == "quality: quality_too_few_words")
    assert check.observed == "1 documents, 5 characters removed" and "docs.jsonl record 1" in check.detail
    from flows.ingest import quality_markdown  # the flow artifact's section

    md = "\n".join(quality_markdown(result.stats))
    assert "| `quality_too_few_words` | 1 | 5 |" in md and "before the quality filters" in md


def test_every_quality_reason_is_tested():
    source = open(__file__, encoding="utf-8").read().split("def test_every_quality_reason_is_tested")[0]
    assert [r for r in QUALITY_REASONS if f'"{r}"' not in source and r != "quality_mojibake_line"] == []


def test_slicing_a_batch_changes_no_filter_decision_or_signature():
    from bertplat.ingest.worker import _in_slices

    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(vocab, int(n))) + "." for n in rng.integers(1, 400, 60)]
    texts += ["the same line\n" * 12, "短文本。" * 30]
    arr = pa.array(texts)
    cfg = QualityFilters(min_words=20, max_duplicate_line_share=0.3, max_top_ngram_share={2: 0.2},
                         max_duplicate_ngram_share={5: 0.15})
    whole = measure_and_filter(arr, cfg)
    sliced = _in_slices(arr, lambda part, start: measure_and_filter(part, cfg, row_offset=start), slice_bytes=500)
    assert len(whole) > 5 and [(f.row, f.reason, f.detail) for f in sliced] == \
        [(f.row, f.reason, f.detail) for f in whole]
    near = NearDedup(threshold=0.8)
    parts = _in_slices(arr, lambda part, start: [sketch(part, near)], slice_bytes=500)
    assert len(parts) > 10
    sig, sets = sketch(arr, near)
    assert np.array_equal(np.concatenate([p[0] for p in parts]), sig)
    assert pa.concat_arrays([p[1] for p in parts]).to_pylist() == sets.to_pylist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=400))
def test_hashed_counting_matches_a_plain_count(values):
    from collections import Counter

    from bertplat.ingest.quality import _occurrences, _repeats

    keys = np.array(values, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    counts = Counter(keys.tolist())
    assert _occurrences(keys).tolist() == [counts[k] for k in keys.tolist()]
    seen: set = set()
    expected = []
    for k in keys.tolist():
        expected.append(k in seen)
        seen.add(k)
    assert _repeats(keys).tolist() == expected


def _gopher_shares(text: str, n: int) -> tuple[float, float]:
    """Gopher's top and duplicate n-gram shares of one text, by brute force: (top, duplicate)."""
    from collections import Counter

    words = text.split()
    total = max(sum(map(len, words)), 1)
    grams = [tuple(w.lower() for w in words[i:i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    top = max((c * sum(map(len, g)) for g, c in counts.items() if c > 1), default=0)
    covered = {j for i, g in enumerate(grams) if counts[g] > 1 for j in range(i, i + n)}
    return top / total, sum(len(words[j]) for j in covered) / total


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "bb", "Bb", "ccc", "dddd", "e"]), max_size=60), min_size=1,
                max_size=8), st.integers(2, 7))
def test_ngram_shares_match_a_brute_force_count(docs, n):
    texts = [" ".join(words) for words in docs]
    arr = pa.array(texts)
    top = {f.row: f.detail for f in measure_and_filter(arr, QualityFilters(max_top_ngram_share={n: 0.0}))}
    dup = {f.row: f.detail for f in measure_and_filter(arr, QualityFilters(max_duplicate_ngram_share={n: 0.0}))}
    for row, text in enumerate(texts):
        want_top, want_dup = _gopher_shares(text, n)
        assert top.get(row, "0 ").split()[0] == (f"{want_top:.4g}" if want_top > 0 else "0"), text
        assert dup.get(row, "0 ").split()[0] == (f"{want_dup:.4g}" if want_dup > 0 else "0"), text
