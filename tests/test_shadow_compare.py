"""The challenger shadows live traffic: its answers go to the shadow log under its version, the
responses stay the champion's, and GET /models/compare reads both logs and the feedback."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from control_api import create_app, serving
from control_api import shadow as shadow_module
from ml import config, registry
from ml.config import MLSettings
from ml.generate import generate
from monitoring.prediction_log import PredictionLog
from tests.e2e.servers import api_for_console, console_page
from tests.helpers import TOKEN, Client, build_project
from tests.live import wait_until

pytestmark = pytest.mark.pipeline
SHALLOW = {"train": {"hyperparameters": {"random_forest": {"n_estimators": 3, "max_depth": 2}}}}


@pytest.fixture(scope="module")
def project(module_state):
    """Version 1 the champion; version 2, a shallow forest, kept as the challenger."""
    built = build_project(module_state, rows=1500)
    built.train()
    built.update_params(SHALLOW)
    built.train()
    assert built.json("metrics/evaluate.json")["promoted"] is False
    return built


def app_for(project, **settings) -> Client:
    client = Client(create_app({"testing": True, "api_token": TOKEN, "state_dir": project.state,
                                "project_dir": project.path, **settings}))
    client.app.extensions["opcon"].shadow.refresh()
    return client


@pytest.fixture(scope="module")
def traffic(project):
    """80 live requests of one record each, their answers, and the records' true outcomes."""
    client = app_for(project)
    schema = project.params.schema
    frame = generate(80, 99, first_id=50_001)
    answers = []
    for record in frame[schema.feature_names].to_dict(orient="records"):
        answer = client.post("/api/v1/predict", json={"records": [record]})
        assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
        answers.append(answer.get_json())
    assert client.app.extensions["opcon"].shadow.drain()
    return client, answers, frame[schema.target.name].tolist()


def test_shadow_rows_are_logged_under_the_challengers_version_and_never_served(project, traffic):
    client, answers, _ = traffic
    services = client.app.extensions["opcon"]
    assert {a["model"]["version"] for a in answers} == {"1"}
    assert all(a["model"]["alias"] == "champion" for a in answers)
    shadow = services.shadow.log.read(["request_id", "row", "model_version", "shadow", "label",
                                       "probability", *project.params.schema.feature_names])
    assert len(shadow) == len(answers) and set(shadow["model_version"]) == {"2"}
    assert shadow["shadow"].all() and shadow["probability"].between(0, 1).all()
    assert set(shadow["request_id"]) == {a["request_id"] for a in answers}
    served = services.predictions.read(["model_version"])
    assert set(served["model_version"]) == {"1"}  # what drift and quality read holds no shadow row
    status = services.shadow.status()
    assert status.pop("cpu_seconds") > 0  # the scorer thread's own CPU, what shadowing costs
    assert status == {"enabled": True, "challenger_version": "2", "rows_scored": 80, "failures": 0,
                      "skipped": 0, "max_batch_rows": 100_000, "last_error": None}


def test_compare_counts_match_the_logs_and_judges_on_the_labelled_rows(project, traffic):
    client, answers, truth = traffic
    services = client.app.extensions["opcon"]
    items = [{"request_id": a["request_id"], "row": 0, "label": truth[i]} for i, a in enumerate(answers[:50])]
    assert client.post("/api/v1/feedback", json={"items": items}).status_code == 200

    body = client.get("/api/v1/models/compare?last=1000").get_json()
    served = services.predictions.read(["request_id", "label"]).set_index("request_id")["label"]
    shadow = services.shadow.log.read(["request_id", "label"]).set_index("request_id")["label"]
    differ = int((served.astype(str) != shadow.reindex(served.index).astype(str)).sum())
    assert body["compared_rows"] == 80 and body["disagreeing_rows"] == differ
    assert body["agreement"] == pytest.approx(1 - differ / 80)
    assert body["champion_versions"] == ["1"] and body["challenger_versions"] == ["2"]
    assert sum(body["probabilities"]["champion"]) == sum(body["probabilities"]["challenger"]) == 80
    assert len(body["top_disagreements"]) == min(differ, 20)

    quality = body["quality"]
    assert quality["labelled_rows"] == 50
    right = {side: sum(str(label) == str(truth[i]) for i, label in enumerate(column[:50]))
             for side, column in (("champion", [served[a["request_id"]] for a in answers]),
                                  ("challenger", [shadow[a["request_id"]] for a in answers]))}
    for side in ("champion", "challenger"):
        accuracy = quality[side]["accuracy"]
        assert accuracy["value"] == pytest.approx(right[side] / 50)
        assert accuracy["ci95"][0] <= accuracy["value"] <= accuracy["ci95"][1]
    test = quality["mcnemar"]
    gained = test["only_challenger_right"] - test["only_champion_right"]
    assert gained == right["challenger"] - right["champion"]
    assert body["verdict"]["text"].endswith(f"on 50 labelled live rows (McNemar p = {test['p_value']:.3g}).")
    assert body["verdict"]["outcome"] in {"challenger better", "challenger worse", "no detectable difference"}

    csv = client.get("/api/v1/models/compare/disagreements?last=1000")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    table = pd.read_csv(io.BytesIO(csv.data))
    assert len(table) == differ
    assert {"champion_label", "challenger_label", *project.params.schema.feature_names} <= set(table.columns)


def test_a_failing_challenger_never_fails_a_request(project, traffic):
    client = app_for(project)
    shadow = client.app.extensions["opcon"].shadow

    def broken(columns, rows):
        raise RuntimeError("challenger is broken")

    shadow.model.predict_proba = broken
    record = generate(1, 5)[project.params.schema.feature_names].to_dict(orient="records")[0]
    answer = client.post("/api/v1/predict", json={"records": [record]})
    assert answer.status_code == 200 and answer.get_json()["model"]["version"] == "1"
    batch = generate(5, 6)[project.params.schema.feature_names].to_csv(index=False).encode()
    answer = client.post("/api/v1/predict/batch", data={"file": (io.BytesIO(batch), "batch.csv")})
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
    assert shadow.drain()
    assert shadow.status()["failures"] == 2 and "challenger is broken" in shadow.status()["last_error"]
    assert "opcon_shadow_failures_total 2.0" in client.get("/metrics").get_data(as_text=True)


def test_once_the_alias_moves_the_old_challenger_shadows_no_more_even_if_the_new_fails_to_load(
        project, traffic, monkeypatch):
    client = app_for(project)
    shadow = client.app.extensions["opcon"].shadow
    record = generate(1, 7)[project.params.schema.feature_names].to_dict(orient="records")[0]
    assert client.post("/api/v1/predict", json={"records": [record]}).status_code == 200  # 1 loaded
    assert shadow.drain() and shadow.model.version == "2"
    name, bound = project.params.registry.model_name, MLSettings.load(state_dir=project.state,
                                                                       project_dir=project.path)
    loading = serving.load

    def unreadable(*args, **kwargs):
        raise OSError("artifacts unreadable")

    monkeypatch.setattr(serving, "load", unreadable)
    with config.bound(bound):
        registry.client().set_registered_model_alias(name, registry.CHALLENGER, "1")
    try:
        shadow.refresh()
        assert shadow.model is None and "artifacts unreadable" in shadow.status()["last_error"]
        before = len(shadow.log.read(["request_id"]))
        assert client.post("/api/v1/predict", json={"records": [record]}).status_code == 200
        assert shadow.drain() and len(shadow.log.read(["request_id"])) == before  # not under "2"

        monkeypatch.setattr(serving, "load", loading)
        monkeypatch.setattr(shadow_module, "RETRY_FAILED_LOAD_SECONDS", 0.0)
        shadow.refresh()
        assert shadow.model.version == "1" and shadow.status()["last_error"] is None
    finally:
        with config.bound(bound):
            registry.client().set_registered_model_alias(name, registry.CHALLENGER, "2")


def test_shadowing_can_be_switched_off(project, traffic):
    client = app_for(project, shadow=False)
    before = len(client.app.extensions["opcon"].shadow.log.read(["request_id"]))
    record = generate(1, 6)[project.params.schema.feature_names].to_dict(orient="records")[0]
    assert client.post("/api/v1/predict", json={"records": [record]}).status_code == 200
    assert client.app.extensions["opcon"].shadow.drain()
    assert len(client.app.extensions["opcon"].shadow.log.read(["request_id"])) == before
    assert client.get("/api/v1/models/compare").get_json()["shadow"]["enabled"] is False



def test_a_csv_batch_is_shadowed_from_its_logged_file(project, traffic):
    client = app_for(project)
    services = client.app.extensions["opcon"]
    names = project.params.schema.feature_names
    frame = generate(30, 321, first_id=90_001)
    compared = client.get("/api/v1/models/compare?last=100000").get_json()["compared_rows"]
    upload = io.BytesIO(frame.to_csv(index=False).encode())
    answer = client.post("/api/v1/predict/batch", data={"file": (upload, "batch.csv")})
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
    request_id = answer.headers["X-Request-Id"]
    assert services.shadow.drain()
    shadow = services.shadow.log.read(["request_id", "row", "model_version", "shadow", "probability", *names])
    mine = shadow[shadow["request_id"] == request_id].sort_values("row")
    assert mine["row"].tolist() == list(range(30)) and set(mine["model_version"]) == {"2"}
    assert mine["shadow"].all()
    pd.testing.assert_frame_equal(mine[names].reset_index(drop=True), frame[names], check_dtype=False)
    challenger = services.shadow.model
    proba, _ = challenger.predict_proba({n: frame[n].to_numpy() for n in names}, 30)
    assert mine["probability"].to_numpy() == pytest.approx(proba[:, challenger.positive_index])
    body = client.get("/api/v1/models/compare?last=100000").get_json()
    assert body["compared_rows"] == compared + 30

    capped = app_for(project, shadow_max_batch_rows=12)  # a longer batch: its first rows only
    upload = io.BytesIO(generate(30, 322, first_id=91_001).to_csv(index=False).encode())
    answer = capped.post("/api/v1/predict/batch", data={"file": (upload, "batch.csv")})
    assert answer.status_code == 200 and len(pd.read_csv(io.BytesIO(answer.data))) == 30
    assert capped.app.extensions["opcon"].shadow.drain()
    shadow = services.shadow.log.read(["request_id", "row"])
    assert sorted(shadow[shadow["request_id"] == answer.headers["X-Request-Id"]]["row"]) == list(range(12))

# -- live: gunicorn workers shadow in their own thread; the console's pages read the result ----------

@pytest.fixture(scope="module")
def live(project, traffic):
    """The API under gunicorn on the same project (v1 champion, v2 challenger), and a session token."""
    with api_for_console(project.path, project.state, "ada", "admin") as services:
        yield services


def test_live_workers_shadow_every_request_and_compare_counts_them(project, live):
    before = live.get("/api/v1/models/compare?last=100000").json()["compared_rows"]
    frame = generate(60, 123, first_id=80_001)
    answers = [live.post("/api/v1/predict", json={"records": [r]}).json()
               for r in frame[project.params.schema.feature_names].to_dict(orient="records")]
    assert {a["model"]["version"] for a in answers} == {"1"}
    ids = {a["request_id"] for a in answers}
    shadow_log = PredictionLog(project.state / "predictions" / "shadow", indexed=False)
    wait_until(lambda: ids <= set(shadow_log.read(["request_id"])["request_id"]), 30,
               "every live request has its shadow row")
    body = live.get("/api/v1/models/compare?last=100000").json()
    assert body["compared_rows"] == before + 60 and body["shadow"]["challenger_version"] == "2"
    metrics = live.get("/metrics").text
    assert 'opcon_shadow_rows_total{model_version="2"}' in metrics
    cpu = re.search(r"^opcon_shadow_cpu_seconds_total (\S+)$", metrics, re.MULTILINE)
    assert cpu and float(cpu.group(1)) > 0  # summed over the workers


def test_the_compare_page_gives_the_verdict_first_then_the_evidence(live):
    body = live.get("/api/v1/models/compare?last=5000").json()
    app = console_page(live.session_token, "compare")
    notices = [*app.main.success, *app.main.error, *app.main.info]
    assert notices[0].value == f"**{body['verdict']['text']}**"
    shown = {m.label: m.value for m in app.metric}
    assert shown["Live rows compared"] == f"{body['compared_rows']:,}"
    assert shown["With feedback"] == f"{body['quality']['labelled_rows']:,}"
    assert "The evidence" in [h.value for h in app.subheader]
    assert [b.label for b in app.button if b.label.startswith("Promote")] == ["Promote v2…"]
    next(b for b in app.button if b.label == "Promote v2…").click().run()
    assert any("Make **v2** the champion" in w.value for w in app.warning)  # asks before it acts


def test_the_quality_page_shows_the_estimate_against_training(live):
    app = console_page(live.session_token, "quality")
    line = next(m.value for m in app.markdown if m.value.startswith("Estimated ROC AUC"))
    at_training = live.get("/api/v1/quality").json()["champion"]["at_training"]["roc_auc"]
    assert f"against {at_training:.3f} at training" in line
    assert len(app.get("plotly_chart")) == 1 and app.dataframe[0].value["rows"].sum() > 0


def test_the_predict_page_explains_its_answer(live):
    app = console_page(live.session_token, "predict")
    app.checkbox(key="explain").check()
    next(b for b in app.button if b.label == "Predict").click().run()
    assert not app.exception and [e.value for e in app.main.error] == []
    result = app.session_state["prediction"]
    first = result["predictions"][0]["explanation"]["reasons"][0]["text"]
    assert any(m.value == f"**Why:** {first}." for m in app.markdown)
    assert result["explained_by"]["version"] == result["model"]["version"] == "1"
    assert len(app.get("plotly_chart")) == 2  # the answer's chart and the contributions
