"""Running `bertplat pretrain` again, resuming it and watching it (issue 10, items 3, 5, 6, 7 and 19):
the README's demo command passes its gate, the same command again reports the finished model, a resume
that meets another config of the same name is refused naming the fields, a truncated last.ckpt falls
back to the newest step checkpoint that loads, and the terminal shows one line of steps, loss and tok/s."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import lightning.pytorch  # noqa: F401  (its log handler binds sys.stderr at import: pytest's, not a CliRunner's)
import pytest
from typer.testing import CliRunner

from bertplat.cli import app
from bertplat.lake import Lake
from bertplat.pretrain import PretrainConfig, PretrainInterrupted, run_pretrain
from bertplat.pretrain.report import read_history, series
from tests.pretrain.test_resume import CONFIG, Act, with_callback

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
SMALL = ("model: tiny\nmax_steps: 4\nwarmup_steps: 1\nmicro_batch_size: 8\nlr: 0.001\nval_every_n_steps: 4\n"
         "val_examples: 64\nlog_every_n_steps: 1\nmin_val_mlm_accuracy: 0.0\nrequire_loss_decrease: false\n")


@pytest.fixture()
def small_config(tmp_path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture()
def data_dir(lake, monkeypatch) -> Path:
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(lake.data_dir))
    return lake.data_dir


def pretrain(*args: str):
    result = runner.invoke(app, ["pretrain", "--examples", "demo", *args])
    assert "Traceback" not in result.output, result.output
    return result


# ---- item 3: the README's command, exactly as shown, on the demo examples the README builds ----------
@pytest.fixture(scope="module")
def readme_data_dir(tmp_path_factory, demo_corpus_file) -> Path:
    """The demo's corpus, vocabulary and examples, from configs/demo/ as `make demo` builds them."""
    from bertplat.examples.config import ExamplesConfig
    from bertplat.examples.stage import run_examples
    from bertplat.ingest import IngestConfig, run_ingest
    from bertplat.vocab import VocabConfig, run_vocab

    demo = REPO / "configs" / "demo"
    lake = Lake(str(tmp_path_factory.mktemp("readme") / "data"))
    corpus = run_ingest([str(demo_corpus_file)], "demo", IngestConfig.from_yaml(demo / "ingest.yaml"), lake).dataset
    vocab = run_vocab(corpus, "demo", VocabConfig.from_yaml(demo / "vocab.yaml"), lake).dataset
    run_examples(corpus, vocab, "demo", ExamplesConfig.from_yaml(demo / "examples.yaml"), lake)
    return lake.data_dir


def readme_command(fragment: str) -> list[str]:
    """The README's first command line that contains ``fragment``, as arguments after the program name."""
    lines = [line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines() if fragment in line]
    assert lines, f"README.md shows no command with {fragment!r}"
    return shlex.split(lines[0])[1:]


def test_readme_demo_pretrain_command_passes_its_gate(readme_data_dir, monkeypatch):
    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(readme_data_dir))
    monkeypatch.chdir(REPO)  # the README's paths are relative to the clone
    args = readme_command("bertplat pretrain --examples demo --name demo-tiny")
    assert args[:3] == ["pretrain", "--examples", "demo"] and "--max-steps" in args
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model_dir = next((readme_data_dir / "models" / "demo-tiny").iterdir())
    assert f"model demo-tiny@{model_dir.name}: 200 steps" in result.output


# ---- item 5: the same command again finds the finished model ----------------------------------------
def test_rerunning_a_finished_pretrain_command_reports_it_up_to_date(data_dir, small_config):
    first = pretrain("--name", "again", "--config", str(small_config))
    assert first.exit_code == 0, first.output
    run_dir = next((data_dir / "runs").glob("again-*"))
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    again = pretrain("--name", "again", "--config", str(small_config))
    assert again.exit_code == 0, again.output
    assert f"model again@{run_dir.name.removeprefix('again-')}: already up to date, 4 steps" in again.output
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files  # the run untouched
    # --resume of the finished run finds the same model too
    resumed = pretrain("--name", "again", "--config", str(small_config), "--resume")
    assert resumed.exit_code == 0 and "already up to date" in resumed.output, resumed.output


def test_rerunning_after_a_failed_gate_regates_without_training_or_resume(lake, examples):
    cfg = PretrainConfig(**{**CONFIG, "max_steps": 4, "val_every_n_steps": 4, "min_val_mlm_accuracy": 0.99})
    with pytest.raises(Exception, match="validation MLM accuracy"):
        run_pretrain(examples, "regate", cfg, lake)
    # the gate is operational: a lower floor is the same run, finished; nothing is trained again
    result = run_pretrain(examples, "regate", cfg.model_copy(update={"min_val_mlm_accuracy": 0.0}), lake)
    assert result.model_dir is not None and not result.reused and result.steps == 4
    assert len(series(read_history(result.run_dir / "logs" / "csv"), "train/loss")[0]) == 4


# ---- item 6: --resume with another config of the same name ----------------------------------------
def test_resume_with_a_changed_config_is_refused_naming_the_fields(data_dir, small_config):
    first = pretrain("--name", "changed", "--config", str(small_config))
    assert first.exit_code == 0, first.output
    runs = sorted((data_dir / "runs").iterdir())
    refused = pretrain("--name", "changed", "--config", str(small_config), "--resume", "--lr", "0.002",
                       "--max-steps", "6")
    assert refused.exit_code == 1, refused.output
    text = " ".join(refused.output.split())  # the message may be wrapped
    assert "cannot resume pretraining changed" in text and str(runs[0]) in text
    assert "lr (run: 0.001, now: 0.002)" in text and "max_steps (run: 4, now: 6)" in text
    assert sorted((data_dir / "runs").iterdir()) == runs  # no new run started
    # without --resume, the other config is a new run
    fresh = pretrain("--name", "changed", "--config", str(small_config), "--lr", "0.002")
    assert fresh.exit_code == 0, fresh.output
    assert len(list((data_dir / "runs").iterdir())) == 2


def test_resume_of_an_interrupted_run_with_a_changed_config_is_refused(lake, examples, monkeypatch):
    with_callback(monkeypatch, Act(step=2, sig=signal.SIGINT))
    with pytest.raises(PretrainInterrupted):
        run_pretrain(examples, "stopped", PretrainConfig(**CONFIG), lake)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"differs in lr \(run: 0.002, now: 0.001\)"):
        run_pretrain(examples, "stopped", PretrainConfig(**{**CONFIG, "lr": 1e-3}), lake, resume=True)
    # operational fields may change: the same run resumes
    result = run_pretrain(examples, "stopped", PretrainConfig(**{**CONFIG, "log_every_n_steps": 2}), lake,
                          resume=True)
    assert result.resumed_from_step == 3 and result.steps == CONFIG["max_steps"]


# ---- item 19: a corrupt last.ckpt -----------------------------------------------------------------
def test_a_truncated_last_ckpt_resumes_from_the_newest_step_checkpoint_that_loads(lake, examples, tmp_path,
                                                                                  monkeypatch, caplog):
    run_dir = tmp_path / "run"
    with_callback(monkeypatch, Act(step=9, sig=signal.SIGINT))
    with pytest.raises(PretrainInterrupted, match="at step 10 of 24"):
        run_pretrain(examples, "corrupt", PretrainConfig(**CONFIG), lake, run_dir=run_dir)
    monkeypatch.undo()
    last = run_dir / "checkpoints" / "last.ckpt"
    with open(last, "r+b") as f:  # a write cut short: the zip's central directory is gone
        f.truncate(last.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="bertplat.pretrain"):
        result = run_pretrain(examples, "corrupt", PretrainConfig(**CONFIG), lake, run_dir=run_dir, resume=True)
    assert result.resumed_from == "step=0000008.ckpt" and result.resumed_from_step == 8
    assert "from step=0000008.ckpt: last.ckpt was unreadable" in result.summary()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(last) in warned and "step=0000008.ckpt" in warned
    steps, _ = series(read_history(run_dir / "logs" / "csv"), "train/loss")
    assert steps == [float(s) for s in range(1, 25)]


def test_no_loadable_checkpoint_is_a_clear_error(lake, examples, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with_callback(monkeypatch, Act(step=2, sig=signal.SIGINT))
    with pytest.raises(PretrainInterrupted):
        run_pretrain(examples, "broken", PretrainConfig(**CONFIG), lake, run_dir=run_dir)
    monkeypatch.undo()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"no checkpoint in .* can be loaded \(last.ckpt: .*delete the run"):
        run_pretrain(examples, "broken", PretrainConfig(**CONFIG), lake, run_dir=run_dir, resume=True)


# ---- item 7: the progress bar in a terminal --------------------------------------------------------
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(argv: list[str], env: dict[str, str], columns: int, timeout: float = 300) -> str:
    """Run ``argv`` with a pseudo-terminal of ``columns`` columns as stdin/stdout/stderr; all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, close_fds=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other side closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(master)
    return out.decode("utf-8", "replace")


@pytest.mark.parametrize("columns", [80, 120])
def test_progress_bar_shows_steps_of_the_total_loss_and_tok_s_on_one_line(data_dir, tmp_path, columns):
    cfg = tmp_path / "bar.yaml"
    cfg.write_text(SMALL.replace("max_steps: 4", "max_steps: 6").replace("val_every_n_steps: 4", "val_every_n_steps: 3"))
    env = {**os.environ, "BERTPLAT_DATA_DIR": str(data_dir), "TERM": "xterm"}
    env.pop("COLUMNS", None)
    out = run_in_terminal([str(REPO / ".venv" / "bin" / "bertplat"), "pretrain", "--examples", "demo", "--name",
                           "bar-demo", "--config", str(cfg)], env, columns)
    assert "model bar-demo@" in out, out[-3000:]
    screens = [ANSI.sub("", s).rstrip() for s in re.split(r"[\r\n]", out)]
    bars = [s for s in screens if "bar-demo: step " in s]
    assert bars, out[-3000:]
    assert re.search(r"^bar-demo: step 6/6 .*\| \d\d:\d\d<\d\d:\d\d, loss \d+\.\d{3}, [\d,]+ tok/s$", bars[-1]), bars
    assert all(len(s) <= columns for s in bars), [s for s in bars if len(s) > columns]
    assert not [s for s in screens if "Epoch" in s or "v_num" in s]
