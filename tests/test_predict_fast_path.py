"""POST /api/v1/predict's fast path (control_api.predict_fast_path) answers what it takes as the Flask
route does, and hands everything else to the route untouched."""

from __future__ import annotations

import contextlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ml.generate import generate
from tests.helpers import Client

pytestmark = pytest.mark.pipeline


@contextlib.contextmanager
def route_only(app):
    """The app without its fast path: every request through Flask and the route."""
    fast = app.wsgi_app
    app.wsgi_app = fast.app
    try:
        yield
    finally:
        app.wsgi_app = fast


@pytest.fixture
def route_calls(app, monkeypatch) -> list:
    """The requests the Flask route itself answered."""
    calls, view = [], app.view_functions["predict.predict"]

    def counted(*args, **kwargs):
        calls.append(1)
        return view(*args, **kwargs)

    monkeypatch.setitem(app.view_functions, "predict.predict", counted)
    return calls


@pytest.fixture(scope="module")
def records(trained, client) -> list[dict]:
    """Records to score; the first prediction, answered by the route, has loaded the champion."""
    rows = generate(5, 23, first_id=70_001)[trained.params.schema.feature_names].to_dict("records")
    assert client.post("/api/v1/predict", json={"records": rows[:1]}).status_code == 200
    return rows


@pytest.fixture(scope="module")
def viewer(client) -> str:
    """An API token of a role that may read but not predict."""
    client.post("/api/v1/users", json={"username": "fast-path-viewer", "role": "viewer",
                                       "kind": "service"})
    made = client.post("/api/v1/tokens", json={"owner": "fast-path-viewer", "name": "t", "role": "viewer"})
    assert made.status_code == 201, made.get_data(as_text=True)
    return made.get_json()["token"]


def requests_counted(client: Client, status: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        if family.name == "flask_http_request_duration_seconds":
            return sum(s.value for s in family.samples if s.name.endswith("_count")
                       and s.labels == {"method": "POST", "url_rule": "/api/v1/predict", "status": status})
    return 0.0


def without_ids(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "request_id"}


def test_a_plain_prediction_is_answered_by_the_fast_path_as_by_the_route(app, client, records,
                                                                        route_calls):
    counted = requests_counted(client, "200")
    fast = client.post("/api/v1/predict", json={"records": records}, headers={"X-Request-ID": "job-42.a"})
    assert route_calls == []  # Flask's route did not see it
    with route_only(app):
        routed = client.post("/api/v1/predict", json={"records": records},
                             headers={"X-Request-ID": "job-42.a"})
    assert route_calls == [1]
    assert fast.status_code == routed.status_code == 200
    assert fast.content_type == routed.content_type == "application/json"
    assert fast.headers["X-Request-ID"] == routed.headers["X-Request-ID"] == "job-42.a"
    assert without_ids(fast.get_json()) == without_ids(routed.get_json())
    assert len(fast.get_json()["predictions"]) == len(records)
    logged = app.extensions["opcon"].predictions.logged_rows(
        [fast.get_json()["request_id"], routed.get_json()["request_id"]])
    assert sorted(logged.values()) == [len(records), len(records)]  # both logged every record
    assert requests_counted(client, "200") == counted + 2  # both in the request metrics


def test_a_request_id_the_api_does_not_take_is_replaced_on_both_paths(app, client, records):
    fast = client.post("/api/v1/predict", json={"records": records[:1]},
                       headers={"X-Request-ID": "bad id with spaces"})
    with route_only(app):
        routed = client.post("/api/v1/predict", json={"records": records[:1]},
                             headers={"X-Request-ID": "bad id with spaces"})
    for answer in (fast, routed):
        assert answer.status_code == 200
        assert len(answer.headers["X-Request-ID"]) == 32 and " " not in answer.headers["X-Request-ID"]


CASES = {  # what the fast path leaves to the route: (query, request keyword arguments, auth)
    "wrong token": ("", {"json": "records"}, "Bearer not-a-token"),
    "no credentials": ("", {"json": "records"}, None),
    "a role that may not predict": ("", {"json": "records"}, "viewer"),
    "not JSON": ("", {"data": b"{records", "content_type": "application/json"}, "service"),
    "a JSON array": ("", {"data": b"[1, 2]", "content_type": "application/json"}, "service"),
    "text, not JSON": ("", {"data": b"records", "content_type": "text/plain"}, "service"),
    "a value outside its range": ("", {"json": "too hot"}, "service"),
    "an unknown field": ("", {"json": "extra"}, "service"),
    "no records": ("", {"json": {"records": []}}, "service"),
    "explain=true": ("?explain=true", {"json": "records"}, "service"),
    "an unknown parameter": ("?explain=maybe", {"json": "records"}, "service"),
}


def _request(case: str, records: list[dict], viewer: str, token: str) -> tuple[str, dict, dict]:
    query, kwargs, auth = CASES[case]
    kwargs = dict(kwargs)
    first = dict(records[0])
    bodies = {"records": {"records": records[:2]}, "too hot": {"records": [{**first, "torque_nm": 1e9}]},
              "extra": {"records": [{**first, "colour": "red"}]}}
    if isinstance(kwargs.get("json"), str):
        kwargs["json"] = bodies[kwargs["json"]]
    headers = {} if auth is None else {"Authorization": {"viewer": f"Bearer {viewer}",
                                                          "service": f"Bearer {token}"}.get(auth, auth)}
    return f"/api/v1/predict{query}", kwargs, headers


@pytest.fixture(scope="module")
def records_and_viewer(records, viewer) -> tuple[list[dict], str]:
    return records, viewer


@pytest.mark.parametrize("case", list(CASES))
def test_what_the_fast_path_does_not_take_is_answered_by_the_route(app, client, records_and_viewer,
                                                                  route_calls, case):
    path, kwargs, headers = _request(case, *records_and_viewer, client.token)
    fast = client.post(path, auth=False, headers=headers, **kwargs)
    reached_route = len(route_calls)
    with route_only(app):
        routed = client.post(path, auth=False, headers=headers, **kwargs)
    assert fast.status_code == routed.status_code, fast.get_data(as_text=True)[:300]
    if fast.status_code == 200:  # explain=true: the route answered it, explanations and all
        assert reached_route == 1
        assert without_ids(fast.get_json()) == without_ids(routed.get_json())
        assert "explained_by" in fast.get_json()
    else:
        assert fast.status_code in (401, 403, 422)
        assert fast.get_json() == routed.get_json()  # the same error, naming the same field


def test_a_refusal_the_fast_path_passed_on_is_audited(client, records, viewer):
    def refusals() -> int:
        page = client.get("/api/v1/audit?action=predict.predict&actor=fast-path-viewer&limit=1000")
        return sum(1 for event in page.get_json()["items"] if event["outcome"] == "forbidden")

    before = refusals()
    answer = client.post("/api/v1/predict", auth=False, json={"records": records[:1]},
                         headers={"Authorization": f"Bearer {viewer}"})
    assert answer.status_code == 403
    assert refusals() == before + 1


def test_a_switch_still_loading_leaves_the_request_to_the_route(app, client, records, route_calls):
    """The fast path never answers with the version a due switch replaces: it leaves the request to
    the route, which waits for the new version (or answers 503)."""
    from control_api.serving import Switch

    champion = app.extensions["opcon"].champion
    serving = champion.ready()
    assert serving is not None
    loading, waited = Switch("999", at=0.0), champion.wait_seconds  # due since the epoch, not loaded
    # a switch no recorded move backs: the request would read the moves and replace it
    champion._next, moves, champion.moves = loading, champion.moves, None
    try:
        assert champion.ready() is None
        champion.wait_seconds = 0.01
        answer = client.post("/api/v1/predict", json={"records": records[:1]})
        assert answer.status_code == 503  # the route waited for version 999, then refused
        assert route_calls == [1]
        loading.loaded(serving)  # loaded now: the switch is taken without a wait
        assert champion.ready() is serving and champion._next is None
    finally:
        champion._next, champion.wait_seconds, champion.moves = None, waited, moves
    assert client.post("/api/v1/predict", json={"records": records[:1]}).status_code == 200
