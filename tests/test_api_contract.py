"""The control API's HTTP contract, through Flask's test client, on a real trained project.

One DVC project per module with a trained champion (real DVC, Great Expectations, MLflow,
scikit-learn; no mocks). The tests run in file order: the later ones train a second version,
promote and roll it back, and append a data batch. Feature names never appear here: every record
is derived from the schema in the project's params.yaml or from the data generator.

"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import uuid
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from control_api import create_app
from control_api.routes.feedback import labels as feedback_labels
from ml import registry
from ml.generate import generate
from ml.versioning import file_md5, pointer_version
from tests.helpers import (
    STATE_VARIABLES,
    TOKEN,
    Client,
    Project,
    build_project,
    error_body,
    fields,
    run_job_here,
)

pytestmark = pytest.mark.pipeline

PREDICTION_COLUMNS = ("prediction_label", "prediction_probability")
PROBABILITY_TOLERANCE = 1e-4


# -- helpers -------------------------------------------------------------------------------------

def typical_value(feature):
    if feature.typical is not None:
        return feature.typical
    if feature.type == "category":
        return feature.categories[0]
    low = feature.min if feature.min is not None else 0.0
    return float(low if feature.max is None else (low + feature.max) / 2)


def typical_record(schema) -> dict:
    """The schema's typical values as a JSON client sends them (ints stay ints)."""
    return {f.name: typical_value(f) for f in schema.features}


def feature_records(schema, frame: pd.DataFrame) -> list[dict]:
    """Rows of a generated frame as JSON records of the features."""
    records = []
    for row in frame[schema.feature_names].to_dict(orient="records"):
        records.append({f.name: str(row[f.name]) if f.type == "category" else float(row[f.name])
                        for f in schema.features})
    return records


def numeric_features(schema) -> list:
    return [f for f in schema.features if f.type == "number"]


def category_features(schema) -> list:
    return [f for f in schema.features if f.type == "category"]


def unknown_category(feature) -> str:
    return "-".join(feature.categories) + "-unknown"


def expected_proba(model_uri: str, schema, records: list[dict]) -> np.ndarray:
    """The positive class's probability from the registered model itself (MLflow, scikit-learn)."""
    registry.client()  # points MLflow at this module's state dir
    model = mlflow.sklearn.load_model(model_uri)
    frame = pd.DataFrame(records)[schema.feature_names]
    positive = model.classes_.tolist().index(schema.target.positive)
    return model.predict_proba(frame)[:, positive]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


def metric_samples(client: Client, name: str) -> list:
    response = client.get("/metrics", auth=False)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples if sample.name == name]


def prediction_count(client: Client) -> float:
    return sum(s.value for s in metric_samples(client, "opcon_predictions_total"))


def raise_on_constant(constant: str):
    raise ValueError(f"`{constant}` is not JSON")


# -- fixtures ------------------------------------------------------------------------------------

# `trained`, `app` and `client` are tests/conftest.py's: one trained project for this module

@pytest.fixture(scope="module")
def services(app):
    return app.extensions["opcon"]


@pytest.fixture(scope="module")
def schema(trained):
    schema = trained.params.schema
    assert schema.target.is_binary  # the contract below is the binary one (one probability)
    return schema


@pytest.fixture(scope="module")
def model_name(trained) -> str:
    return trained.params.registry.model_name


@pytest.fixture(scope="module")
def record(schema) -> dict:
    return typical_record(schema)


@pytest.fixture(scope="module")
def small_app(trained):
    """Same project, tight limits: 10,000-byte uploads, 50-row batches, 5 records."""
    return create_app({"testing": True, "api_token": TOKEN, "state_dir": trained.state,
                       "project_dir": trained.path, "max_upload_bytes": 10_000,
                       "max_batch_rows": 50, "max_records": 5})


@pytest.fixture
def empty_project(tmp_path, monkeypatch) -> Project:
    """A project with data but no trained model, in its own state dir (its own MLflow registry).
    Every state variable is cleared first: a MLFLOW_TRACKING_URI set outside would outrank OPCON_HOME."""
    for name in STATE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPCON_HOME", str(tmp_path / "state"))
    return build_project(tmp_path, rows=300)


# -- health and readiness ------------------------------------------------------------------------

def test_health_answers_without_a_token(client):
    response = client.get("/health", auth=False)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_with_a_champion_and_a_queue(client, model_name):
    response = client.get("/ready", auth=False)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body == {"ready": True, "queue": "ok", "jobs": "ok", "reasons": [],
                    "champion": f"{model_name} version 1"}


def test_not_ready_without_a_champion_and_predict_says_why(empty_project):
    app = create_app({"testing": True, "api_token": TOKEN, "state_dir": empty_project.state,
                      "project_dir": empty_project.path})
    client = Client(app)
    assert client.get("/health", auth=False).status_code == 200

    response = client.get("/ready", auth=False)
    assert response.status_code == 503
    body = response.get_json()
    assert body["ready"] is False and body["champion"] is None and body["queue"] == "ok"
    assert len(body["reasons"]) == 1 and "no champion" in body["reasons"][0]

    predicted = client.post("/api/v1/predict",
                            json={"records": [typical_record(empty_project.params.schema)]})
    assert "no champion" in error_body(predicted, 503)["error"]
    assert client.get("/api/v1/models").get_json()["versions"] == []


# -- authentication ------------------------------------------------------------------------------

def concrete(rule) -> str:
    """A URL for a rule: `<int:version>` → 1, other variables → a made-up id."""
    return re.sub(r"<(?:int:)?[^<>]+>",
                  lambda m: "1" if m.group(0).startswith("<int:") else "some-id", rule.rule)


def test_every_api_route_refuses_a_missing_or_wrong_token(app, client, services, model_name):
    rules = [r for r in app.url_map.iter_rules()
             if r.rule.startswith("/api/v1") and r.rule != "/api/v1/auth/login"]  # signing in is open
    paths = {r.rule for r in rules}
    assert {"/api/v1/schema", "/api/v1/predict", "/api/v1/predict/batch", "/api/v1/models",
            "/api/v1/models/rollback", "/api/v1/datasets", "/api/v1/feedback",
            "/api/v1/jobs"} <= paths
    jobs_before = services.jobs.list()[1]
    wrong = [None, "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", TOKEN,
             f"Basic {TOKEN}", "Bearer ", "Bearer"]
    checked = 0
    for rule in rules:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for header in wrong:
                headers = {} if header is None else {"Authorization": header}
                response = client.open(method, concrete(rule), auth=False, headers=headers,
                                       json={"kind": "validate"} if method == "POST" else None)
                body = error_body(response, 401)
                assert body["details"] and body["details"][0]["field"] == "Authorization"
                checked += 1
    assert checked >= len(rules) * len(wrong)
    # nothing happened behind the refusals
    assert services.jobs.list()[1] == jobs_before
    assert str(registry.champion(model_name).version) == "1"


def test_an_unknown_api_path_is_refused_before_it_is_looked_up(client):
    error_body(client.get("/api/v1/no-such-thing", auth=False), 401)
    error_body(client.get("/api/v1/no-such-thing"), 404)


# -- schema --------------------------------------------------------------------------------------

def test_schema_describes_every_feature_and_the_target(client, schema):
    response = client.get("/api/v1/schema")
    assert response.status_code == 200
    body = response.get_json()
    assert [f["name"] for f in body["features"]] == schema.feature_names
    for shown, feature in zip(body["features"], schema.features, strict=True):
        for key in ("name", "type", "description", "unit", "min", "max", "categories", "typical"):
            assert shown.get(key) == getattr(feature, key), (feature.name, key)
    target = schema.target
    assert body["target"]["name"] == target.name
    assert body["target"]["classes"] == target.classes
    assert body["target"]["positive"] == target.positive
    assert body["target"]["labels"] == {str(k): v for k, v in target.labels.items()}


# -- predict (JSON) ------------------------------------------------------------------------------

def check_prediction_response(body: dict, schema, model_name: str, version: str, *, count: int,
                              threshold: float) -> list[float]:
    assert body["model"] == {"name": model_name, "version": version, "alias": "champion"}
    assert str(uuid.UUID(body["request_id"])) == body["request_id"]
    assert body["served_by"] in ("onnx", "sklearn")
    predictions = body["predictions"]
    assert len(predictions) == count
    positive = schema.target.positive
    others = [c for c in schema.target.classes if c != positive]
    for prediction in predictions:
        assert prediction["label"] in schema.target.classes
        assert prediction["label_text"] == schema.target.label(prediction["label"])
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["threshold"] == pytest.approx(threshold, abs=1e-12)
        expected = positive if prediction["probability"] >= threshold else others[0]
        assert prediction["label"] == expected
    return [p["probability"] for p in predictions]


def version_threshold(model_name: str, version: str) -> float:
    return float(registry.client().get_model_version(model_name, version).tags["threshold"])


def test_predict_one_typical_record(client, schema, model_name, record):
    response = client.post("/api/v1/predict", json={"records": [record]})
    assert response.status_code == 200, response.get_json()
    probabilities = check_prediction_response(response.get_json(), schema, model_name, "1", count=1,
                                              threshold=version_threshold(model_name, "1"))
    expected = expected_proba(f"models:/{model_name}@champion", schema, [record])
    assert probabilities == pytest.approx(expected.tolist(), abs=PROBABILITY_TOLERANCE)


def test_predict_100_records_matches_the_registered_model_and_is_logged(client, services, schema,
                                                                         model_name):
    records = feature_records(schema, generate(100, 41))
    response = client.post("/api/v1/predict", json={"records": records})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    probabilities = check_prediction_response(body, schema, model_name, "1", count=100,
                                              threshold=version_threshold(model_name, "1"))
    expected = expected_proba(f"models:/{model_name}@champion", schema, records)
    assert np.abs(np.array(probabilities) - expected).max() <= PROBABILITY_TOLERANCE
    assert len(set(np.round(probabilities, 6))) > 1  # real rows, not one answer for all

    logged = services.predictions.find(body["request_id"]).sort_values("row")
    assert logged["row"].tolist() == list(range(100))
    assert set(logged["model_version"].astype(str)) == {"1"}
    assert set(logged["served_by"]) == {body["served_by"]}
    for feature in schema.features:
        sent = [r[feature.name] for r in records]
        if feature.type == "number":
            assert logged[feature.name].astype(float).tolist() == pytest.approx(sent)
        else:
            assert logged[feature.name].astype(str).tolist() == sent
    assert logged["probability"].tolist() == pytest.approx(probabilities, abs=1e-12)
    assert logged["label"].tolist() == [p["label"] for p in body["predictions"]]


def test_predict_accepts_the_maximum_number_of_records(client, record):
    response = client.post("/api/v1/predict", json={"records": [record] * 10_000})
    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == 10_000


# -- predict: invalid input (422 naming the field, never a 500) ----------------------------------

def test_a_missing_feature_is_named(client, schema, record):
    for name in schema.feature_names:
        partial = {k: v for k, v in record.items() if k != name}
        body = error_body(client.post("/api/v1/predict", json={"records": [partial]}), 422)
        assert fields(body) == {f"records[0].{name}"}


def test_a_string_for_a_number_is_named(client, schema, record):
    for feature in numeric_features(schema):
        wrong = {**record, feature.name: str(typical_value(feature))}
        body = error_body(client.post("/api/v1/predict", json={"records": [record, wrong]}), 422)
        assert fields(body) == {f"records[1].{feature.name}"}
        wrong = {**record, feature.name: True}
        body = error_body(client.post("/api/v1/predict", json={"records": [wrong]}), 422)
        assert fields(body) == {f"records[0].{feature.name}"}


def test_nan_and_infinity_are_refused(client, schema, record):
    for feature in numeric_features(schema):
        text = json.dumps({"records": [{**record, feature.name: "@@"}]})
        for constant in ("NaN", "Infinity", "-Infinity", "1e999"):
            response = client.post("/api/v1/predict", data=text.replace('"@@"', constant),
                                   content_type="application/json")
            assert fields(error_body(response, 422)) == {f"records[0].{feature.name}"}, constant


def test_out_of_range_values_are_named(client, schema, record):
    checked = 0
    for feature in numeric_features(schema):
        for bound, outside in ((feature.min, -1), (feature.max, 1)):
            if bound is None:
                continue
            wrong = {**record, feature.name: bound + outside}
            body = error_body(client.post("/api/v1/predict", json={"records": [wrong]}), 422)
            assert fields(body) == {f"records[0].{feature.name}"}
            assert body["details"][0]["value"] == bound + outside
            inside = client.post("/api/v1/predict", json={"records": [{**record, feature.name: bound}]})
            assert inside.status_code == 200  # the bounds themselves are allowed
            checked += 1
    assert checked > 0


def test_an_unknown_category_is_named(client, schema, record):
    assert category_features(schema)
    for feature in category_features(schema):
        wrong = {**record, feature.name: unknown_category(feature)}
        body = error_body(client.post("/api/v1/predict", json={"records": [wrong]}), 422)
        assert fields(body) == {f"records[0].{feature.name}"}


def test_extra_fields_are_named(client, record):
    extra = f"unexpected_{uuid.uuid4().hex[:8]}"
    body = error_body(client.post("/api/v1/predict", json={"records": [{**record, extra: 1}]}), 422)
    assert fields(body) == {f"records[0].{extra}"}
    body = error_body(client.post("/api/v1/predict", json={"records": [record], extra: 1}), 422)
    assert fields(body) == {extra}


def test_record_count_limits(client, record):
    body = error_body(client.post("/api/v1/predict", json={"records": []}), 422)
    assert fields(body) == {"records"}
    body = error_body(client.post("/api/v1/predict", json={"records": [record] * 10_001}), 422)
    assert fields(body) == {"records"}
    assert "10000" in body["details"][0]["problem"]


def test_a_body_that_is_not_a_json_object_is_refused(client, record):
    cases = {
        "not JSON": {"data": "{records: oops", "content_type": "application/json"},
        "a list": {"json": [record]},
        "a string": {"json": "records"},
        "a number": {"json": 42},
        "null": {"data": "null", "content_type": "application/json"},
        "no body": {},
        "a form": {"data": {"records": "x"}},
        "records not a list": {"json": {"records": record}},
        "a record not an object": {"json": {"records": [[1, 2]]}},
    }
    for case, kwargs in cases.items():
        body = error_body(client.post("/api/v1/predict", **kwargs), 422)
        assert body["details"], case


def test_error_bodies_are_valid_json_even_for_nan_input(client, schema, record):
    feature = numeric_features(schema)[0]
    text = json.dumps({"records": [{**record, feature.name: "@@"}]}).replace('"@@"', "NaN")
    response = client.post("/api/v1/predict", data=text, content_type="application/json")
    assert response.status_code == 422
    body = json.loads(response.get_data(as_text=True), parse_constant=raise_on_constant)
    assert fields(body) == {f"records[0].{feature.name}"}


def test_a_deeply_nested_body_is_a_client_error(client):
    depth = 100_000
    response = client.post("/api/v1/predict", data="[" * depth + "]" * depth,
                           content_type="application/json", allow_500=True)
    assert response.status_code in (400, 422)
    assert response.is_json and set(response.get_json()) >= {"error", "details"}


# -- predict/batch (CSV) -------------------------------------------------------------------------

def test_batch_csv_returns_every_input_column_plus_predictions_and_is_logged(client, services, schema,
                                                                           model_name):
    frame = generate(500, 43)
    response = client.upload("/api/v1/predict/batch", csv_bytes(frame))
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/csv"
    request_id = response.headers["X-Request-Id"]
    assert str(uuid.UUID(request_id)) == request_id
    assert response.headers["X-Model-Version"] == "1"
    assert response.headers["X-Served-By"] in ("onnx", "sklearn")

    scored = pd.read_csv(io.BytesIO(response.get_data()),
                         dtype={name: str for name in schema.categorical})
    assert list(scored.columns[:len(frame.columns)]) == list(frame.columns)
    assert set(PREDICTION_COLUMNS) <= set(scored.columns)
    assert len(scored) == len(frame)
    pd.testing.assert_frame_equal(scored[frame.columns], frame, check_dtype=False)
    assert set(scored["prediction_label"]) <= set(schema.target.classes)
    assert scored["prediction_probability"].between(0, 1).all()
    expected = expected_proba(f"models:/{model_name}@champion", schema,
                              feature_records(schema, frame))
    assert np.abs(scored["prediction_probability"].to_numpy() - expected).max() <= PROBABILITY_TOLERANCE

    assert (services.predictions.directory / f"batch-{request_id}.parquet").is_file()
    logged = services.predictions.find(request_id).sort_values("row")
    assert len(logged) == len(frame)
    expected = scored["prediction_probability"].tolist()
    assert logged["probability"].tolist() == pytest.approx(expected, abs=1e-9)
    assert set(logged["model_version"].astype(str)) == {"1"}


def test_batch_answers_json_records_when_asked(client, schema):
    frame = generate(50, 44)
    response = client.upload("/api/v1/predict/batch", csv_bytes(frame),
                             headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.is_json and response.headers["X-Request-Id"]
    rows = response.get_json()
    assert len(rows) == len(frame)
    for row, original in zip(rows, frame.to_dict(orient="records"), strict=True):
        assert set(PREDICTION_COLUMNS) <= set(row)
        assert row[schema.id_columns[0]] == original[schema.id_columns[0]]
        assert row["prediction_label"] in schema.target.classes
        assert 0.0 <= row["prediction_probability"] <= 1.0


def test_batch_with_a_missing_column_names_it(client, schema):
    frame = generate(50, 45)
    for name in schema.feature_names:
        body = error_body(client.upload("/api/v1/predict/batch", csv_bytes(frame.drop(columns=name))), 422)
        assert fields(body) == {name}


def test_a_batch_whose_outputs_would_overwrite_a_column_is_refused_and_not_counted(client):
    frame = generate(20, 47).assign(prediction_label="mine")
    before = prediction_count(client)
    body = error_body(client.upload("/api/v1/predict/batch", csv_bytes(frame)), 422)
    assert fields(body) == {"prediction_label"}
    assert prediction_count(client) == before


def test_batch_with_bad_values_names_the_column_and_rows(client, schema):
    frame = generate(50, 46)
    checked = 0
    for feature in numeric_features(schema):
        for bound, outside in ((feature.min, -1), (feature.max, 1)):
            if bound is None:
                continue
            bad = frame.astype({feature.name: float})
            bad.loc[[3, 7], feature.name] = bound + outside
            body = error_body(client.upload("/api/v1/predict/batch", csv_bytes(bad)), 422)
            assert fields(body) == {feature.name}
            assert body["details"][0]["rows"] == [4, 8] and body["details"][0]["count"] == 2
            checked += 1
    assert checked > 0
    for feature in category_features(schema):
        bad = frame.copy()
        bad.loc[[0], feature.name] = unknown_category(feature)
        body = error_body(client.upload("/api/v1/predict/batch", csv_bytes(bad)), 422)
        assert fields(body) == {feature.name} and body["details"][0]["rows"] == [1]
    feature = numeric_features(schema)[0]
    bad = frame.copy().astype({feature.name: object})
    bad.loc[1, feature.name] = "not-a-number"
    bad.loc[2, feature.name] = None
    body = error_body(client.upload("/api/v1/predict/batch", csv_bytes(bad)), 422)
    rows = {d["problem"]: d["rows"] for d in body["details"] if d["field"] == feature.name}
    assert sorted(rows.values()) == [[2], [3]]


def test_batch_unreadable_files_are_refused(client, schema):
    header = ",".join(generate(5, 47).columns) + "\n"
    cases = {
        "binary": bytes(range(256)) * 8,
        "latin-1": header.encode() + "é,".encode("latin-1") * 20,
        "empty": b"",
        "blank lines": b"\n\n\n",
        "header only": header.encode(),
        "broken quoting": header.encode() + b'"unterminated,1,2\n',
    }
    for case, content in cases.items():
        body = error_body(client.upload("/api/v1/predict/batch", content), 422)
        assert body["details"], case
        assert "file" in fields(body) or fields(body) <= set(schema.feature_names), case


def test_batch_without_a_file_field_is_refused(client):
    for kwargs in ({"data": {}, "content_type": "multipart/form-data"},
                   {"data": {"other": (io.BytesIO(b"a,b\n1,2\n"), "x.csv")},
                    "content_type": "multipart/form-data"},
                   {"json": {"file": "a,b\n1,2\n"}}, {}):
        body = error_body(client.post("/api/v1/predict/batch", **kwargs), 422)
        assert fields(body) == {"file"}


def test_limits_can_be_set_per_app(small_app, schema, record):
    client = Client(small_app)
    frame = generate(500, 48)
    assert len(csv_bytes(frame)) > 10_000
    body = error_body(client.upload("/api/v1/predict/batch", csv_bytes(frame)), 413)
    assert "10000" in body["error"]
    body = error_body(client.post("/api/v1/predict", json={"records": [record] * 500}), 413)
    small = csv_bytes(generate(60, 48))
    assert len(small) < 10_000
    assert "50" in error_body(client.upload("/api/v1/predict/batch", small), 413)["error"]
    assert client.upload("/api/v1/predict/batch", csv_bytes(generate(50, 48))).status_code == 200
    body = error_body(client.post("/api/v1/predict", json={"records": [record] * 6}), 422)
    assert fields(body) == {"records"}
    assert client.post("/api/v1/predict", json={"records": [record] * 5}).status_code == 200


def test_an_oversize_dataset_upload_is_refused_and_changes_nothing(small_app, trained):
    before = trained.raw.read_bytes()
    frame = generate(500, 49, first_id=10_000_000)
    error_body(Client(small_app).upload("/api/v1/datasets", csv_bytes(frame)), 413)
    assert trained.raw.read_bytes() == before


# -- metrics and documentation -------------------------------------------------------------------

def test_metrics_count_predictions_by_version_and_path(client, record):
    before = prediction_count(client)
    response = client.post("/api/v1/predict", json={"records": [record] * 7})
    served_by = response.get_json()["served_by"]
    assert prediction_count(client) == before + 7
    samples = metric_samples(client, "opcon_predictions_total")
    ours = [s for s in samples if s.labels["model_version"] == "1"
            and s.labels["served_by"] == served_by]
    assert ours and sum(s.value for s in ours) >= 7
    durations = metric_samples(client, "flask_http_request_duration_seconds_count")
    assert any(s.labels.get("url_rule") == "/api/v1/predict" and s.labels.get("method") == "POST"
               for s in durations)


def test_two_apps_in_one_process_keep_their_own_metrics(client, trained, record):
    other = Client(create_app({"testing": True, "api_token": TOKEN, "state_dir": trained.state,
                               "project_dir": trained.path}))
    assert prediction_count(other) == 0
    before = prediction_count(client)
    assert other.post("/api/v1/predict", json={"records": [record] * 3}).status_code == 200
    assert prediction_count(other) == 3
    assert prediction_count(client) == before


def openapi_path(rule) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def test_openapi_documents_every_api_route(app, client):
    response = client.get("/openapi.json", auth=False)
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1")]
    assert rules
    for rule in rules:
        path = openapi_path(rule)
        assert path in spec["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in spec["paths"][path], (method, path)
    assert "bearer" in {k.lower() for k in spec["components"]["securitySchemes"]}


def test_openapi_says_which_routes_need_the_token(app, client):
    spec = client.get("/openapi.json", auth=False).get_json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security", spec.get("security", []))
            schemes = {name for requirement in security for name in requirement}
            if path.startswith("/api/v1/") and operation["x-permission"] != "public":
                assert "bearer" in schemes, (method, path)
            else:
                assert not schemes, (method, path)


def test_openapi_documents_422_as_the_error_body_it_sends(client):
    spec = client.get("/openapi.json", auth=False).get_json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            response = operation["responses"].get("422")
            if response is None:
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema.get("$ref", "").endswith("/ErrorBody"), (method, path, schema)


def test_docs_redirect_to_an_html_page(client):
    response = client.get("/docs", auth=False)
    assert response.status_code in (301, 302, 303, 307, 308)
    page = client.get(response.headers["Location"], auth=False)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "<html" in page.get_data(as_text=True).lower()


# -- models --------------------------------------------------------------------------------------

def test_models_list_the_champion_with_its_evidence(client, trained, model_name):
    body = client.get("/api/v1/models").get_json()
    assert body["name"] == model_name and body["champion"] == "1"
    versions = [v["version"] for v in body["versions"]]
    assert versions == sorted(versions, key=int, reverse=True) and versions[-1] == "1"
    first = body["versions"][-1]
    assert first["aliases"] == ["champion"]
    assert 0.0 <= first["metrics"]["test_pr_auc"] <= 1.0
    assert first["data_version"] == file_md5(trained.raw) == pointer_version(trained.raw)
    assert first["promotion"]["outcome"] == "promoted"
    assert first["threshold"] == pytest.approx(version_threshold(model_name, "1"))
    assert first["run_id"] == registry.champion(model_name).run_id
    assert first["emissions_kg_co2eq"] > 0


def test_model_versions_have_an_iso_creation_time(client):
    for version in client.get("/api/v1/models").get_json()["versions"]:
        assert isinstance(version["created"], str)
        assert datetime.fromisoformat(version["created"]).tzinfo is not None


def test_promote_the_champion_again_and_refusals(client, model_name):
    response = client.post("/api/v1/models/1/promote", json={})
    assert response.status_code == 200
    assert response.get_json() == {"name": model_name, "champion": "1"}

    body = error_body(client.post("/api/v1/models/99/promote", json={"reason": "no such"}), 404)
    assert fields(body) == {"version"}
    body = error_body(client.post("/api/v1/models/0/promote", json={}), 422)
    assert fields(body) == {"version"}
    body = error_body(client.post("/api/v1/models/1/promote", json={"reason": "x" * 501}), 422)
    assert fields(body) == {"reason"}
    error_body(client.post("/api/v1/models/rollback"), 409)
    assert str(registry.champion(model_name).version) == "1"
    assert client.get("/api/v1/models").get_json()["champion"] == "1"


def predicted_version(client: Client, record: dict) -> str:
    response = client.post("/api/v1/predict", json={"records": [record]})
    assert response.status_code == 200
    return response.get_json()["model"]["version"]


def test_promote_a_challenger_then_roll_back(client, trained, schema, model_name, record):
    trained.update_params({"train": {"hyperparameters": {"random_forest": {
        "n_estimators": 5, "max_depth": 3}}}})
    trained.train()
    assert trained.json("metrics/evaluate.json")["promoted"] is False

    listed = client.get("/api/v1/models").get_json()
    assert [v["version"] for v in listed["versions"]] == ["2", "1"]
    assert listed["champion"] == "1"
    assert listed["versions"][0]["aliases"] == ["challenger"]
    assert listed["versions"][0]["promotion"]["outcome"] == "kept as challenger"
    assert predicted_version(client, record) == "1"

    response = client.post("/api/v1/models/2/promote", json={"reason": "contract test"})
    assert response.status_code == 200
    assert response.get_json() == {"name": model_name, "champion": "2"}
    records = feature_records(schema, generate(20, 50))
    answered = client.post("/api/v1/predict", json={"records": records}).get_json()
    assert answered["model"]["version"] == "2"
    probabilities = check_prediction_response(answered, schema, model_name, "2", count=20,
                                              threshold=version_threshold(model_name, "2"))
    expected = expected_proba(f"models:/{model_name}/2", schema, records)
    assert np.abs(np.array(probabilities) - expected).max() <= PROBABILITY_TOLERANCE
    listed = client.get("/api/v1/models").get_json()
    assert listed["champion"] == "2"
    assert {v["version"]: v["aliases"] for v in listed["versions"]} == {"2": ["champion"], "1": []}
    assert listed["versions"][0]["promotion"]["reason"] == "contract test"
    assert client.get("/ready", auth=False).get_json()["champion"].endswith("version 2")

    response = client.post("/api/v1/models/rollback")
    assert response.status_code == 200
    assert response.get_json() == {"name": model_name, "champion": "1"}
    assert predicted_version(client, record) == "1"
    assert client.get("/api/v1/models").get_json()["champion"] == "1"
    assert client.get("/ready", auth=False).get_json()["champion"].endswith("version 1")
    error_body(client.post("/api/v1/models/rollback"), 409)
    assert predicted_version(client, record) == "1"


def test_the_champion_history_names_who_moved_it_and_when(client, model_name):
    periods = client.get("/api/v1/models/champion/history").get_json()["periods"]
    # the first champion came from `dvc repro`; then the promote-again, the promotion of 2 and the
    # rollback of the tests above, each by the service token, each period ending where the next begins
    assert [(p["version"], p["moved_by"], p["recorded"]) for p in periods] == [
        ("1", "pipeline", False), ("1", "service-token", True), ("2", "service-token", True),
        ("1", "service-token", True)]
    assert periods[2]["reason"] == "contract test" and periods[3]["reason"] == "rollback from 2"
    assert all(a["to"] == b["from"] for a, b in itertools.pairwise(periods)) and periods[-1]["to"] is None
    moves = client.get("/api/v1/audit", query_string={"action": "champion.move"}).get_json()["items"]
    assert [m["params"]["version"] for m in reversed(moves)] == ["1", "2", "1"]

    registry.client().set_registered_model_alias(model_name, registry.CHAMPION, "2")  # a side door
    try:
        latest = client.get("/api/v1/models/champion/history").get_json()["periods"][-1]
        assert (latest["version"], latest["recorded"]) == ("2", False)
        assert latest["moved_by"].startswith("outside the console")
        assert latest["from"] == periods[-1]["from"]  # known only to be after the last recorded move
    finally:
        registry.client().set_registered_model_alias(model_name, registry.CHAMPION, "1")


# -- feedback ------------------------------------------------------------------------------------

def test_feedback_for_logged_predictions(client, services, schema, record):
    target = schema.target
    other = next(c for c in target.classes if c != target.positive)
    request_id = client.post("/api/v1/predict", json={"records": [record, record]}).get_json()["request_id"]
    items = [{"request_id": request_id, "row": 0, "label": target.positive},
             {"request_id": request_id, "row": 1, "label": str(other)}]
    response = client.post("/api/v1/feedback", json={"items": items})
    assert response.status_code == 200 and response.get_json() == {"accepted": 2}
    stored = {(r["request_id"], r["row"]): r["label"] for r in feedback_labels(services.engine)}
    assert stored[(request_id, 0)] == target.positive and stored[(request_id, 1)] == other

    response = client.post("/api/v1/feedback",
                           json={"items": [{"request_id": request_id, "row": 0, "label": other}]})
    assert response.status_code == 200
    rows = [r for r in feedback_labels(services.engine) if r["request_id"] == request_id]
    assert len(rows) == 2 and {r["row"]: r["label"] for r in rows}[0] == other

    batch = client.upload("/api/v1/predict/batch", csv_bytes(generate(10, 51)))
    batch_id = batch.headers["X-Request-Id"]
    response = client.post("/api/v1/feedback",
                           json={"items": [{"request_id": batch_id, "row": 9, "label": other}]})
    assert response.status_code == 200, response.get_json()


def test_feedback_refusals_name_the_item(client, services, record):
    request_id = client.post("/api/v1/predict", json={"records": [record]}).get_json()["request_id"]
    stored_before = feedback_labels(services.engine)
    positive = services.params.schema.target.positive
    cases = [  # (items, status, fields named)
        ([{"request_id": request_id, "label": "not-a-class"}], 422, {"items[0].label"}),
        ([{"request_id": str(uuid.uuid4()), "label": positive}], 404, {"items[0].request_id"}),
        ([{"request_id": request_id, "row": 1, "label": positive}], 404, {"items[0].request_id"}),
        ([{"request_id": request_id, "label": positive},
          {"request_id": str(uuid.uuid4()), "label": positive}], 404, {"items[1].request_id"}),
        ([{"request_id": request_id, "row": -1, "label": positive}], 422, {"items[0].row"}),
        ([{"request_id": request_id, "label": positive, "x": 1}], 422, {"items[0].x"}),
        ([], 422, {"items"}),
    ]
    for items, status, expected in cases:
        body = error_body(client.post("/api/v1/feedback", json={"items": items}), status)
        assert fields(body) == expected, items
    assert feedback_labels(services.engine) == stored_before  # a refusal records no item


# -- jobs (no worker runs here) ------------------------------------------------------------------

JOB_FIELDS = {"id", "kind", "status", "params", "reason", "step", "progress", "created_at",
              "started_at", "finished_at", "error", "result", "log_tail", "cancel_requested",
              "requested_by"}


def test_jobs_single_flight_listing_and_cancel(client):
    response = client.post("/api/v1/jobs", json={"kind": "validate"})
    assert response.status_code == 202
    job = response.get_json()
    assert set(job) == JOB_FIELDS
    assert job["status"] == "queued" and job["kind"] == "validate" and job["progress"] == 0.0
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None

    again = client.post("/api/v1/jobs", json={"kind": "validate", "reason": "twice"})
    body = error_body(again, 409)
    assert body["job"]["id"] == job["id"] and body["job"]["status"] == "queued"

    listed = client.get("/api/v1/jobs?kind=validate").get_json()
    assert listed["total"] == 1 and [j["id"] for j in listed["items"]] == [job["id"]]
    assert listed["limit"] == 20 and listed["offset"] == 0

    shown = client.get(f"/api/v1/jobs/{job['id']}").get_json()
    assert set(shown) == JOB_FIELDS
    assert shown["status"] == "queued" and shown["step"] is None and shown["progress"] == 0.0
    assert shown["log_tail"] == ""

    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled" and cancelled.get_json()["cancel_requested"]
    assert cancelled.get_json()["finished_at"] is not None
    error_body(client.post(f"/api/v1/jobs/{job['id']}/cancel"), 409)

    second = client.post("/api/v1/jobs", json={"kind": "validate"})
    assert second.status_code == 202  # the cancel released the single-flight lock
    second = second.get_json()
    assert second["id"] != job["id"]

    page = client.get("/api/v1/jobs?kind=validate&limit=1").get_json()
    assert page["total"] == 2 and [j["id"] for j in page["items"]] == [second["id"]]
    page = client.get("/api/v1/jobs?kind=validate&limit=1&offset=1").get_json()
    assert page["total"] == 2 and [j["id"] for j in page["items"]] == [job["id"]]
    page = client.get("/api/v1/jobs?kind=validate&limit=1&offset=2").get_json()
    assert page["total"] == 2 and page["items"] == []
    queued = client.get("/api/v1/jobs?kind=validate&status=queued").get_json()
    assert [j["id"] for j in queued["items"]] == [second["id"]]
    assert client.post(f"/api/v1/jobs/{second['id']}/cancel").status_code == 200


def test_a_job_as_the_worker_reports_it(client, services):
    job = client.post("/api/v1/jobs", json={"kind": "data_pull", "reason": "contract"}).get_json()
    store = services.jobs
    assert store.start(job["id"], "test-worker:1")
    store.update(job["id"], step="pull", progress=0.25)
    store.append_log(job["id"], "x" * 5_000 + "LAST LINE\n")
    shown = client.get(f"/api/v1/jobs/{job['id']}").get_json()
    assert set(shown) == JOB_FIELDS  # no worker name or heartbeat
    assert shown["status"] == "running" and shown["step"] == "pull" and shown["progress"] == 0.25
    assert shown["log_tail"].endswith("LAST LINE\n") and len(shown["log_tail"]) == 4_000
    assert shown["reason"] == "contract"
    whole = client.get(f"/api/v1/jobs/{job['id']}/log")
    assert whole.status_code == 200 and whole.mimetype == "text/plain"
    assert whole.get_data(as_text=True) == "x" * 5_000 + "LAST LINE\n"

    cancelling = client.post(f"/api/v1/jobs/{job['id']}/cancel").get_json()
    assert cancelling["status"] == "running" and cancelling["cancel_requested"] is True
    error_body(client.post("/api/v1/jobs", json={"kind": "data_pull"}), 409)

    store.finish(job["id"], "succeeded", result={"data_version": "x"})
    shown = client.get(f"/api/v1/jobs/{job['id']}").get_json()
    assert shown["status"] == "succeeded" and shown["progress"] == 1.0
    assert shown["result"] == {"data_version": "x"}
    error_body(client.post(f"/api/v1/jobs/{job['id']}/cancel"), 409)
    follow_up = client.post("/api/v1/jobs", json={"kind": "data_pull"})
    assert follow_up.status_code == 202
    assert client.post(f"/api/v1/jobs/{follow_up.get_json()['id']}/cancel").status_code == 200


def test_job_refusals(client):
    unknown = str(uuid.uuid4())
    assert fields(error_body(client.get(f"/api/v1/jobs/{unknown}"), 404)) == {"job_id"}
    assert fields(error_body(client.post(f"/api/v1/jobs/{unknown}/cancel"), 404)) == {"job_id"}
    assert fields(error_body(client.get(f"/api/v1/jobs/{unknown}/log"), 404)) == {"job_id"}
    for query, field in (("limit=0", "limit"), ("limit=201", "limit"), ("limit=abc", "limit"),
                         ("offset=-1", "offset"), ("kind=bogus", "kind"), ("status=bogus", "status"),
                         ("colour=red", "colour")):
        assert fields(error_body(client.get(f"/api/v1/jobs?{query}"), 422)) == {field}, query
    for payload, field in (({"kind": "bogus"}, "kind"), ({}, "kind"),
                           ({"kind": "validate", "extra": 1}, "extra"),
                           ({"kind": "validate", "reason": "x" * 501}, "reason"),
                           ({"kind": "validate", "params": {"stage": "train"}}, "params")):
        assert fields(error_body(client.post("/api/v1/jobs", json=payload), 422)) == {field}
    error_body(client.post("/api/v1/jobs", data="nope", content_type="application/json"), 422)
    assert client.get("/api/v1/jobs?kind=validate&status=queued").get_json()["total"] == 0


# -- datasets ------------------------------------------------------------------------------------

def data_state(trained) -> tuple[bytes, bytes]:
    """The raw file's bytes and its DVC pointer's."""
    return trained.raw.read_bytes(), Path(f"{trained.raw}.dvc").read_bytes()


def next_id(trained, schema) -> int:
    return int(pd.read_csv(trained.raw)[schema.id_columns[0]].max()) + 1


def test_datasets_list_the_current_version(client, trained, schema):
    body = client.get("/api/v1/datasets").get_json()
    md5 = file_md5(trained.raw)
    assert body["current"] == md5
    current = next(v for v in body["versions"] if v["md5"] == md5)
    raw = pd.read_csv(trained.raw)
    assert current["rows"] == len(raw)
    assert current["path"] == str(trained.raw.relative_to(trained.path))
    assert set(current["class_balance"]) <= {str(c) for c in schema.target.classes}
    assert math.isclose(sum(current["class_balance"].values()), 1.0, abs_tol=1e-5)
    observed = raw[schema.target.name].value_counts(normalize=True)
    assert current["class_balance"] == pytest.approx({str(k): v for k, v in observed.items()}, abs=1e-5)
    assert current["validation"]["success"] is True
    assert "pointer" not in current


def upload_jobs(client) -> int:
    return client.get("/api/v1/jobs?kind=dataset_upload").get_json()["total"]


def test_an_invalid_batch_changes_nothing(client, trained, schema):
    before_files = data_state(trained)
    before_listing = client.get("/api/v1/datasets").get_json()
    before_jobs = upload_jobs(client)

    feature = next(f for f in numeric_features(schema) if f.max is not None)
    out_of_range = generate(200, 52, first_id=next_id(trained, schema))
    out_of_range[feature.name] = out_of_range[feature.name].astype(float)
    out_of_range.loc[5, feature.name] = feature.max + 1
    body = error_body(client.upload("/api/v1/datasets", csv_bytes(out_of_range)), 422)
    assert feature.name in fields(body)
    assert "nothing was changed" in body["error"]

    duplicates = generate(200, 53, first_id=1)  # IDs the data has already
    body = error_body(client.upload("/api/v1/datasets", csv_bytes(duplicates)), 422)
    assert fields(body) & set(schema.id_columns)
    assert all(d["problem"] for d in body["details"])

    missing = generate(50, 54, first_id=next_id(trained, schema)).drop(columns=schema.target.name)
    body = error_body(client.upload("/api/v1/datasets", csv_bytes(missing)), 422)
    assert schema.target.name in fields(body)

    for content in (b"", bytes(range(256)) * 4, b"just,a,header\n"):
        error_body(client.upload("/api/v1/datasets", content), 422)
    assert fields(error_body(client.post("/api/v1/datasets", data={},
                                         content_type="multipart/form-data"), 422)) == {"file"}

    assert data_state(trained) == before_files
    assert client.get("/api/v1/datasets").get_json() == before_listing
    assert upload_jobs(client) == before_jobs  # refused at once: no job, and no batch kept
    assert not list((trained.state / "uploads").glob("*"))


def test_dataset_timestamps_carry_their_offset(client):
    for version in client.get("/api/v1/datasets").get_json()["versions"]:
        assert datetime.fromisoformat(version["created_at"]).tzinfo is not None


def test_a_valid_batch_becomes_the_next_data_version(client, services, trained, schema):
    old_md5 = file_md5(trained.raw)
    old_rows = len(pd.read_csv(trained.raw))
    before_files = data_state(trained)
    batch = generate(200, 55, first_id=next_id(trained, schema))
    response = client.upload("/api/v1/datasets", csv_bytes(batch), filename="shift-3.csv")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert set(job) == JOB_FIELDS
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["kind"], job["status"]) == ("dataset_upload", "queued")
    assert job["params"] == {"file_name": "shift-3.csv", "batch_rows": 200}
    # validated, kept in the state dir for its job; the data is as it was until the job runs
    waiting = trained.state / "uploads" / f"{job['id']}.csv"
    assert pd.read_csv(waiting)[schema.id_columns[0]].tolist() == batch[schema.id_columns[0]].tolist()
    assert data_state(trained) == before_files
    assert client.get("/api/v1/datasets").get_json()["current"] == old_md5

    finished = run_job_here(services, job["id"])
    assert finished["status"] == "succeeded", finished["log"][-3000:]
    assert not waiting.exists()
    new_md5 = file_md5(trained.raw)
    assert finished["result"]["data_version"] == new_md5 != old_md5
    assert finished["result"]["rows"] == old_rows + 200

    raw = pd.read_csv(trained.raw)
    assert len(raw) == old_rows + 200
    assert raw[schema.id_columns[0]].tail(200).tolist() == batch[schema.id_columns[0]].tolist()
    assert pointer_version(trained.raw) == new_md5
    pointer = f"{trained.raw.relative_to(trained.path)}.dvc"
    assert json.loads(trained.dvc("status", "--json", pointer)) == {}
    assert json.loads(trained.dvc("status", "--cloud", "--json", pointer)) == {}
    remote = trained.state / "dvc-remote" / "files" / "md5" / new_md5[:2] / new_md5[2:]
    assert remote.read_bytes() == trained.raw.read_bytes()

    listing = client.get("/api/v1/datasets").get_json()
    assert listing["current"] == new_md5
    assert [v["md5"] for v in listing["versions"]][:2] == [new_md5, old_md5]
    created = listing["versions"][0]
    assert created["rows"] == old_rows + 200 and created["validation"]["success"] is True
    assert "shift-3.csv" in created["source"] and "pointer" not in created
    assert math.isclose(sum(created["class_balance"].values()), 1.0, abs_tol=1e-5)
