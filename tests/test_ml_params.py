"""A bad params.yaml stops everything before any training, naming the field and the problem."""

from __future__ import annotations

import pytest

from ml import config
from ml import params as params_module
from ml.errors import ParamsError, PipelineError
from ml.training import build_pipeline
from tests.helpers import merged, repo_params


def parse(changes: dict):
    return params_module.parse(merged(repo_params(), changes))


def test_the_repository_params_are_valid():
    params = params_module.load(config.REPO_ROOT)
    assert params.schema.target.is_binary
    assert params.evaluate.primary_metric == "pr_auc"


@pytest.mark.parametrize(("changes", "field", "problem"), [
    ({"train": {"estimator": "xgboost"}}, "train.estimator", "random_forest"),
    ({"split": {"test_size": 1.5}}, "split.test_size", "less than 1"),
    ({"split": {"validation_size": 0}}, "split.validation_size", "greater than 0"),
    ({"split": {"test_size": 0.5, "validation_size": 0.45}}, "split", "at least 10 %"),
    ({"train": {"threshold": {"rule": "min_recall"}}}, "train.threshold", "needs `target`"),
    ({"train": {"threshold": {"rule": "fixed", "value": 2}}}, "train.threshold.value", "less than"),
    ({"evaluate": {"primary_metric": "auc"}}, "evaluate.primary_metric", "pr_auc"),
    ({"emissions": {"country_iso_code": "XYZ"}}, "emissions", "not an ISO 3166"),
    ({"registry": {"model_name": ""}}, "registry.model_name", "at least 1"),
    ({"surprise": 1}, "surprise", "Extra inputs"),
])
def test_invalid_values_name_the_field(changes, field, problem):
    with pytest.raises(ParamsError) as caught:
        parse(changes)
    message = str(caught.value)
    assert message.startswith("params.yaml is invalid")
    assert f"  {field}" in message and problem in message


def test_a_category_feature_without_categories_is_refused():
    raw = repo_params()
    raw["schema"]["features"][0] = {"name": "type", "type": "category"}
    with pytest.raises(ParamsError, match="a category feature needs `categories`"):
        params_module.parse(raw)


def test_a_column_declared_twice_is_refused():
    raw = repo_params()
    raw["schema"]["id_columns"].append("torque_nm")
    with pytest.raises(ParamsError, match="columns declared twice: torque_nm"):
        params_module.parse(raw)


@pytest.mark.parametrize(("hyperparameters", "problem"), [
    ({"n_trees": 10}, "n_trees"),
    ({"n_estimators": -3}, "n_estimators"),
])
def test_bad_hyperparameters_fail_before_fitting(hyperparameters, problem):
    params = parse({"train": {"hyperparameters": {"random_forest": hyperparameters}}})
    with pytest.raises(ParamsError, match=f"train.hyperparameters.random_forest: .*{problem}"):
        build_pipeline(params.schema, params.train)


def test_unreadable_params_files(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        params_module.load(tmp_path)
    (tmp_path / "params.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        params_module.load(tmp_path)
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        params_module.load(tmp_path)


@pytest.mark.pipeline
def test_the_pipeline_stops_on_bad_params_without_training(project):
    project.update_params({"train": {"estimator": "xgboost"}})
    with pytest.raises(PipelineError, match=r"train\.estimator") as caught:
        project.dvc("repro")
    assert "Traceback" not in str(caught.value)
    assert not (project.path / "models" / "train_run.json").exists()
    assert not (project.state / "mlflow" / "artifacts").exists()
