"""The promote flow under a real Prefect server: a refused and a passed promotion, each with its gate report
as an artifact."""

from __future__ import annotations

import pytest

import flows  # noqa: F401  (Prefect defaults before Prefect is imported)

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield


def test_promote_flow_publishes_the_gate_report(prefect_server, reg, monkeypatch, tmp_path):
    from prefect.artifacts import Artifact

    from bertplat.registry.store import register_model
    from flows.promote import PromoteParams, promote_flow

    monkeypatch.setenv("BERTPLAT_DATA_DIR", str(reg["lake"].data_dir))
    register_model(reg["dir"]("finetuned"), reg["lake"], reg["catalog"])
    strict = tmp_path / "strict.yaml"
    strict.write_text("alias: staging\nsplit: validation\nmetrics: {accuracy: 1.01}\n")
    state = promote_flow(PromoteParams(model="toy_sent@v1", alias="staging", policy=str(strict)), return_state=True)
    assert state.is_failed()
    refused = Artifact.get("promote-toy-sent-staging")
    assert refused is not None and "promotion refused" in refused.data and "**FAIL**" in refused.data
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("alias: staging\nsplit: validation\nmetrics: {accuracy: 0.0}\n")
    summary = promote_flow(PromoteParams(model="toy_sent@v1", alias="staging", policy=str(lenient)))
    assert summary.startswith("toy_sent@staging -> v1")
    passed = Artifact.get("promote-toy-sent-staging")
    assert passed is not None and "passed" in passed.data and "**FAIL**" not in passed.data
