"""Drift reports end to end: predictions through the real API (gunicorn, 2 workers) land in the
prediction log, job workers compare a window with the champion's training split (Evidently), and
the reports come back through the API. Runs in file order: each test adds reports to the same log.

The unshifted window is the project's held-out rows (validation and test splits); the shifted one is
the same processes generated again with hotter air and more torque (`ml.generate --air-shift
--torque-shift`), so the only difference is the shift. No feature is named here.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from ml import generate
from tests.helpers import build_project
from tests.live import running, wait_until

pytestmark = pytest.mark.live

WINDOW = 700  # held-out rows of a 2,000-row project (validation + test hold about 800)
REPORT_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")


def records(schema, frame: pd.DataFrame) -> list[dict]:
    return [{f.name: str(row[f.name]) if f.type == "category" else float(row[f.name])
             for f in schema.features} for row in frame[schema.feature_names].to_dict(orient="records")]


@pytest.fixture(scope="module")
def live(module_state):
    project = build_project(module_state, rows=2000)
    project.train()
    with running(project, {"OPCON_DRIFT_INTERVAL_MINUTES": "0", "OPCON_DRIFT_RETRAIN_AFTER": "2",
                           "OPCON_METRICS_CACHE_SECONDS": "0"}) as services:
        yield services


@pytest.fixture(scope="module")
def held_out(live) -> pd.DataFrame:
    prepared = live.project.path / "data" / "prepared"
    frame = pd.concat([pd.read_parquet(prepared / f"{name}.parquet") for name in ("validation", "test")],
                      ignore_index=True)
    assert len(frame) >= WINDOW
    return frame.sample(WINDOW, random_state=0).reset_index(drop=True)  # rows from all over the time line


@pytest.fixture(scope="module")
def shifted(live, held_out, tmp_path_factory) -> pd.DataFrame:
    """The held-out processes again, 5 K hotter and with 8 Nm more torque."""
    params = live.project.params
    out = tmp_path_factory.mktemp("shifted") / "hot.csv"
    generator = params.dataset.generator
    generate.main(["--rows", str(generator.rows), "--seed", str(generator.seed), "--air-shift", "5",
                   "--torque-shift", "8", "--out", str(out)])
    frame = pd.read_csv(out, dtype={name: str for name in params.schema.categorical})
    key = params.schema.id_columns[0]
    return frame[frame[key].isin(held_out[key])].reset_index(drop=True)


def predict(live, frame: pd.DataFrame) -> str:
    response = live.post("/api/v1/predict", json={"records": records(live.project.params.schema, frame)})
    assert response.status_code == 200, response.text
    return response.json()["request_id"]


def drift_report(live, params: dict) -> tuple[dict, dict]:
    started = live.post("/api/v1/jobs", json={"kind": "drift_report", "params": params})
    assert started.status_code == 202, started.text
    job = live.wait_job(started.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job["log_tail"]
    report = live.get(f"/api/v1/reports/{job['result']['report_id']}")
    assert report.status_code == 200, report.text
    return job, report.json()


def test_drift_params_are_checked_and_named(live):
    for params, field in (({"last_rows": 0}, "params.last_rows"), ({"last_rows": "many"}, "params.last_rows"),
                          ({"since": "yesterday"}, "params.since"), ({"colour": "red"}, "params.colour"),
                          ({"last_rows": 5, "since": "2024-01-01T00:00:00Z"}, "params"),
                          ({"until": "2024-01-01T00:00:00Z"}, "params"),
                          ({"since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "params")):
        response = live.post("/api/v1/jobs", json={"kind": "drift_report", "params": params})
        assert response.status_code == 422, (params, response.text)
        assert {d["field"] for d in response.json()["details"]} == {field}, params
    other = live.post("/api/v1/jobs", json={"kind": "validate", "params": {"last_rows": 5}})
    assert other.status_code == 422 and other.json()["details"][0]["field"] == "params"


def test_a_window_without_enough_predictions_fails_and_says_why(live):
    job = live.post("/api/v1/jobs", json={"kind": "drift_report", "params": {"last_rows": 10}}).json()
    job = live.wait_job(job["id"], timeout=60)
    assert job["status"] == "failed" and "at least" in job["error"]


def test_unshifted_held_out_rows_show_no_drift(live, held_out):
    predict(live, held_out)
    job, report = drift_report(live, {"last_rows": WINDOW})
    schema = live.project.params.schema
    assert report["dataset_drift"] is False and report["drifted_columns"] == []
    assert [c["name"] for c in report["columns"]] == schema.feature_names
    assert all(0 <= c["statistic"] < c["threshold"] for c in report["columns"])
    assert report["prediction_drift"]["drifted"] is False
    assert report["quality"] is None  # no feedback yet
    assert report["window"]["rows"] == WINDOW and report["window"]["model_versions"] == {"1": WINDOW}
    trained_on = len(pd.read_parquet(live.project.path / "data" / "prepared" / "train.parquet"))
    assert report["reference"]["rows"] == trained_on and report["model_version"] == "1"
    assert job["result"]["report_id"] == report["id"] and "retrain_job" not in job["result"]


def test_shifted_rows_show_drift_with_the_issue_summary_shape(live, shifted):
    predict(live, shifted)
    job, report = drift_report(live, {"last_rows": WINDOW})
    assert REPORT_ID.match(report["id"]) and report["reason"] == "requested through the API"
    assert {"id", "created", "window", "model_version", "dataset_drift", "drift_share", "columns",
            "prediction_drift", "quality"} <= set(report)
    for column in report["columns"]:
        assert set(column) == {"name", "drifted", "test", "statistic", "threshold"}
        assert column["drifted"] == (column["statistic"] >= column["threshold"])
        assert column["test"] in ("Wasserstein distance (normed)", "Jensen-Shannon distance")
    numeric = set(live.project.params.schema.numeric)
    assert report["dataset_drift"] is True and report["drift_share"] >= 0.5
    assert len(report["drifted_columns"]) >= 3 and set(report["drifted_columns"]) <= numeric
    assert job["result"]["dataset_drift"] is True and "retrain_job" not in job["result"]  # 1 in a row
    spreads = report["distributions"]
    assert set(live.project.params.schema.feature_names) < set(spreads)  # and the predictions'
    for spread in spreads.values():
        assert sum(spread["reference"]) == pytest.approx(1) and sum(spread["current"]) == pytest.approx(1)


def test_report_endpoints_list_show_and_serve_html(live, held_out, shifted):
    before = live.get("/api/v1/reports?limit=1").json()["total"]
    predict(live, held_out)
    _, calm = drift_report(live, {"last_rows": WINDOW})
    predict(live, shifted)
    _, drifted = drift_report(live, {"last_rows": WINDOW})
    listed = live.get("/api/v1/reports?limit=1").json()
    assert listed["total"] == before + 2 and len(listed["items"]) == 1
    newest = listed["items"][0]
    assert newest["id"] == drifted["id"] and newest["dataset_drift"] is True
    older = live.get("/api/v1/reports?limit=1&offset=1").json()["items"][0]
    assert older["id"] == calm["id"] and older["dataset_drift"] is False
    assert older["created"] < newest["created"]
    page = live.get(f"/api/v1/reports/{newest['id']}/html")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<html" in page.text.lower() and len(page.text) > 100_000  # Evidently's page
    unknown = "20000101T000000000000Z-abcdef"
    for path in (f"/api/v1/reports/{unknown}", f"/api/v1/reports/{unknown}/html"):
        missing = live.get(path)
        assert missing.status_code == 404 and missing.json()["details"][0]["field"] == "report_id"
    bad = live.get("/api/v1/reports/not-an-id")
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "report_id"
    assert live.get("/api/v1/reports?limit=0").status_code == 422


def test_feedback_adds_classification_quality(live, shifted):
    request_id = predict(live, shifted)
    target = live.project.params.schema.target.name
    items = [{"request_id": request_id, "row": i, "label": int(label)}
             for i, label in enumerate(shifted[target])]
    assert live.post("/api/v1/feedback", json={"items": items}).status_code == 200
    job, report = drift_report(live, {"last_rows": WINDOW})
    quality = report["quality"]
    assert quality["rows"] == WINDOW and quality["threshold"] > 0
    for side in ("current", "reference"):
        assert {"accuracy", "precision", "recall", "f1"} <= set(quality[side])
        assert all(0 <= quality[side][k] <= 1 for k in ("accuracy", "precision", "recall", "f1"))
    live.auto_retrain = job["result"].get("retrain_job")


def test_two_drifted_reports_in_a_row_start_a_retrain_with_its_reason(live):
    listed = live.get("/api/v1/reports?limit=2").json()["items"]
    assert [r["dataset_drift"] for r in listed] == [True, True]
    assert live.auto_retrain, "the second drifted report in a row submitted no retrain"
    retrain = live.get(f"/api/v1/jobs/{live.auto_retrain}").json()
    assert retrain["kind"] == "retrain" and retrain["reason"].startswith("auto-retrain")
    assert all(r["id"] in retrain["reason"] for r in listed)
    shown = live.get("/api/v1/jobs?kind=retrain").json()["items"]
    assert [j["id"] for j in shown] == [live.auto_retrain]  # visible in the jobs list
    live.post(f"/api/v1/jobs/{live.auto_retrain}/cancel")
    assert live.wait_job(live.auto_retrain, timeout=120)["status"] in ("cancelled", "succeeded")


def test_metrics_show_the_latest_report(live):
    report = live.get("/api/v1/reports?limit=1").json()["items"][0]
    text = live.get("/metrics").text
    assert "opcon_drift_dataset_drift 1.0" in text
    for column in report["columns"]:
        assert f'opcon_drift_feature_drifted{{feature="{column["name"]}"}} {float(column["drifted"])}' in text


def test_a_scheduled_report_fires_on_a_worker(live):
    live.env = {**live.env, "OPCON_DRIFT_INTERVAL_SECONDS": "2", "OPCON_DRIFT_RETRAIN_AFTER": "0",
                "OPCON_DRIFT_WINDOW_ROWS": str(WINDOW)}
    worker = live.start_worker()
    try:

        def scheduled_jobs() -> list[dict]:
            jobs = live.get("/api/v1/jobs?kind=drift_report&limit=50").json()["items"]
            return [j for j in jobs if j["reason"] == "scheduled"]

        scheduled = wait_until(scheduled_jobs, 90, "a scheduled drift report is listed", interval=0.5,
                               details=lambda: live.tail("worker.log"))
        job = live.wait_job(scheduled[-1]["id"], timeout=120)
        assert job["status"] == "succeeded", job["log_tail"]
        assert job["params"] == {"last_rows": WINDOW}
        report = live.get(f"/api/v1/reports/{job['result']['report_id']}").json()
        assert report["reason"] == "scheduled" and report["window"]["rows"] == WINDOW
    finally:
        live.workers.remove(worker)
        worker.terminate()
        worker.wait(timeout=30)
