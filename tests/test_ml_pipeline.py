"""The real pipeline (DVC stages, Great Expectations, MLflow, CodeCarbon) on a small generated set."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from ml import emissions, registry, tracking
from ml.errors import RegistryError
from ml.prepare import read_split
from ml.train import feature_frame, train
from ml.versioning import dvc, ensure_project, file_md5, pointer_version, run
from tests.conftest import build_project

pytestmark = pytest.mark.pipeline
MODEL = "machine-failure-classifier"


@pytest.fixture(scope="module")
def trained(module_state):
    project = build_project(module_state, rows=2000)
    project.git_commit("a project with data")
    project.dvc("repro")
    project.dvc("push")
    project.git_commit("first model")
    return project


def _run(run_id: str):
    tracking.configure()
    return mlflow.MlflowClient().get_run(run_id)


def test_first_run_makes_a_champion_with_everything_recorded(trained):
    champion = registry.champion(MODEL)
    assert champion is not None and str(champion.version) == "1"
    assert champion.tags["promotion.outcome"] == "promoted"
    assert "no champion yet" in champion.tags["promotion.reason"]

    run = _run(champion.run_id)
    metrics = run.data.metrics
    for split in ("val", "test"):
        for name in ("roc_auc", "pr_auc", "f1", "precision", "recall"):
            assert 0.0 <= metrics[f"{split}_{name}"] <= 1.0
    assert metrics["test_roc_auc"] > 0.8  # the failure rules are learnable
    assert 0.0 < metrics["threshold"] < 1.0
    assert metrics["emissions_kg_co2eq"] > 0 and metrics["energy_consumed_kwh"] > 0
    assert run.data.tags["emissions_tracking_mode"].startswith(("measured", "estimated"))

    raw = trained.raw
    assert run.data.tags["data_version"] == file_md5(raw) == pointer_version(raw)
    assert run.data.params["data_version"] == file_md5(raw)
    assert len(run.data.tags["git_commit"]) >= 7
    assert run.data.params["estimator"] == "random_forest"

    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"model_card.md", "confusion_matrix.png", "validation.json", "dataset_card.md"} <= artifacts
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    assert "## Intended use" in card and "version 1" in card and "promoted" in card
    assert file_md5(raw) in card

    rows = [r for r in emissions.read_table() if r["run_id"] == run.info.run_id]
    assert len(rows) == 1 and float(rows[0]["emissions_kg"]) > 0


def test_champion_loads_with_signature_and_threshold(trained):
    uri = f"models:/{MODEL}@champion"
    info = mlflow.models.get_model_info(uri)
    assert [c["name"] for c in info.signature.inputs.to_dict()] == trained.params.schema.feature_names
    assert info.metadata["threshold"] == pytest.approx(_run(info.run_id).data.metrics["threshold"])
    model = mlflow.sklearn.load_model(uri)
    example = mlflow.models.Model.load(uri).load_input_example(
        mlflow.artifacts.download_artifacts(uri))
    proba = model.predict_proba(example)
    assert proba.shape == (len(example), 2)


def test_the_champion_has_an_onnx_copy_that_matches(trained):
    from ml.export import OnnxModel

    champion = registry.champion(MODEL)
    assert champion.tags["onnx"] == "ok"
    assert float(champion.tags["onnx_max_abs_diff"]) < 1e-4
    path = mlflow.artifacts.download_artifacts(run_id=champion.run_id, artifact_path="onnx/model.onnx")
    onnx = OnnxModel(Path(path).read_bytes())
    model = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
    test = read_split(trained.path, "test")
    features = feature_frame(test, trained.params.schema)
    assert abs(onnx.predict_proba_frame(features) - model.predict_proba(features)).max() < 1e-4


def test_a_fresh_clone_pulls_the_exact_bytes_from_the_remote(trained, tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(trained.path), str(clone)], tmp_path, "git clone")
    monkeypatch.setenv("OPCON_HOME", str(tmp_path / "other-state"))  # an empty cache
    monkeypatch.setenv("OPCON_DVC_REMOTE", str(trained.state / "dvc-remote"))
    ensure_project(clone)
    dvc("pull", cwd=clone)
    relative = trained.raw.relative_to(trained.path)
    assert (clone / relative).read_bytes() == trained.raw.read_bytes()
    for part in ("train", "validation", "test"):
        name = f"data/prepared/{part}.parquet"
        assert (clone / name).read_bytes() == (trained.path / name).read_bytes()
    assert not (trained.state / "dvc-cache").samefile(tmp_path / "other-state" / "dvc-cache")


def test_dvc_sees_metrics_and_an_up_to_date_pipeline(trained):
    shown = json.loads(trained.dvc("metrics", "show", "--json"))
    metrics = next(iter(shown.values()))["data"]
    assert metrics["metrics/train.json"]["data"]["val_pr_auc"] > 0.3
    assert metrics["metrics/evaluate.json"]["data"]["promoted"] is True
    assert "up to date" in trained.dvc("status")


def test_same_data_and_params_give_the_same_metrics(trained):
    first = train(trained.path, trained.params)
    second = train(trained.path, trained.params)
    assert first["run_id"] != second["run_id"]
    assert first["metrics"] == second["metrics"]
    assert first["threshold"] == second["threshold"]
    logged = _run(registry.champion(MODEL).run_id).data.metrics
    assert first["metrics"]["test_pr_auc"] == pytest.approx(logged["test_pr_auc"], abs=1e-12)


def test_invalid_raw_data_stops_before_training_and_changes_nothing(trained):
    raw = trained.raw
    good = raw.read_bytes()
    lines = good.decode().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("torque_nm")] = "812.0"
    raw.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    try:
        with pytest.raises(Exception, match="torque_nm`: 1 value\\(s\\) above the allowed 100"):
            trained.dvc("repro")
        assert [str(v.version) for v in registry.versions(MODEL)] == ["1"]
        assert str(registry.champion(MODEL).version) == "1"
        assert trained.json("data/validation.json")["success"] is False
    finally:
        raw.write_bytes(good)
        trained.dvc("repro", "validate")
    assert trained.json("data/validation.json")["success"] is True


def test_worse_configuration_stays_challenger_and_params_diff_shows_why(trained):
    shallow = {"n_estimators": 5, "max_depth": 3}
    trained.update_params({"train": {"hyperparameters": {"random_forest": shallow}}})
    diff = json.loads(trained.dvc("params", "diff", "--json"))["params.yaml"]
    assert diff["train.hyperparameters.random_forest.max_depth"] == {"old": None, "new": 3}

    trained.dvc("repro")
    outcome = trained.json("metrics/evaluate.json")
    assert outcome["promoted"] is False and outcome["version"] == "2"
    assert outcome["champion_test_pr_auc"] > outcome["test_pr_auc"]
    assert str(registry.champion(MODEL).version) == "1"
    challenger = registry.client().get_model_version_by_alias(MODEL, registry.CHALLENGER)
    assert str(challenger.version) == "2"
    assert challenger.tags["promotion.outcome"] == "kept as challenger"
    assert "does not beat the champion" in challenger.tags["promotion.reason"]


def test_promote_and_rollback(trained):
    registry.promote(MODEL, "2", "operator's choice")
    assert str(registry.champion(MODEL).version) == "2"
    aliases = registry.client().get_registered_model(MODEL).aliases
    assert registry.CHALLENGER not in aliases  # the promoted version is no longer a candidate

    assert registry.rollback(MODEL) == "1"
    assert str(registry.champion(MODEL).version) == "1"
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback(MODEL)
    with pytest.raises(RegistryError, match="no version 99"):
        registry.promote(MODEL, "99")
    assert str(registry.champion(MODEL).version) == "1"
