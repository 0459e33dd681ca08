"""The same pipeline on another labelled table, with only params.yaml changed: trained, served one
record at a time and in batches, and watched for drift."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from ml import registry, tracking
from ml.schema import infer_schema
from tests.helpers import TOKEN, Client, build_project, run_job_here

pytestmark = pytest.mark.pipeline


def wine_table() -> pd.DataFrame:
    """scikit-learn's wine data (3 cultivars), with an ID and a categorical column added."""
    bunch = load_wine(as_frame=True)
    frame = bunch.frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    frame.insert(0, "sample_id", range(1, len(frame) + 1))
    frame["colour_band"] = pd.cut(frame["color_intensity"], [0, 3, 6, 20],
                                  labels=["pale", "medium", "deep"]).astype(str)
    return frame.rename(columns={"target": "cultivar"})


@pytest.fixture(scope="module")
def wine(module_state):
    """The wine table as a project of its own, trained with `dvc repro`."""
    table = wine_table()
    schema = infer_schema(table, "cultivar", ["sample_id"])
    project = build_project(module_state, raw=table, params_changes={
        "dataset": {"name": "wine", "description": "UCI wine recognition data",
                    "raw": "data/raw/wine.csv", "generator": None, "intended_use": "", "limits": []},
        "schema": schema,
        "registry": {"model_name": "wine-classifier", "experiment": "wine"},
        "train": {"estimator": "logistic_regression"},
    })
    project.dvc("repro")
    project.table = table
    return project


@pytest.fixture(scope="module")
def client(wine) -> Client:
    from control_api import create_app

    return Client(create_app({"testing": True, "api_token": TOKEN, "state_dir": wine.state,
                              "project_dir": wine.path}))


def test_a_multiclass_table_with_a_category_runs_end_to_end(wine):
    project, table = wine, wine.table
    assert "generator" not in project.params.dataset.model_dump(exclude_none=True)
    assert "colour_band" in project.params.schema.categorical

    champion = registry.champion("wine-classifier")
    assert champion is not None
    tracking.configure()
    run = mlflow.MlflowClient().get_run(champion.run_id)
    assert run.data.metrics["test_roc_auc"] > 0.9
    assert "threshold" not in run.data.metrics  # multi-class: the most probable class wins
    model = mlflow.sklearn.load_model("models:/wine-classifier@champion")
    assert model.predict_proba(table[project.params.schema.feature_names].head(3)).shape == (3, 3)
    card = (project.path / "data" / "dataset_card.md").read_text()
    assert "Provided as a CSV file" in card and "`colour_band`" in card


DEFAULT_DATA_SET_WORDS = ("technician", "inspect", "machine", "failure", "alarm", "rare", "threshold")


def test_the_cards_speak_of_this_table_only(wine, client):
    dataset_card = (wine.path / "data" / "dataset_card.md").read_text()
    model_card = client.get("/api/v1/models/1/card").get_json()["markdown"]
    for card in (dataset_card, model_card):
        assert [word for word in DEFAULT_DATA_SET_WORDS if word in card.lower()] == []
    assert "wine" in model_card and "Most probable class" in model_card


def test_single_and_batch_predictions_are_logged_alike_and_drift_reads_them(wine, client):
    features = wine.params.schema.feature_names
    records = wine.table[features].head(40).to_dict(orient="records")
    for record in records:  # one record a request, as the console's form sends them
        answer = client.post("/api/v1/predict", json={"records": [record]})
        assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
        assert set(answer.get_json()["predictions"][0]["probabilities"]) == {"0", "1", "2"}

    services = client.app.extensions["opcon"]
    logged = services.predictions.read([*features, "label", "probability_0", "probability_1",
                                        "probability_2"], last=len(records))
    assert len(logged) == len(records)
    assert logged[["probability_0", "probability_1", "probability_2"]].notna().all().all()
    assert (logged[["probability_0", "probability_1", "probability_2"]].sum(axis=1) - 1).abs().max() < 1e-9

    job = client.post("/api/v1/jobs", json={"kind": "drift_report", "params": {"last_rows": 40}})
    assert job.status_code == 202, job.get_data(as_text=True)[:300]
    finished = run_job_here(services, job.get_json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    report = client.get(f"/api/v1/reports/{finished['result']['report_id']}").get_json()
    tested = {column["name"] for column in report["prediction_drift"]["columns"]}
    assert {"prediction_probability_0", "prediction_probability_1", "prediction_probability_2"} <= tested
