"""GET /api/v1/models/<version>/card: the model card logged with a version's MLflow run.

Uses tests/conftest.py's `trained`, `app` and `client` (one real trained project for this module,
Flask's test client) and the contract tests' error-body checks (tests/helpers.py).
"""

from __future__ import annotations

import mlflow
import pytest

from ml import registry
from tests.helpers import error_body, fields

pytestmark = pytest.mark.pipeline


def test_the_card_of_a_version_is_the_markdown_logged_with_its_run(client, trained):
    name = trained.params.registry.model_name
    response = client.get("/api/v1/models/1/card")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"version", "markdown"} and body["version"] == "1"

    run_id = registry.client().get_model_version(name, "1").run_id
    assert body["markdown"] == mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md")
    assert body["markdown"].startswith(f"# Model card: {name} version 1\n")
    assert run_id in body["markdown"] and "## Promotion" in body["markdown"]


def test_an_unknown_version_is_a_404_naming_the_version(client):
    body = error_body(client.get("/api/v1/models/999/card"), 404)
    assert "no version 999" in body["error"]
    assert fields(body) == {"version"}


def test_a_version_that_is_not_a_positive_integer_is_refused(client):
    assert fields(error_body(client.get("/api/v1/models/0/card"), 422)) == {"version"}
    error_body(client.get("/api/v1/models/latest/card"), 404)


def test_a_version_whose_run_logged_no_card_is_a_404(client, trained):
    name = trained.params.registry.model_name
    mlflow_client = registry.client()
    experiment = mlflow_client.get_experiment_by_name(trained.params.registry.experiment)
    run = mlflow_client.create_run(experiment.experiment_id)
    mlflow_client.log_text(run.info.run_id, "not a card", "notes.md")
    mlflow_client.set_terminated(run.info.run_id)
    source = mlflow_client.get_model_version(name, "1").source  # any model; only its run matters here
    version = mlflow_client.create_model_version(name, source, run_id=run.info.run_id).version

    body = error_body(client.get(f"/api/v1/models/{version}/card"), 404)
    assert body["error"] == f"version {version} has no model card"
    assert fields(body) == {"version"}
    assert str(registry.champion(name).version) == "1"  # registering it changed nothing else
