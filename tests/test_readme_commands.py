"""Every command the README shows runs as shown.

The ``bash`` blocks of README.md are read in order and each ``.venv/bin/bertplat`` line runs, from the
repository root as a reader would, against one fresh data directory, so later commands find what
earlier ones made. Lines that read ``../shared/data`` run when it is there and skip otherwise. A block
right after an ``<!-- not run by tests: WHY -->`` comment is not run (full-size training runs that
take GPU hours); ``make`` lines are checked to be real targets in ``test_docs.py``, and the server,
deploy and worker targets are exercised by ``tests/flows/test_worker.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
SKIP_MARK = re.compile(r"<!--\s*not run by tests:")
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def readme_commands() -> list[str]:
    commands = []
    for match in BLOCK.finditer(README):
        before = README[: match.start()].rstrip().splitlines()[-1:] or [""]
        if SKIP_MARK.search(before[0]):
            continue
        for line in match.group(1).splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == ".venv/bin/bertplat":
                commands.append(shlex.join(words))
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 10, COMMANDS


@pytest.fixture(scope="module")
def readme_env(tmp_path_factory):
    data = tmp_path_factory.mktemp("readme") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTPLAT_")}
    env.update(BERTPLAT_DATA_DIR=str(data), COLUMNS="120")
    return env


SKIPPED_NAMES: set[str] = set()  # datasets that commands skipped for want of ../shared/data would have made


def made_names(argv: list[str]) -> set[str]:
    """The dataset names a command makes: its --name, or the task YAMLs' names for tasks import."""
    names = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--name", "-n")}
    if argv[1:3] == ["tasks", "import"] and not names:
        names = {Path(a).stem for a in argv[3:] if a.endswith(".yaml")}
    return names


def needs_skipped_input(argv: list[str]) -> bool:
    inputs = {argv[i + 1].partition("@")[0] for i, a in enumerate(argv[:-1])
              if a in ("--corpus", "--vocab", "--examples", "--task", "--model", "-m", "-e", "--embeddings")}
    words = set(re.findall(r"\w+", " ".join(argv)))
    views = {w.split("_", 1)[1] for w in words if "_" in w}
    return bool((inputs | views) & SKIPPED_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[c[len(".venv/bin/"):][:80] for c in COMMANDS])
def test_readme_command_runs_as_shown(command, readme_env):
    argv = shlex.split(command)
    if ("../shared/" in command and not (REPO.parent / "shared" / "data" / "MANIFEST.tsv").is_file()) \
            or needs_skipped_input(argv):
        SKIPPED_NAMES.update(made_names(argv))
        pytest.skip("reads ../shared/data (absent beside this clone), or what a command reading it makes")
    argv[0] = str(Path(sys.executable).with_name("bertplat"))
    done = subprocess.run(argv, cwd=REPO, env=readme_env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
