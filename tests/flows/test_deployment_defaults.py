"""The deployments' run forms: defaults that run, and errors that say what to set in the form.

Regressions: the ingest deployment defaulted to ``data/raw``, which nothing makes, and vocab, examples
and pretrain to datasets named ``corpus`` that nothing made; and the form's help read "queryable in
DuckDB as corpus_." because the UI ate ``<name>`` as an HTML tag.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from bertplat.examples.config import ExamplesConfig
from bertplat.ingest import IngestConfig
from bertplat.ingest.sources import SourceError
from bertplat.lake import DatasetNotFound
from bertplat.pretrain import PretrainConfig
from bertplat.vocab import VocabConfig
from flows.common import enter_worker_directory
from flows.demo import DEMO_CONFIGS, DEMO_CORPUS, demo_corpus_path, demo_flow
from flows.examples import ExamplesParams, examples_flow
from flows.ingest import IngestParams, ingest_flow, package_file
from flows.pipeline import pipeline_flow
from flows.pretrain import PretrainParams, pretrain_flow
from flows.vocab import VocabParams, vocab_flow

REPO = Path(__file__).resolve().parents[2]


def deployment_params() -> dict[str, dict]:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d["parameters"].get("params") for d in spec["deployments"]}


def test_deployment_defaults_are_the_demo_steps_each_naming_what_the_one_before_makes():
    params = deployment_params()
    ingest = IngestParams(**params["ingest"])
    vocab, examples = VocabParams(**params["vocab"]), ExamplesParams(**params["examples"])
    pretrain = PretrainParams(**params["pretrain"])
    assert [package_file(p) for p in ingest.paths] == [str(demo_corpus_path())] and ingest.paths == [DEMO_CORPUS]
    assert vocab.corpus == examples.corpus == ingest.name
    assert examples.vocab == vocab.name and pretrain.examples == examples.name
    # the same options as the demo (so the same fingerprints): a drift between the two fails here
    for options, cls, preset in [(ingest.options, IngestConfig, "ingest"), (vocab.options, VocabConfig, "vocab"),
                                 (examples.options, ExamplesConfig, "examples"),
                                 (pretrain.options, PretrainConfig, "pretrain")]:
        assert options == cls.from_yaml(DEMO_CONFIGS / f"{preset}.yaml"), preset


def test_tasks_and_finetune_defaults_continue_the_demo_chain():
    from bertplat.finetune.config import FinetuneConfig
    from bertplat.tasks.spec import TaskSpec
    from flows.finetune import FinetuneParams
    from flows.tasks import TasksParams

    params = deployment_params()
    tasks = TasksParams(**params["tasks"])
    finetune = FinetuneParams(**params["finetune"])
    assert finetune.model == PretrainParams(**params["pretrain"]).name
    assert finetune.task == TaskSpec.from_yaml(tasks.spec).name
    assert finetune.options == FinetuneConfig.from_yaml(DEMO_CONFIGS.parent / "finetune" / "demo.yaml")


@pytest.mark.server
def test_missing_input_dataset_names_the_form_field_and_the_deployment_that_makes_it(data_dir):
    state = vocab_flow(VocabParams(corpus="corpus", name="v"), return_state=True)
    assert state.is_failed()
    with pytest.raises(DatasetNotFound, match=r"no corpus dataset named 'corpus'.*Set `corpus` in the run form.*"
                                              r"`ingest` deployment"):
        state.result()
    state = examples_flow(ExamplesParams(corpus="c", vocab="v", name="e"), return_state=True)
    with pytest.raises(DatasetNotFound, match="Set `corpus` in the run form"):
        state.result()
    state = pretrain_flow(PretrainParams(examples="corpus", name="m"), return_state=True)
    with pytest.raises(DatasetNotFound, match=r"Set `examples` in the run form.*`examples` deployment"):
        state.result()


@pytest.mark.server
def test_missing_ingest_path_says_where_it_looked_and_to_set_paths_in_the_form(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the clone a worker runs in
    state = ingest_flow(IngestParams(paths=["data/raw"], name="raw"), return_state=True)
    assert state.is_failed()
    with pytest.raises(SourceError, match=rf"'data/raw' does not exist \(relative paths are read from "
                                          rf"{re.escape(str(tmp_path))}\)\. Set `paths` in the ingest run form"):
        state.result()
    state = ingest_flow(IngestParams(paths=["package:no_such_package/x.json"], name="raw"), return_state=True)
    with pytest.raises(SourceError, match="no installed Python package 'no_such_package'"):
        state.result()


def test_pull_step_enters_the_workers_directory_or_says_to_start_the_worker_in_the_clone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a process worker's temporary directory for the run
    monkeypatch.setenv("PWD", str(REPO))
    assert enter_worker_directory() == {"directory": str(REPO)} and Path.cwd() == REPO
    monkeypatch.setenv("PWD", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"is not a bertplat clone \(no flows/ there\).*`make worker`"):
        enter_worker_directory()


def test_run_form_descriptions_have_no_angle_bracket_placeholders():
    """The Prefect UI renders a description as Markdown, where ``<name>`` is an HTML tag and vanishes."""
    from prefect.utilities.callables import parameter_schema

    for flow in (ingest_flow, vocab_flow, examples_flow, pretrain_flow, demo_flow, pipeline_flow):
        schema = json.dumps(parameter_schema(flow.fn).model_dump())
        assert not re.findall(r"<[A-Za-z_][\w-]*>", schema), flow.name
    assert "corpus_NAME" in json.dumps(parameter_schema(ingest_flow.fn).model_dump())


def test_pipeline_deployments_default_to_a_preset_that_validates_and_ship_their_schedules_paused():
    from bertplat.pipeline import PipelineConfig, preset_names

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    for name in ("pipeline", "pipeline-gpu"):
        config = PipelineConfig.model_validate(by_name[name]["parameters"]["config"])
        assert config.preset in preset_names() and config.preset == "demo"
    scheduled = {d["name"]: d["schedules"] for d in spec["deployments"] if d.get("schedules")}
    assert set(scheduled) == {"ingest-drop", "pipeline"}
    assert all(s["active"] is False for schedules in scheduled.values() for s in schedules)
    assert by_name["ingest-drop"]["parameters"]["params"]["paths"] == ["data/raw"]
    assert not re.search(r"(^|\s)/(work|home|tmp|root)/", (REPO / "prefect.yaml").read_text()), "absolute path"
