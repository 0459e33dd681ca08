"""POST /predict?explain=true: each record's SHAP contributions towards the class it was given, from
the serving version's own model, adding up to that model's output."""

from __future__ import annotations

import io

import mlflow
import pandas as pd
import pytest

from ml.generate import generate

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def records(trained, client) -> list[dict]:
    return generate(40, 17, first_id=90_001)[trained.params.schema.feature_names].to_dict("records")


def test_contributions_add_up_to_the_served_models_output(trained, client, records):
    answer = client.post("/api/v1/predict?explain=true", json={"records": records})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    body = answer.get_json()
    assert body["explained_by"] == {"name": body["model"]["name"], "version": body["model"]["version"],
                                    "method": "shap.TreeExplainer"}
    schema = trained.params.schema
    model = mlflow.sklearn.load_model(f"models:/{body['model']['name']}/{body['model']['version']}")
    proba = model.predict_proba(pd.DataFrame(records)[schema.feature_names])
    classes = model.classes_.tolist()
    for i, prediction in enumerate(body["predictions"]):
        explanation = prediction["explanation"]
        assert explanation["explained_class"] == prediction["label"]
        assert explanation["output"] == "probability"
        assert set(explanation["contributions"]) == set(schema.feature_names)
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert total == pytest.approx(explanation["value"], abs=1e-9)
        assert abs(total - proba[i, classes.index(prediction["label"])]) < 1e-6


def test_the_reasons_are_the_strongest_contributions_in_words(trained, client, records):
    body = client.post("/api/v1/predict?explain=true", json={"records": records[:1]}).get_json()
    prediction = body["predictions"][0]
    reasons, contributions = prediction["explanation"]["reasons"], prediction["explanation"]["contributions"]
    strongest = sorted(contributions, key=lambda f: -abs(contributions[f]))[:5]
    assert [r["feature"] for r in reasons] == strongest
    first = reasons[0]
    feature = next(f for f in trained.params.schema.features if f.name == first["feature"])
    direction = "pushed towards" if first["contribution"] > 0 else "pulled away from"
    assert first["text"].startswith(f"{feature.name} = ") and direction in first["text"]
    assert first["text"].endswith(f"“{prediction['label_text']}” most")
    assert first["value"] == records[0][feature.name]


def test_without_explain_the_answer_is_unchanged(client, records):
    plain = client.post("/api/v1/predict", json={"records": records[:3]}).get_json()
    assert "explained_by" not in plain and all("explanation" not in p for p in plain["predictions"])
    explained = client.post("/api/v1/predict?explain=true", json={"records": records[:3]}).get_json()
    for a, b in zip(plain["predictions"], explained["predictions"], strict=True):
        assert a["label"] == b["label"] and a["probability"] == pytest.approx(b["probability"], abs=1e-12)


def test_a_bad_explain_value_is_refused(client, records):
    answer = client.post("/api/v1/predict?explain=maybe", json={"records": records[:1]})
    assert answer.status_code == 422 and "explain" in answer.get_data(as_text=True)


def test_a_batch_gets_its_top_three_reasons_per_row(trained, client):
    schema = trained.params.schema
    frame = generate(300, 18, first_id=95_001)
    answer = client.upload("/api/v1/predict/batch?explain=3", frame.to_csv(index=False).encode())
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    scored = pd.read_csv(io.BytesIO(answer.data))
    assert len(scored) == 300 and scored["udi"].tolist() == frame["udi"].tolist()
    reasons = scored[["prediction_reason_1", "prediction_reason_2", "prediction_reason_3"]]
    assert reasons.notna().all().all()
    assert "prediction_reason_4" not in scored.columns
    first = client.post("/api/v1/predict?explain=true",
                        json={"records": frame[schema.feature_names].head(1).to_dict("records")}).get_json()
    top = first["predictions"][0]["explanation"]["reasons"]
    assert [r.split(" = ")[0] for r in reasons.iloc[0]] == [r["feature"] for r in top[:3]]
    assert reasons.iloc[0, 0].endswith(f"({top[0]['contribution']:+.3f})")


def test_a_batch_without_explain_has_no_reason_columns_and_a_bad_count_is_refused(client):
    content = generate(20, 19, first_id=96_001).to_csv(index=False).encode()
    plain = client.upload("/api/v1/predict/batch", content)
    assert plain.status_code == 200 and b"prediction_reason_1" not in plain.data.split(b"\n", 1)[0]
    refused = client.upload("/api/v1/predict/batch?explain=11", content)
    assert refused.status_code == 422 and "explain" in refused.get_data(as_text=True)
