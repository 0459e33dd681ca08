"""Errors say exactly what went wrong, in the API's JSON error format, and quote little of what was
sent; what the spec declares a route takes is what it takes. Through Flask's test client, on a
small untrained project (conftest's `apps_project`)."""

from __future__ import annotations

import json
import uuid

import jsonschema_rs
import pandas as pd
import pytest

from control_api import create_app
from control_api.routes.feedback import labels as feedback_labels
from tests.helpers import TOKEN, Client, error_body, fields, typical_record

LONG = 10_000  # characters of a bad value
QUOTED = 200  # at most this many of them come back


@pytest.fixture(scope="module")
def app(apps_project):
    """The API on a small untrained project: every error here comes before a model is needed."""
    return create_app({"testing": True, "api_token": TOKEN, "state_dir": apps_project.state,
                       "project_dir": apps_project.path})


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app)


@pytest.fixture(scope="module")
def spec(client) -> dict:
    return client.get("/openapi.json", auth=False).get_json()


@pytest.fixture(scope="module")
def record(apps_project) -> dict:
    return typical_record(apps_project.params.schema)


@pytest.fixture(scope="module")
def request_id(app, record) -> str:
    """A prediction of one record (row 0) in the prediction log, to give feedback for."""
    request_id = str(uuid.uuid4())
    outputs = {"label": 0, "label_text": "0", "probability": 0.1, "threshold": 0.5}
    app.extensions["opcon"].predictions.append(request_id, "1", "sklearn", [{**record, **outputs}])
    return request_id


def concrete(path: str) -> str:
    """A spec path with made-up values in its parameters."""
    return path.replace("{version}", "1").replace("{username}", "someone")


def json_body_operations(spec: dict) -> list[tuple[str, str]]:
    return [(method, concrete(path)) for path, operations in spec["paths"].items()
            for method, operation in operations.items()
            if "application/json" in operation.get("requestBody", {}).get("content", {})]


# -- 405 -----------------------------------------------------------------------------------------

def test_a_method_a_route_does_not_take_is_405_naming_the_ones_it_does(app, client):
    cases = [("DELETE", "/api/v1/models"), ("GET", "/api/v1/predict"), ("PUT", "/api/v1/users"),
             ("POST", "/health"), ("TRACE", "/api/v1/jobs/kinds")]
    for method, path in cases:
        routed = set().union(*(r.methods for r in app.url_map.iter_rules() if r.rule == path))
        response = client.open(method, path)
        body = error_body(response, 405)
        allowed = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
        assert allowed == routed, (method, path, response.headers)
        assert fields(body) == {"method"} and all(m in body["details"][0]["problem"] for m in allowed)


# -- bodies that are not a JSON object ------------------------------------------------------------

def test_a_body_that_is_not_json_is_refused_saying_so(spec, client):
    operations = json_body_operations(spec)
    assert len(operations) >= 8, operations
    not_json = [{"data": "{records: oops", "content_type": "application/json"},
                {"data": "", "content_type": "application/json"},
                {"data": "[" * 100_000, "content_type": "application/json"},
                {"data": b"\xff\xfe{}", "content_type": "application/json"},
                {"data": '{"records": []}', "content_type": "text/plain"},
                {"data": {"records": "x"}}]  # a form
    for method, path in operations:
        for kwargs in not_json:
            body = error_body(client.open(method.upper(), path, **kwargs), 422)
            assert body["error"] == "request body is not valid JSON", (method, path, kwargs, body)
            assert fields(body) == {"body"} and body["details"][0]["problem"]


def test_json_that_is_not_an_object_is_refused_saying_what_it_is(client, record):
    cases = {"an array": [record], "a number": 42, "null": None, "a boolean": True,
             # a string holding a whole valid request is still a string
             "a string": json.dumps({"records": [record]})}
    for kind, value in cases.items():
        body = error_body(client.post("/api/v1/predict", data=json.dumps(value),
                                      content_type="application/json"), 422)
        assert body["error"] == "request body must be a JSON object", kind
        assert body["details"] == [{"field": "body", "problem": f"got {kind}"}]


# -- how much of a bad value comes back -------------------------------------------------------------

def longest_run(text: str, char: str) -> int:
    longest = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        longest = max(longest, run)
    return longest


def test_a_long_bad_value_is_quoted_at_most_200_characters(client, apps_project, record, request_id):
    long = "x" * LONG
    schema = apps_project.params.schema
    category = next(f.name for f in schema.features if f.type == "category")
    header = pd.read_csv(apps_project.raw, nrows=0).columns.tolist()
    batch = pd.read_csv(apps_project.raw, nrows=3).rename(columns={header[-1]: long})
    refused = {
        "an unknown field": client.post("/api/v1/predict", json={"records": [{**record, long: 1}]}),
        "an unknown top-level field": client.post("/api/v1/predict",
                                                  json={"records": [record], long: 1}),
        "a bad category": client.post("/api/v1/predict",
                                      json={"records": [{**record, category: long}]}),
        "a bad label": client.post("/api/v1/feedback", json={"items": [
            {"request_id": request_id, "label": long}]}),
        "an unknown query parameter": client.get(f"/api/v1/jobs?{long}=1"),
        "a bad query value": client.get(f"/api/v1/jobs?kind={long}"),
        "a bad column name": client.upload("/api/v1/datasets",
                                           batch.to_csv(index=False).encode()),
    }
    for case, response in refused.items():
        error_body(response, 422)
        quoted = longest_run(response.get_data(as_text=True), "x")
        assert 20 <= quoted <= QUOTED, (case, quoted)


# -- feedback labels: the declared type is the accepted one ---------------------------------------

def stored_label(app, request_id: str):
    rows = [r for r in feedback_labels(app.extensions["opcon"].engine)
            if r["request_id"] == request_id and r["row"] == 0]
    return rows[0]["label"] if rows else None


def test_feedback_takes_exactly_the_labels_the_spec_declares(spec, app, client, apps_project, request_id):
    target = apps_project.params.schema.target
    declared = spec["components"]["schemas"]["FeedbackItem"]["properties"]["label"]
    validator = jsonschema_rs.validator_for(declared)
    classes = list(target.classes)
    numbers = [c for c in classes if isinstance(c, int | float) and not isinstance(c, bool)]
    candidates = [*classes, *(str(c) for c in classes), *(float(c) for c in numbers),
                  *(c + 0.5 for c in numbers), True, False, None, "1.0", " 1", "yes", "",
                  [classes[0]], {"label": classes[0]}]
    seen = {True: 0, False: 0}
    for label in candidates:
        response = client.post("/api/v1/feedback",
                               json={"items": [{"request_id": request_id, "row": 0, "label": label}]})
        accepted = validator.is_valid(label)
        seen[accepted] += 1
        if accepted:
            assert response.status_code == 200, (label, response.get_json())
            expected = next(c for c in classes if str(c) == label or (not isinstance(label, str)
                                                                         and label == c))
            assert stored_label(app, request_id) == expected, label
        else:
            assert fields(error_body(response, 422)) == {"items[0].label"}, label
    assert seen[True] >= 2 * len(classes) and seen[False] >= 10, seen


def test_a_json_body_is_read_as_json_types(client, request_id, apps_project):
    positive = apps_project.params.schema.target.positive
    for row in ("0", 0.5, True, None):
        item = {"request_id": request_id, "row": row, "label": positive}
        body = error_body(client.post("/api/v1/feedback", json={"items": [item]}), 422)
        assert fields(body) == {"items[0].row"}, row


def test_feedback_for_a_prediction_that_was_never_logged_is_404(client, request_id, apps_project):
    positive = apps_project.params.schema.target.positive
    for item in ({"request_id": "never-logged", "label": positive},
                 {"request_id": request_id, "row": 1, "label": positive}):
        body = error_body(client.post("/api/v1/feedback", json={"items": [item]}), 404)
        assert fields(body) == {"items[0].request_id"}
