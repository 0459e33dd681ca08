"""Prometheus metrics under gunicorn with two workers (multiprocess mode): the request counters sum
across workers, and the metrics read from durable state (champion, jobs, latest drift report,
emissions) carry the names and labels the alert rules use, the same whichever worker answers."""

from __future__ import annotations

import csv
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import build_project
from tests.live import TOKEN, Services

pytestmark = pytest.mark.live

STATE_METRICS = ("opcon_champion_info", "opcon_jobs_total", "opcon_job_duration_seconds",
                 "opcon_jobs_queued", "opcon_drift_dataset_drift", "opcon_drift_share",
                 "opcon_drift_feature_drifted", "opcon_drift_report_timestamp_seconds",
                 "opcon_training_emissions_kg_co2eq", "opcon_training_energy_kwh",
                 "opcon_estimated_performance", "opcon_estimated_performance_floor")


@pytest.fixture(scope="module")
def live(module_state):
    project = build_project(module_state, rows=1500)
    project.train()
    services = Services(project.path, project.state, {"OPCON_DRIFT_INTERVAL_MINUTES": "0",
                                                      "OPCON_METRICS_CACHE_SECONDS": "1"})
    services.start_api()
    services.start_worker()
    services.wait_ready()
    services.project = project
    schema = project.params.schema
    services.record = {f.name: f.typical if f.type == "category" else float(f.typical)
                       for f in schema.features}
    yield services
    services.stop()


def samples(live) -> dict[str, list]:
    response = live.get("/metrics")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def total(found: dict, name: str, **labels) -> float:
    return sum(s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def test_prediction_counters_add_up_across_both_workers(live):
    before = samples(live)

    def predict(records: int) -> dict:
        response = requests.post(f"{live.url}/api/v1/predict", json={"records": [live.record] * records},
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
        assert response.status_code == 200
        return response.json()

    # a 10,000-record request keeps one sync worker busy for a second or more: the small requests
    # sent meanwhile can only be answered by the other worker, once it has loaded the app (on a
    # busy machine that can take a while after the first worker answered /ready)
    value_files = live.project.state / "prometheus"
    bodies = []
    deadline = time.monotonic() + 120
    with ThreadPoolExecutor(1) as pool:
        while len(list(value_files.glob("counter_*.db"))) < 2 and time.monotonic() < deadline:
            big = pool.submit(predict, 10_000)
            bodies.append(predict(3))
            while not big.done():
                bodies.append(predict(3))
            bodies.append(big.result())
    sent = len(bodies)
    labels = Counter((str(p["label"]), b["served_by"]) for b in bodies for p in b["predictions"])
    after = samples(live)
    for (label, served_by), count in labels.items():
        grown = (total(after, "opcon_predictions_total", label=label, served_by=served_by, model_version="1")
                 - total(before, "opcon_predictions_total", label=label, served_by=served_by,
                         model_version="1"))
        assert grown == count
    assert (total(after, "opcon_prediction_latency_seconds_count")
            - total(before, "opcon_prediction_latency_seconds_count")) == sent
    assert (total(after, "flask_http_request_total", method="POST", status="200")
            - total(before, "flask_http_request_total", method="POST", status="200")) == sent
    assert len(list(value_files.glob("counter_*.db"))) >= 2  # both gunicorn workers counted some


def test_state_metrics_carry_their_labels(live):
    project = live.project
    job = live.post("/api/v1/jobs", json={"kind": "validate"}).json()
    job = live.wait_job(job["id"], timeout=120)
    assert job["status"] == "succeeded", (job, live.tail("worker.log"), live.tail("api.log"))
    live.post("/api/v1/predict", json={"records": [live.record] * 40})
    drift_job = live.post("/api/v1/jobs", json={"kind": "drift_report", "params": {"last_rows": 40}}).json()
    drift_job = live.wait_job(drift_job["id"], timeout=120)
    assert drift_job["status"] == "succeeded", drift_job["log_tail"]
    report = live.get(f"/api/v1/reports/{drift_job['result']['report_id']}").json()
    with open(project.state / "emissions" / "training_runs.csv", newline="") as handle:
        last_training = list(csv.DictReader(handle))[-1]

    found = samples(live)
    name = project.params.registry.model_name
    assert [(s.labels, s.value) for s in found["opcon_champion_info"]] == [
        ({"model_name": name, "version": "1"}, 1.0)]
    assert total(found, "opcon_jobs_total", kind="validate", status="succeeded") == 1
    assert total(found, "opcon_jobs_total", kind="drift_report", status="succeeded") == 1
    assert total(found, "opcon_job_duration_seconds", kind="drift_report", status="succeeded") > 0
    assert found["opcon_jobs_queued"][0].value == 0
    assert found["opcon_drift_dataset_drift"][0].value == float(report["dataset_drift"])
    assert found["opcon_drift_share"][0].value == pytest.approx(report["drift_share"])
    assert {s.labels["feature"]: s.value for s in found["opcon_drift_feature_drifted"]} == {
        c["name"]: float(c["drifted"]) for c in report["columns"]}
    assert found["opcon_drift_report_timestamp_seconds"][0].value > 0
    assert found["opcon_training_emissions_kg_co2eq"][0].value == float(last_training["emissions_kg"]) > 0
    assert found["opcon_training_energy_kwh"][0].value == float(last_training["energy_kwh"]) > 0
    estimated = report["estimated_performance"]
    assert estimated["model_version"] == "1" and estimated["rows"] == 40
    assert {s.labels["metric"]: s.value for s in found["opcon_estimated_performance"]} == pytest.approx(
        {m: figure["value"] for m, figure in estimated["estimated"].items() if figure["value"] is not None})
    assert estimated["estimated"]["accuracy"]["value"] is not None  # 40 copies of one record: no ROC AUC
    assert {s.labels["metric"]: s.value for s in found["opcon_estimated_performance_floor"]} == {
        "f1": project.params.monitoring.performance_floor["f1"]}


def test_every_worker_answers_the_same_state_and_the_names_alerts_use(live):
    assert live.post("/api/v1/predict", json={"records": [live.record]}).status_code == 200
    response = live.get("/metrics")
    types = dict(line.split(" ")[2:4] for line in response.text.splitlines() if line.startswith("# TYPE"))
    assert types["opcon_jobs_total"] == "counter" and types["opcon_predictions_total"] == "counter"
    assert types["opcon_prediction_latency_seconds"] == "histogram"
    assert types["flask_http_request_duration_seconds"] == "histogram"
    assert "opcon_api_info" in types
    assert all(name in types for name in STATE_METRICS), sorted(set(STATE_METRICS) - set(types))

    def state(found: dict) -> list:
        return sorted((n, tuple(sorted(s.labels.items())), s.value) for n in STATE_METRICS
                      for s in found.get(n, []))

    time.sleep(1.5)  # past OPCON_METRICS_CACHE_SECONDS: no worker still holds a reading from before
    answers = {tuple(state(samples(live))) for _ in range(12)}  # two workers answer these scrapes
    assert len(answers) == 1
