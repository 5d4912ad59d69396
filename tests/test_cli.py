"""The command line: every option explained, stage commands summarise, errors are for people."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
import typer.main
from typer.testing import CliRunner

from bertplat.cli import app

runner = CliRunner()


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_option_and_argument_has_help():
    root = typer.main.get_command(app)
    for path, cmd in all_commands(root):
        assert cmd.help, f"bertplat {' '.join(path)} has no description"
        for param in cmd.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"bertplat {' '.join(path)}: {param.name} has no help"


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "bertplat.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "ingest" in out.stdout and "sql" in out.stdout


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_ingest_then_sql(env):
    src = env / "docs.jsonl"
    src.write_text("\n".join(json.dumps({"body": f"Text {i}. More.", "y": i % 2}) for i in range(10)) + "\n")
    cfg = env / "ingest.yaml"
    cfg.write_text("text_field: body\nlabel_field: y\nworkers: 1\n")
    result = runner.invoke(app, ["ingest", str(src), "--name", "cli", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "corpus cli@" in result.output and "10 documents" in result.output and "SELECT * FROM corpus_cli" in result.output
    result = runner.invoke(app, ["sql", "SELECT label, count(*) AS n FROM corpus_cli WHERE label = ? GROUP BY label",
                                 "-p", "1", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"label": "1", "n": 5}]
    listed = runner.invoke(app, ["datasets"])
    assert listed.exit_code == 0 and "cli" in listed.output
    rebuilt = runner.invoke(app, ["catalog", "rebuild"])
    assert rebuilt.exit_code == 0 and "1 dataset versions indexed" in rebuilt.output


def test_options_override_the_yaml_config(env):
    src = env / "d.jsonl"
    src.write_text('{"a": "From field a."}\n')
    cfg = env / "c.yaml"
    cfg.write_text("text_field: missing\nworkers: 1\n")
    result = runner.invoke(app, ["ingest", str(src), "--name", "o", "-c", str(cfg), "--text-field", "a"])
    assert result.exit_code == 0, result.output


def test_ingest_near_dedup_and_markup_cleanup_options(env):
    body = " ".join(f"word{i} common text" for i in range(120))
    src = env / "near.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in
                           [body, body.replace("word5 ", "changed5 "), "An &amp; unrelated <b>document</b>. " * 30]))
    result = runner.invoke(app, ["ingest", str(src), "--name", "near", "--near-dedup", "0.8", "--markup-cleanup", "on",
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "1 near-duplicates dropped" in result.output, result.output
    texts = runner.invoke(app, ["sql", "SELECT text FROM corpus_near ORDER BY text", "-o", "json"])
    assert len(json.loads(texts.output)) == 2 and "&amp;" not in texts.output and "<b>" not in texts.output
    bad = runner.invoke(app, ["ingest", str(src), "--name", "near2", "--near-dedup", "0.2"])
    assert bad.exit_code == 2 and "near_dedup.threshold" in bad.output, bad.output


def test_ingest_language_option_and_filtered_reasons(env):
    src = env / "lang.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in [
        "The committee published its annual report on the state of the river and the fish that live in it.",
        "Le comité a publié son rapport annuel sur l'état de la rivière et des poissons qui y vivent.",
        "Der Ausschuss hat seinen Jahresbericht über den Zustand des Flusses und seiner Fische veröffentlicht."]))
    result = runner.invoke(app, ["ingest", str(src), "--name", "lang", "--language", "en", "--language", "de",
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "1 filtered by quality" in result.output and "filtered by reason: quality_language: 1\n" in result.output
    bad = runner.invoke(app, ["ingest", str(src), "--name", "lang2", "--language", "english"])
    assert bad.exit_code == 2 and "unknown language codes ['english']" in bad.output, bad.output


@pytest.mark.parametrize("args,message,code", [
    (["ingest", "/no/such/path", "--name", "x"], "does not exist", 1),
    (["ingest", ".", "--name", "bad name"], "invalid dataset name", 1),
    (["ingest", ".", "--name", "x", "--format", "docx"], "format: Input should be", 2),
    (["ingest", ".", "--name", "x", "--max-reject-ratio", "2"], "max_reject_ratio", 2),
    (["sql", "SELECT * FROM no_such_view"], "query failed", 1),
])
def test_errors_are_one_clear_line_without_traceback(env, args, message, code):
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_bad_yaml_config_is_named(env):
    cfg = env / "c.yaml"
    cfg.write_text("workers: [1, 2\n")
    result = runner.invoke(app, ["ingest", ".", "--name", "x", "--config", str(cfg)])
    assert result.exit_code == 2 and str(cfg) in result.output and "not valid YAML" in result.output
    cfg.write_text("no_such_option: 1\n")
    result = runner.invoke(app, ["ingest", ".", "--name", "x", "--config", str(cfg)])
    assert result.exit_code == 2 and "no_such_option: Extra inputs are not permitted" in result.output


@pytest.mark.slow
def test_vocab_then_examples_with_their_options(env, demo_corpus_file):
    """ingest -> vocab -> examples through the CLI; the options reach the data (read back with DuckDB)."""
    cfg = env / "ingest.yaml"
    cfg.write_text("format: json\ntext_field: extract\ntitle_field: title\nworkers: 1\n")
    assert runner.invoke(app, ["ingest", str(demo_corpus_file), "--name", "wiki", "-c", str(cfg)]).exit_code == 0

    result = runner.invoke(app, ["vocab", "--corpus", "wiki", "--name", "v", "--vocab-size", "2000",
                                 "--pad-to-multiple-of", "64", "--cased"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("vocab v@") and "FROM vocab_v" in result.output
    result = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM vocab_v", "-o", "json"])
    assert json.loads(result.output) == [{"n": 2048}]  # 2000 rounded up to a multiple of 64

    result = runner.invoke(app, ["examples", "--corpus", "wiki", "--vocab", "v", "--name", "ex", "--objective", "sop",
                                 "--max-seq-length", "64", "--masking", "static", "--max-predictions-per-seq", "5",
                                 "--whole-word-masking", "--dupe-factor", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("examples ex@") and "FROM examples_ex" in result.output
    query = ("SELECT max(len(input_ids)) AS longest, max(len(masked_positions)) AS most_masked, "
             "round(avg(next_sentence_label), 1) AS swapped FROM examples_ex")
    result = runner.invoke(app, ["sql", query, "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"longest": 64, "most_masked": 5, "swapped": 0.5}]
    lake = env / "data" / "lake"
    examples = json.loads(next((lake / "examples" / "ex").glob("*/_manifest.json")).read_text())["config"]
    assert examples["whole_word_masking"] and examples["dupe_factor"] == 2
    assert json.loads(next((lake / "vocab" / "v").glob("*/_manifest.json")).read_text())["config"]["lowercase"] is False


# -- regressions (issue numbers from the bug list) ----------------------------------------------------
def test_version_option_prints_the_version():
    """Issue 9: there was no `bertplat --version`."""
    from bertplat import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"bertplat {__version__}"


def test_help_shows_each_commands_whole_summary():
    """Issue 9: the command list cut summaries off mid-word ("a validated, deduplicated Parquet...")."""
    root = typer.main.get_command(app)
    for path, cmd in all_commands(root):
        parent = runner.invoke(app, [*path[:-1], "--help"], terminal_width=100)
        first_line = cmd.help.strip().splitlines()[0]
        assert " ".join(first_line.split()) in " ".join(parent.output.split()), (path, parent.output)
        assert "..." not in parent.output.split("Commands:")[1]


def test_name_with_a_trailing_newline_is_refused_by_the_cli(env):
    """Issue 18: `--name $'nl\\n'` created lake/corpus/nl\\n and a view with a newline in its name."""
    src = env / "d.jsonl"
    src.write_text('{"text": "One sentence here."}\n')
    result = runner.invoke(app, ["ingest", str(src), "--name", "nl\n", "--workers", "1"])
    assert result.exit_code == 1 and "invalid dataset name" in result.output, result.output
    assert not (env / "data" / "lake" / "corpus").exists() or list((env / "data" / "lake" / "corpus").iterdir()) == []


def test_failed_gate_leaves_nothing_visible_and_names_the_rejects_file(env):
    """Issues 20 and 21: after a failed gate `vocab --corpus rand` said "known corpus datasets: rand", and
    the message pointed at a rejects table that does not exist (the rejects are kept beside the report)."""
    src = env / "empty.jsonl"
    src.write_text("".join('{"text": ""}\n' for _ in range(10)))
    failed = runner.invoke(app, ["ingest", str(src), "--name", "rand", "--workers", "1"])
    assert failed.exit_code == 1 and "gate for corpus/rand" in failed.output, failed.output
    rejects = [line.split(": ", 1)[1] for line in failed.output.splitlines() if line.startswith("rejected records")]
    assert len(rejects) == 1 and rejects[0].endswith("-rejects.parquet"), failed.output
    import pyarrow.parquet as pq

    assert pq.read_table(rejects[0]).num_rows == 10
    assert not (env / "data" / "lake" / "corpus" / "rand").exists()
    vocab = runner.invoke(app, ["vocab", "--corpus", "rand", "--name", "v"])
    assert vocab.exit_code == 1 and "known corpus datasets: none" in vocab.output, vocab.output


def test_tasks_import_runs_under_the_main_command(env, tmp_path):
    spec = tmp_path / "toy.yaml"
    (tmp_path / "toy.tsv").write_text("sentence\tlabel\ngood film\t1\nbad film\t0\n", encoding="utf-8")
    spec.write_text("name: toy\ntask_type: classification\nformat: tsv\nsplits: {train: toy.tsv}\n"
                    "columns: {text: sentence, label: label}\nlabels: ['0', '1']\n", encoding="utf-8")
    result = runner.invoke(app, ["tasks", "import", str(spec), "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["sql", "SELECT text, label_id FROM task_toy ORDER BY text"])
    assert "bad film" in shown.output and "good film" in shown.output


def test_ingest_takes_max_record_bytes_as_its_hint_says(env, tmp_path):
    (tmp_path / "big.txt").write_text("x" * 5000, encoding="utf-8")
    (tmp_path / "small.txt").write_text("A short document.", encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(tmp_path / "big.txt"), str(tmp_path / "small.txt"), "--name", "big",
                                 "--max-record-bytes", "1024", "--max-reject-ratio", "1"])
    assert result.exit_code == 0, result.output
    assert "record_too_large: 1" in result.output
