"""The ingest flow under a real Prefect server: the dataset, the artifacts, and failure handling."""

from __future__ import annotations

import json

import pytest
from prefect.artifacts import Artifact

from bertplat.ingest import IngestConfig
from bertplat.validation import GateError
from flows.ingest import IngestParams, ingest_flow
from tests.ingest.conftest import write

pytestmark = pytest.mark.server


def test_ingest_flow_writes_the_dataset_and_publishes_artifacts(tmp_path, data_dir):
    src = write(tmp_path / "in" / "docs.jsonl", "\n".join(
        json.dumps({"text": f"Document {i}. It has two sentences.", "topic": "t"}) for i in range(50)) + "\n")
    handle = ingest_flow(IngestParams(paths=[str(src)], name="flowtest",
                                      options=IngestConfig(label_field="topic", workers=1)))
    assert handle.kind == "corpus" and handle.path.is_relative_to(data_dir)
    assert (handle.path / "_manifest.json").is_file()
    summary = Artifact.get("corpus-flowtest")
    assert summary is not None and "50 documents" in summary.data and "data:image/png;base64," in summary.data
    table = Artifact.get("corpus-flowtest-sources")
    assert table is not None and "documents" in str(table.data)


def test_flow_parameters_have_a_form_schema():
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(ingest_flow.fn).model_dump()
    params = schema["definitions"]["IngestParams"]["properties"]
    assert {"paths", "name", "options"} <= set(params)
    assert schema["definitions"]["IngestConfig"]["properties"]["format"]["description"]


def test_a_failed_gate_fails_the_flow_with_its_report(tmp_path, data_dir):
    src = write(tmp_path / "in" / "bad.jsonl", '{"text": "ok"}\n' + "not json\n" * 5)
    state = ingest_flow(IngestParams(paths=[str(src)], name="gatefail"), return_state=True)
    assert state.is_failed()
    with pytest.raises(GateError, match="reject ratio"):
        state.result()
    report = Artifact.get("corpus-gatefail-gate-failed")
    assert report is not None and "**FAIL**" in report.data
    assert not list((data_dir / "lake" / "corpus" / "gatefail").glob("[0-9a-f]*"))
