"""kill -9 of the job worker at every step of a retrain, of a drift report and of a data pull, with
a second worker running: each killed job ends `interrupted` soon, leaves no process behind, names
any version it registered or promoted, and the next retrain succeeds."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from control_api import db
from control_api.jobs.kinds import KINDS
from control_api.jobs.records import JobStore
from ml import registry
from tests.helpers import build_project, typical_record
from tests.live import job_processes, running, wait_until

pytestmark = pytest.mark.live

RETRAIN_STEPS = KINDS["retrain"].steps
INTERRUPTED_WITHIN = 45  # seconds, from the kill
# a kill at the moment a step shows lands at its start; these wait a little to land inside it
DELAY = {"register and promote": 0.5, "train": 0.3}


@pytest.fixture(scope="module")
def live(module_state):
    project = build_project(module_state, rows=600)
    project.train()
    project.dvc("push")
    project.git_commit("first model")
    with running(project) as services:
        services.start_worker()  # a second worker: it finds the jobs of the one killed
        services.wait_workers_ready(2)
        services.record = typical_record(project.params.schema)
        services.name = project.params.registry.model_name
        yield services


def _worker_pid(live, job_id: str) -> int:
    """The pid of the worker running the job, from its record (the API does not show it)."""
    worker = JobStore(db.connect(f"sqlite:///{live.project.state / 'opcon.db'}")).get(job_id)["worker"]
    return int(worker.rpartition(":")[2])


def _kill_at(live, job_id: str, step: str | None) -> dict:
    """SIGKILL the worker running `job_id` (only that process) once the job is at `step` (as soon
    as it runs, for None); the record as it was at the kill."""
    session = requests.Session()
    session.headers.update(live.session.headers)

    def at_step() -> dict | None:
        job = session.get(f"{live.url}/api/v1/jobs/{job_id}", timeout=10).json()
        assert job["status"] in ("queued", "running"), f"the job ended before the kill: {job}"
        return job if job["status"] == "running" and (step is None or job["step"] == step) else None

    job = wait_until(at_step, 120, f"job {job_id} runs step {step}", interval=0.02)
    time.sleep(DELAY.get(step, 0))  # into the step: a moment to land in, not a wait on a condition
    worker = _worker_pid(live, job_id)
    os.kill(worker, signal.SIGKILL)
    for process in live.workers:
        if process.pid == worker:
            process.wait()
            live.workers.remove(process)
    live.start_worker()  # back to two (it loads while the survivor reconciles)
    return job


def _after_the_kill(live, job_id: str, champion_before: str) -> dict:
    started = time.monotonic()
    job = live.wait_job(job_id, timeout=INTERRUPTED_WITHIN)
    took = time.monotonic() - started
    assert job["status"] == "interrupted", job
    assert took <= INTERRUPTED_WITHIN
    wait_until(lambda: not job_processes(job_id), 10, f"no process of job {job_id} is left",
               details=lambda: str(job_processes(job_id)))
    champion_now = str(registry.champion(live.name).version)
    result = job["result"] or {}
    if champion_now != champion_before:  # moved by the killed job: its record must say so
        assert result.get("model_version") == champion_now and result.get("promoted") is True, job
        assert f"registered version {champion_now} (it is the champion now)" in job["error"], job
    elif result.get("model_version"):
        assert f"registered version {result['model_version']}" in job["error"], job
    else:
        assert "it registered and promoted nothing" in job["error"] or job["kind"] != "retrain", job
    return job


def _retrain_succeeds(live) -> None:
    response = live.post("/api/v1/jobs", json={"kind": "retrain"})
    assert response.status_code == 202, response.text  # no lock left behind
    job = live.wait_job(response.json()["id"])
    assert job["status"] == "succeeded", job["log_tail"]


def test_kill_9_at_every_step_of_a_retrain(live):
    killed_in: dict[str, int] = {}
    for _attempt in range(12):
        missing = [step for step in RETRAIN_STEPS if step not in killed_in]
        if not missing:
            break
        champion_before = str(registry.champion(live.name).version)
        job_id = live.post("/api/v1/jobs", json={"kind": "retrain"}).json()["id"]
        at_kill = _kill_at(live, job_id, missing[0])
        job = _after_the_kill(live, job_id, champion_before)
        assert job["step"] == at_kill["step"]  # nothing ran after the kill
        killed_in[at_kill["step"]] = killed_in.get(at_kill["step"], 0) + 1
        _retrain_succeeds(live)
    assert set(killed_in) == set(RETRAIN_STEPS), killed_in


@pytest.mark.parametrize("kind", ["drift_report", "data_pull"])
def test_kill_9_during_a_drift_report_or_a_data_pull(live, kind):
    if kind == "drift_report":
        for _ in range(5):
            assert live.post("/api/v1/predict", json={"records": [live.record] * 40}).status_code == 200
    champion_before = str(registry.champion(live.name).version)
    job_id = live.post("/api/v1/jobs", json={"kind": kind}).json()["id"]
    _kill_at(live, job_id, None)
    job = _after_the_kill(live, job_id, champion_before)
    assert str(registry.champion(live.name).version) == champion_before
    assert "a new job can start" in job["error"]
    _retrain_succeeds(live)
