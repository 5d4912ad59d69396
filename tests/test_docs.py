"""The README documents what exists: every config option, and every command it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bertplat.examples.config import ExamplesConfig
from bertplat.finetune.config import FinetuneConfig
from bertplat.ingest import IngestConfig
from bertplat.pretrain import PretrainConfig
from bertplat.settings import Settings
from bertplat.tasks.spec import ColumnMap, DeriveSplits, ReadOptions, SplitSource, TasksOptions, TaskSpec
from bertplat.vocab import VocabConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("config", [IngestConfig, VocabConfig, ExamplesConfig, PretrainConfig, TaskSpec, SplitSource,
                                    ColumnMap, ReadOptions, DeriveSplits, TasksOptions, FinetuneConfig])
def test_every_option_is_in_the_configuration_reference(config):
    missing = [name for name in config.model_fields if f"| `{name}` |" not in README]
    assert not missing, f"README lacks {config.__name__} options {missing}"


def test_every_setting_is_documented():
    assert all(f"`BERTPLAT_{name.upper()}`" in README for name in Settings.model_fields)


def test_commands_shown_in_the_readme_exist():
    import typer.main

    from bertplat.cli import app

    commands = set(typer.main.get_command(app).commands)
    shown = set(re.findall(r"bertplat ([a-z]\w*)", README)) - {"never", "turns", "is", "also", "makes"}
    assert shown <= commands | {"catalog"}, shown - commands
    make_targets = set(re.findall(r"^(\w[\w-]*):", (Path(__file__).resolve().parents[1] / "Makefile").read_text(), re.M))
    assert set(re.findall(r"make (\w+)", README)) <= make_targets
