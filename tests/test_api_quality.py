"""GET /quality: per window the served model's estimated quality (no labels needed) and the realised
quality on the rows with feedback, which late labels fill in."""

from __future__ import annotations

import pytest

from ml.generate import generate

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def served(trained, client):
    """400 held-out records in 4 requests, and their true outcomes."""
    schema = trained.params.schema
    frame = generate(400, 31, first_id=70_001)
    answers = []
    for part in range(4):
        chunk = frame.iloc[part * 100:(part + 1) * 100]
        records = chunk[schema.feature_names].to_dict("records")
        answer = client.post("/api/v1/predict", json={"records": records})
        assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
        answers.append(answer.get_json())
    return answers, frame[schema.target.name].tolist()


def current_window(client) -> dict:
    body = client.get("/api/v1/quality?window_minutes=60&windows=3").get_json()
    assert len(body["windows"]) == 3 and [w["rows"] for w in body["windows"][:2]] == [0, 0]
    return body


def test_the_window_has_an_estimate_with_its_band_and_the_training_figure(trained, client, served):
    body = current_window(client)
    window = body["windows"][-1]
    assert window["rows"] == window["estimated_rows"] == 400 and window["model_versions"] == {"1": 400}
    for metric in ("roc_auc", "f1", "accuracy"):
        figure = window["estimated"][metric]
        assert figure["band"][0] <= figure["value"] <= figure["band"][1]
    assert body["champion"]["version"] == "1" and 0.5 < body["champion"]["at_training"]["roc_auc"] <= 1
    assert body["performance_floor"] == trained.params.monitoring.performance_floor
    assert window["labels"] == 0 and window["realised"] is None


def test_late_labels_fill_in_the_window_they_belong_to(client, served):
    answers, truth = served
    items = [{"request_id": a["request_id"], "row": row, "label": truth[part * 100 + row]}
             for part, a in enumerate(answers[:2]) for row in range(100)]
    assert client.post("/api/v1/feedback", json={"items": items}).status_code == 200
    window = current_window(client)["windows"][-1]
    assert window["labels"] == 200
    given = [p["label"] for a in answers[:2] for p in a["predictions"]]
    right = sum(str(g) == str(t) for g, t in zip(given, truth[:200], strict=True))
    assert window["realised"]["accuracy"] == pytest.approx(right / 200)
    assert set(window["realised"]) == {"accuracy", "f1", "roc_auc"}


def test_the_window_query_is_checked(client):
    answer = client.get("/api/v1/quality?windows=0")
    assert answer.status_code == 422 and "windows" in answer.get_data(as_text=True)
