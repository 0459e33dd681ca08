"""The same pipeline on another labelled table, with only params.yaml changed: trained, served one
record at a time and in batches, and watched for drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from streamlit.testing.v1 import AppTest

from ml import registry, tracking
from tests.e2e.servers import api_for_console, console_page
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


USER_COMMENT = "# params of our line, kept by hand\n"


def switch(project, csv_path, *args: str) -> subprocess.CompletedProcess:
    """`make dataset CSV=... TARGET=cultivar ID=sample_id` in `project` (python -m ml.dataset use)."""
    env = {**os.environ, "OPCON_PROJECT_DIR": str(project.path), "OPCON_HOME": str(project.state)}
    return subprocess.run([sys.executable, "-m", "ml.dataset", "use", str(csv_path), *args],
                          cwd=project.path, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.fixture(scope="module")
def wine(module_state):
    """A project of the default data set, switched to the wine table by the one command."""
    project = build_project(module_state, rows=300)
    params_file = project.path / "params.yaml"
    params_file.write_text(USER_COMMENT + params_file.read_text().replace(
        "split:", "split:  # the user's note on the split", 1))
    table = wine_table()
    source = module_state / "wine.csv"
    table.to_csv(source, index=False)
    done = switch(project, source, "--target", "cultivar", "--id-column", "sample_id")
    assert done.returncode == 0, done.stderr[-2000:]
    project.table, project.source, project.output = table, source, done.stdout
    return project


def test_the_one_command_switch_keeps_the_comments_and_drops_the_old_data_set(wine):
    text = (wine.path / "params.yaml").read_text()
    assert text.startswith(USER_COMMENT) and "split:  # the user's note on the split" in text
    assert "# fill in: what the column means" in text
    params = wine.params
    assert params.dataset.raw == "data/raw/wine.csv" and params.dataset.generator is None
    assert params.registry.model_name == "wine-classifier"
    assert params.schema.target.labels == {0: "0", 1: "1", 2: "2"}
    assert not (wine.path / "data" / "raw" / "machines.csv.dvc").exists()
    assert (wine.path / "data" / "raw" / "wine.csv.dvc").is_file()
    assert "champion: wine-classifier version 1" in wine.output and "review in params.yaml" in wine.output


def test_running_the_switch_again_changes_nothing(wine):
    before = (wine.path / "params.yaml").read_bytes()
    done = switch(wine, wine.source, "--target", "cultivar", "--id-column", "sample_id")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (wine.path / "params.yaml").read_bytes() == before
    assert str(registry.champion("wine-classifier").version) == "1"  # not trained again


@pytest.mark.parametrize(("content", "args", "problem"), [
    (b"\x00\x01\xff\xfe binary", ("--target", "cultivar"), "not a UTF-8 CSV"),
    (b"a,b\n1,2\n3,4\n", ("--target", "cultivar"), "has no column `cultivar`"),
    (b"a,b,y\n" + b"".join(b"%d,%d,%f\n" % (i, i, i / 7) for i in range(100)), ("--target", "y"),
     "100 distinct value(s)"),
    (b"a,a,y\n1,2,0\n3,4,1\n", ("--target", "y"), "duplicate column `a`"),
])
def test_a_file_that_is_not_a_labelled_csv_is_refused_and_changes_nothing(wine, tmp_path, content,
                                                                         args, problem):
    before = (wine.path / "params.yaml").read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    done = switch(wine, bad, *args)
    assert done.returncode == 2 and problem in done.stderr, done.stderr[-1000:]
    assert (wine.path / "params.yaml").read_bytes() == before
    assert not (wine.path / "data" / "raw" / "bad.csv").exists()


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
    assert (logged[["probability_0", "probability_1", "probability_2"]].sum(axis=1) - 1).abs().max() < 1e-6

    job = client.post("/api/v1/jobs", json={"kind": "drift_report", "params": {"last_rows": 40}})
    assert job.status_code == 202, job.get_data(as_text=True)[:300]
    finished = run_job_here(services, job.get_json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    report = client.get(f"/api/v1/reports/{finished['result']['report_id']}").get_json()
    tested = {column["name"] for column in report["prediction_drift"]["columns"]}
    assert {"prediction_probability_0", "prediction_probability_1", "prediction_probability_2"} <= tested


def test_a_multiclass_answer_is_explained_towards_its_class_and_adds_up(wine, client):
    features = wine.params.schema.feature_names
    records = wine.table[features].sample(12, random_state=5).to_dict(orient="records")
    body = client.post("/api/v1/predict?explain=true", json={"records": records}).get_json()
    model = mlflow.sklearn.load_model(f"models:/wine-classifier/{body['explained_by']['version']}")
    proba = model.predict_proba(pd.DataFrame(records)[features])
    classes = [str(c) for c in model.classes_]
    for i, prediction in enumerate(body["predictions"]):
        explanation = prediction["explanation"]
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - proba[i, classes.index(str(prediction["label"]))]) < 1e-6
        assert explanation["contributions"].keys() == set(features)  # colour_band's one-hot columns summed
        assert "threshold" not in explanation["reasons"][0]["text"]


@pytest.fixture(scope="module")
def console_session(wine):
    """The API under gunicorn on the wine project, and an operator's session token for the console."""
    with api_for_console(wine.path, wine.state, "olga", "operator") as services:
        yield services.session_token


def page_text(app: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "title") for e in getattr(app, kind)]
    return " ".join(str(part) for part in parts).lower()


def test_the_console_predicts_from_this_tables_schema(wine, console_session):
    app = console_page(console_session, "predict")
    features = wine.params.schema.feature_names
    keys = {w.key for w in [*app.number_input, *app.selectbox] if w.key.startswith("feature_")}
    assert keys == {f"feature_{name}" for name in features}
    assert app.selectbox(key="feature_colour_band").options == ["deep", "medium", "pale"]
    assert "threshold" not in page_text(app)

    next(b for b in app.button if b.label == "Predict").click().run()
    assert not app.exception and [e.value for e in app.main.error] == []
    answer = app.session_state["prediction"]["predictions"][0]
    assert set(answer["probabilities"]) == {"0", "1", "2"} and answer.get("threshold") is None
    assert next(m.value for m in app.metric if m.label == "Predicted outcome") == answer["label_text"]
    shown = page_text(app)
    assert "wine-classifier" in shown and "threshold" not in shown


def test_the_models_page_shows_no_threshold_for_a_multiclass_model(console_session):
    app = console_page(console_session, "models")
    assert "threshold" not in app.dataframe[0].value.columns
    assert "threshold" not in page_text(app).replace("decision threshold (two classes)", "")


def test_a_pull_that_names_missing_data_says_what_to_do(wine, client):
    stale = wine.path / "data" / "raw" / "machines.csv.dvc"
    stale.write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef\n  size: 10\n  hash: md5\n"
                     "  path: machines.csv\n")
    try:
        job = client.post("/api/v1/jobs", json={"kind": "data_pull"})
        assert job.status_code == 202, job.get_data(as_text=True)[:300]
        finished = run_job_here(client.app.extensions["opcon"], job.get_json()["id"])
    finally:
        stale.unlink()
    assert finished["status"] == "failed"
    assert "`data/raw/machines.csv.dvc` point(s) at data no longer in use" in finished["error"]
    assert "`make dataset`" in finished["error"] and "data/raw/wine.csv" in finished["error"]
    assert (wine.path / "data" / "raw" / "wine.csv").is_file()  # the data in use stays


def test_a_batch_is_scored_and_a_retrain_keeps_the_table_serving(wine, client):
    answer = client.upload("/api/v1/predict/batch", wine.source.read_bytes(), "wine.csv")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    header = answer.get_data(as_text=True).split("\n", 1)[0].split(",")
    assert {"prediction_label", "prediction_probability_0", "prediction_probability_2"} <= set(header)

    finished = retrain(client)
    assert finished["result"]["model_version"] == "2"
    versions = client.get("/api/v1/models").get_json()["versions"]
    assert {v["version"] for v in versions} == {"1", "2"}
    # the same data, the same seed: an equal score, so the champion stays
    assert not finished["result"]["promoted"], finished["result"]
    assert "does not beat the champion's" in finished["result"]["promotion_reason"]


def test_an_equal_score_on_newer_data_promotes(wine, client):
    """The wine models score close to 1.0, so the margin rule can hardly promote: a model of newer data
    at least as good on the same test split takes over, and the reason says so. The new rows are each
    class's most typical ones (the champion's surest), so the newer model is no worse."""
    model = mlflow.sklearn.load_model("models:/wine-classifier@champion")
    sureness = model.predict_proba(wine.table[wine.params.schema.feature_names]).max(axis=1)
    batch = (wine.table.assign(sureness=sureness).sort_values("sureness", ascending=False)
             .groupby("cultivar").head(10).drop(columns="sureness").assign(sample_id=range(1001, 1031)))
    sent = client.upload("/api/v1/datasets", batch.to_csv(index=False).encode(), "more-wine.csv")
    assert sent.status_code == 202, sent.get_data(as_text=True)[:500]
    added = run_job_here(client.app.extensions["opcon"], sent.get_json()["id"])
    assert added["status"] == "succeeded", added["error"]

    finished = retrain(client)
    result = finished["result"]
    assert result["model_version"] == "3" and result["promoted"], result["promotion_reason"]
    scores = re.fullmatch(r"trained on newer data, and its test pr_auc (\S+) is at least the champion's "
                          r"(\S+) on the same test set", result["promotion_reason"])
    assert scores and 0.99 < float(scores[2]) <= float(scores[1]), result["promotion_reason"]
    assert str(registry.champion("wine-classifier").version) == "3"


def retrain(client: Client) -> dict:
    job = client.post("/api/v1/jobs", json={"kind": "retrain"})
    assert job.status_code == 202, job.get_data(as_text=True)[:300]
    finished = run_job_here(client.app.extensions["opcon"], job.get_json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    return finished
