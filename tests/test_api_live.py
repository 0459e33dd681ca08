"""The API under gunicorn with real job workers: retrain end to end, single flight, kill -9,
promotion while requests run, and the prediction log's durability."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

import pytest

from ml.generate import generate
from ml.versioning import file_md5, pointer_version
from tests.helpers import build_project, typical_record
from tests.live import job_processes, running, wait_until

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def live(module_state):
    project = build_project(module_state, rows=2000)
    project.train()
    project.git_commit("first model")
    with running(project) as services:
        services.record = typical_record(project.params.schema)
        yield services


def predict_version(live) -> str:
    response = live.post("/api/v1/predict", json={"records": [live.record]})
    assert response.status_code == 200, response.text
    return response.json()["model"]["version"]


def test_ready_names_the_champion(live):
    body = live.get("/ready").json()
    assert body["ready"] is True and body["champion"].endswith("version 1")


def test_an_answered_prediction_survives_kill_9_of_its_worker(live):
    response = live.post("/api/v1/predict", json={"records": [live.record] * 3})
    request_id = response.json()["request_id"]
    for pid in live.api_worker_pids():
        os.kill(pid, signal.SIGKILL)  # right after the answer, every API worker dies
    from monitoring.prediction_log import PredictionLog

    logged = PredictionLog(live.project.state / "predictions").find(request_id)
    assert sorted(logged["row"]) == [0, 1, 2]
    live.wait_ready()  # gunicorn replaces its workers


def test_upload_then_retrain_serves_the_new_champion(live):
    project = live.project
    next_id = int(project.params.dataset.generator.rows) + 1
    batch = generate(1000, 99, first_id=next_id).to_csv(index=False).encode()
    uploaded = live.post("/api/v1/datasets", files={"file": ("batch.csv", batch, "text/csv")})
    assert uploaded.status_code == 202, uploaded.text
    added = live.wait_job(uploaded.json()["id"])
    assert added["status"] == "succeeded", added["log_tail"]
    assert added["result"]["data_version"] == file_md5(project.raw) == pointer_version(project.raw)

    started = live.post("/api/v1/jobs", json={"kind": "retrain", "reason": "new data"})
    assert started.status_code == 202, started.text
    again = live.post("/api/v1/jobs", json={"kind": "retrain"})
    assert again.status_code == 409 and again.json()["job"]["id"] == started.json()["id"]

    job = live.wait_job(started.json()["id"])
    assert job["status"] == "succeeded", job["log_tail"]
    assert job["progress"] == 1.0 and job["result"]["model_version"] == "2"
    assert job["result"]["data_version"] == added["result"]["data_version"]
    assert "== train" in job["log_tail"] or "== push" in job["log_tail"]
    if not job["result"]["promoted"]:
        assert live.post("/api/v1/models/2/promote", json={"reason": "test"}).status_code == 200
    # each worker polls the alias every second, then loads the model: slow on a busy machine
    wait_until(lambda: {predict_version(live) for _ in range(6)} == {"2"}, 60,
               "every API worker serves version 2", interval=0.5, details=lambda: live.tail("api.log"))
    served = {predict_version(live) for _ in range(6)}
    assert served == {"2"}, live.tail("api.log")  # every worker switched


def test_promotion_while_requests_run_never_fails_or_mixes(live):
    seen: Counter = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            response = live.post("/api/v1/predict", json={"records": [live.record] * 5})
            if response.status_code != 200:
                failures.append(response.text)
                continue
            seen[response.json()["model"]["version"]] += 1

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: seen["2"] >= 20, 60, "traffic is answered by version 2")
        assert live.post("/api/v1/models/rollback").status_code == 200
        wait_until(lambda: seen["1"] >= 20, 60, "traffic is answered by version 1 after the rollback")
        answered = seen["2"]
        assert live.post("/api/v1/models/2/promote", json={}).status_code == 200
        wait_until(lambda: seen["2"] >= answered + 20, 60, "version 2 answers again after the promotion")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert set(seen) == {"1", "2"} and seen["1"] > 0 and seen["2"] > 0


def test_cancel_stops_a_running_job_and_kills_its_processes(live):
    job_id = live.post("/api/v1/jobs", json={"kind": "retrain"}).json()["id"]
    live.wait_job(job_id, until=("running",))
    cancelled = live.post(f"/api/v1/jobs/{job_id}/cancel").json()
    assert cancelled["cancel_requested"] is True
    job = live.wait_job(job_id)
    assert job["status"] == "cancelled"
    assert "cancelled before step" in job["error"] or "its processes were killed" in job["error"]
    assert job_processes(job_id) == []
    assert live.post("/api/v1/jobs", json={"kind": "retrain"}).status_code == 202


def _predictions_total(live) -> float:
    text = live.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("opcon_predictions_total{"))


def test_metrics_add_up_across_gunicorn_workers(live):
    before = _predictions_total(live)
    for _ in range(20):
        live.post("/api/v1/predict", json={"records": [live.record] * 2})
    assert _predictions_total(live) - before == 40  # two workers, one sum
    text = live.get("/metrics").text
    assert 'served_by="onnx"' in text and "opcon_prediction_latency_seconds_bucket" in text
    assert "flask_http_request_duration_seconds_count" in text


def test_a_failed_job_keeps_its_log_and_says_why(live):
    raw = live.project.raw
    good = raw.read_bytes()
    header, first, *rest = good.decode().splitlines()
    numbers = [f for f in live.project.params.schema.features if f.type == "number"]
    column = header.split(",").index(numbers[0].name)
    cells = first.split(",")
    cells[column] = str(numbers[0].max + 1000)
    raw.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")
    try:
        job_id = live.post("/api/v1/jobs", json={"kind": "validate"}).json()["id"]
        job = live.wait_job(job_id)
    finally:
        raw.write_bytes(good)
    assert job["status"] == "failed"
    assert job["error"].startswith("stage `validate` failed: validation failed")
    assert f"column `{numbers[0].name}`: 1 value(s) above the allowed" in job["log_tail"]
    assert job["log_tail"].count("== validate") == 1 and job["finished_at"] is not None
    assert live.get("/ready").json()["ready"] is True  # the champion is untouched
