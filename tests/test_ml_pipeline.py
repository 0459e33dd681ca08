"""The real pipeline (DVC stages, Great Expectations, MLflow, CodeCarbon) on a small generated set."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from ml import config, emissions, gate, in_process, registry, stage_client, tracking
from ml.errors import PipelineError, RegistryError
from ml.splits import read_split
from ml.tables import feature_frame
from ml.training import train
from ml.versioning import dvc, ensure_project, file_md5, pointer_version, run, tool_env
from tests.helpers import build_project

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


def test_a_stage_host_runs_the_stages_dvc_starts_and_dvc_records_them(trained, tmp_path):
    env = tool_env()
    host = subprocess.Popen([sys.executable, "-m", "ml.stage_host"], cwd=trained.path, env=env,
                            stdout=subprocess.PIPE, text=True)
    raw = trained.raw
    good = raw.read_bytes()
    try:
        assert "ready" in host.stdout.readline()
        trained.dvc("repro", "--force", "-s", "validate")
        assert "stage validate" in host.stdout.readline()
        assert host.stdout.readline().endswith("exited with 0\n")
        assert "up to date" in trained.dvc("status")
        other = tmp_path / "other"  # a project on other code: the host refuses, the stage runs itself
        shutil.copytree(config.REPO_ROOT / "ml", other / "ml", ignore=shutil.ignore_patterns("__pycache__"))
        with (other / "ml" / "tables.py").open("a") as handle:
            handle.write("# edited\n")
        assert stage_client.run_remotely("validate", other) is None

        lines = good.decode().splitlines()
        row = lines[1].split(",")
        row[lines[0].split(",").index("torque_nm")] = "812.0"
        raw.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
        done = subprocess.run([sys.executable, "-m", "ml.validate"], cwd=trained.path, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert "stage validate" in host.stdout.readline()  # the host's child ran it ...
        assert host.stdout.readline().endswith("exited with 1\n")
        assert done.returncode == 1  # ... and its exit code and messages are the stage process's
        assert "torque_nm`: 1 value(s) above the allowed 100" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        raw.write_bytes(good)
        trained.dvc("repro", "validate")
        host.terminate()
        host.wait(timeout=60)
    assert trained.json("data/validation.json")["success"] is True
    assert not (trained.state / "run" / "stage-host.sock").exists()


def test_a_recorded_champion_score_is_what_scoring_it_again_gives(trained):
    params = trained.params
    champion = registry.champion(MODEL)
    run = registry.client().get_run(champion.run_id)
    data_version = champion.tags["data_version"]
    recorded = gate.recorded_score(params, run, data_version)
    assert recorded is not None
    rescored = gate.rescore(params, champion, read_split(trained.path, "test"))
    assert recorded == pytest.approx(rescored, abs=1e-12)
    other_split = params.model_copy(update={"split": params.split.model_copy(update={"seed": 8})})
    assert gate.recorded_score(other_split, run, data_version) is None
    assert gate.recorded_score(params, run, "0" * 32) is None


def test_in_process_runs_refuse_code_other_than_their_own(tmp_path):
    project = tmp_path / "copy"
    shutil.copytree(config.REPO_ROOT / "ml", project / "ml", ignore=shutil.ignore_patterns("__pycache__"))
    assert in_process.code_matches(project)
    with (project / "ml" / "tables.py").open("a") as handle:
        handle.write("# edited\n")
    assert not in_process.code_matches(project)
    with pytest.raises(in_process.CodeChangedError, match="dvc repro"):
        in_process.run(project, ["validate"])
    with pytest.raises(PipelineError, match="no stage `fit`"):
        in_process.run(project, ["fit"])


def test_in_process_a_failed_validation_stops_the_run_and_records_nothing(trained):
    raw, lock = trained.raw, trained.path / "dvc.lock"
    good, locked = raw.read_bytes(), lock.read_text()
    versions = len(registry.versions(MODEL))
    lines = good.decode().splitlines()
    row = lines[1].split(",")
    row[lines[0].split(",").index("torque_nm")] = "812.0"
    raw.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    try:
        with pytest.raises(in_process.StageFailedError, match="torque_nm`: 1 value\\(s\\) above"):
            in_process.run(trained.path, actor="someone")
        assert trained.json("data/validation.json")["success"] is False
        assert lock.read_text() == locked
        assert len(registry.versions(MODEL)) == versions
    finally:
        raw.write_bytes(good)
    in_process.run(trained.path, ["validate"], log=lambda line: None)
    assert trained.json("data/validation.json")["success"] is True
    assert "up to date" in trained.dvc("status")  # the same report as the one dvc.lock holds


def test_the_pipeline_runs_in_process_and_dvc_records_it(trained):
    repo = yaml.safe_load((config.REPO_ROOT / "params.yaml").read_text())["train"]["hyperparameters"]
    trained.update_params({"train": {"hyperparameters": {"random_forest": None}}})
    # the first champion's configuration again, and a gate an equal score passes
    trained.update_params({"train": {"hyperparameters": {"random_forest": repo["random_forest"]}},
                           "evaluate": {"min_improvement": 0.0}})
    first = registry.champion(MODEL)
    logged: list[str] = []
    outcomes = in_process.run(trained.path, actor="engineer-7", log=logged.append)

    assert list(outcomes) == list(in_process.PIPELINE)
    assert logged[0].startswith("validation passed") and logged[-1].startswith("version ")
    result = outcomes["evaluate"].result
    assert result["promoted"] is True and trained.json("metrics/evaluate.json") == result
    champion = registry.champion(MODEL)
    assert str(champion.version) == result["version"] != str(first.version)
    assert champion.tags["promoted_by"] == "engineer-7"
    assert result["champion_test_pr_auc"] == pytest.approx(result["test_pr_auc"], abs=1e-12)
    assert trained.json("models/train_run.json")["run_id"] == champion.run_id

    assert "up to date" in trained.dvc("status")
    locked = yaml.safe_load((trained.path / "dvc.lock").read_text())["stages"]
    train_out = {o["path"]: o["md5"] for o in locked["train"]["outs"]}
    assert train_out["models/train_run.json"] == file_md5(trained.path / "models" / "train_run.json")
    assert locked["evaluate"]["params"]["params.yaml"]["evaluate"]["min_improvement"] == 0.0
    versions = len(registry.versions(MODEL))
    trained.dvc("repro")  # from a shell: nothing to do
    assert len(registry.versions(MODEL)) == versions
