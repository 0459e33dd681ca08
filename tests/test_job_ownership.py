"""Who owns a job: its lease fences registry writes and record writes, a dead holder's record says
what it left in the registry, readiness finds jobs whose heartbeat stopped, and a job's child
processes die with the process that started them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from control_api import db
from control_api.jobs.records import JobStore, now
from ml import child_process, registry
from tests.helpers import TOKEN, Client, build_project
from tests.live import job_processes, wait_until


@pytest.fixture(scope="module")
def trained(module_state):
    """A small project with a champion (version 1)."""
    project = build_project(module_state, rows=300)
    project.train()
    return project


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(db.connect(f"sqlite:///{tmp_path / 'jobs.db'}"))


@pytest.fixture
def name(trained) -> str:
    return trained.params.registry.model_name


@pytest.fixture
def restore_champion(name):
    before = str(registry.champion(name).version)
    yield before
    if str(registry.champion(name).version) != before:
        registry.promote(name, before, "put back after a test", by="tests")


def _started(store: JobStore) -> tuple[str, str]:
    job, created = store.submit("retrain", {}, "a test", requested_by="tester", requested_role="admin")
    assert created
    lease = store.start(job["id"], "elsewhere:1")
    assert lease
    return job["id"], lease


def _register_again(name: str) -> str:
    """A new version of the champion's model (the same run), as a retrain's evaluate would."""
    first = registry.versions(name)[-1]
    return registry.register(first.source, name, first.run_id, dict(first.tags))


def _left_by(name):
    return lambda job: registry.left_by_job(name, job["id"])


def test_a_holder_whose_lease_was_taken_changes_nothing(store, name, restore_champion):
    job_id, lease = _started(store)
    with registry.fenced(job_id, lambda: store.heartbeat(job_id, lease)):
        version = _register_again(name)  # while it holds the lease
        assert store.reconcile(30, is_dead=lambda worker: True, left_by=_left_by(name)) == [job_id]
        with pytest.raises(registry.LeaseLostError, match=f"job {job_id} no longer holds its lease"):
            registry.promote(name, version, "a stale holder tries")
        with pytest.raises(registry.LeaseLostError):
            registry.set_challenger(name, version)
    assert str(registry.champion(name).version) == restore_champion
    job = store.get(job_id)
    assert job["status"] == "interrupted"
    assert f"registered version {version} (it holds no alias)" in job["error"]
    assert job["result"] == {"model_version": version, "alias": None, "promoted": False}
    # its record is the reconciler's: the stale holder's writes do not land
    assert store.finish(job_id, "succeeded", result={"model_version": "99"}, lease=lease) is False
    store.append_log(job_id, "late line\n", lease)
    assert store.heartbeat(job_id, lease) is False
    after = store.get(job_id)
    assert after["status"] == "interrupted" and "late line" not in after["log"]
    assert store.submit("retrain", {}, "the next one")[1] is True  # the single-flight lock is free


def test_an_interrupted_record_names_the_promotion_made_before_the_death(store, name, restore_champion):
    job_id, lease = _started(store)
    with registry.fenced(job_id, lambda: store.heartbeat(job_id, lease)):
        version = _register_again(name)
        registry.promote(name, version, "passed the gate")
    assert registry.client().get_model_version(name, version).tags[registry.PROMOTED_BY_JOB_TAG] == job_id
    store.reconcile(30, is_dead=lambda worker: True, left_by=_left_by(name))
    job = store.get(job_id)
    assert job["status"] == "interrupted"
    assert f"after it registered version {version} (it is the champion now)" in job["error"]
    assert job["result"]["promoted"] is True and job["result"]["model_version"] == version


def test_a_live_holder_keeps_its_job(store, name):
    job_id, lease = _started(store)
    assert store.reconcile(30, left_by=_left_by(name)) == []  # beating, on another host
    assert store.get(job_id)["status"] == "running"
    assert store.finish(job_id, "succeeded", result={}, lease=lease) is True


def test_readiness_interrupts_a_job_whose_heartbeat_stopped(trained):
    from control_api import create_app

    app = create_app({"testing": True, "api_token": TOKEN, "state_dir": trained.state,
                      "project_dir": trained.path, "job_stale_seconds": 30})
    jobs = app.extensions["opcon"].jobs
    job, _ = jobs.submit("validate", {}, "a test")
    jobs.start(job["id"], "a-host-that-is-gone:4242")
    jobs.update(job["id"], heartbeat_at=now() - timedelta(seconds=31))
    Client(app).get("/ready", auth=False)
    record = jobs.get(job["id"])
    assert record["status"] == "interrupted", record
    assert record["error"].startswith("the worker running this job stopped")
    assert jobs.submit("validate", {}, "the next one")[1] is True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    return status != "Z"


def test_a_child_dies_with_the_process_that_started_it(tmp_path):
    script = ("import sys, time; from ml import child_process; "
              "c = child_process.popen(['sleep', '300']); print(c.pid, flush=True); time.sleep(300)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    wait_until(lambda: not _alive(child), 10, f"the child {child} dies with its parent")


def test_kill_group_takes_the_grandchildren_too():
    process = child_process.popen(["bash", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE,
                                  text=True)
    grandchild = int(process.stdout.readline())
    assert os.getpgid(grandchild) == process.pid  # one group, the child's own
    child_process.kill_group(process)
    process.wait()
    wait_until(lambda: not _alive(grandchild), 10, "the grandchild dies with the group")


def test_a_timeout_kills_the_group():
    with pytest.raises(subprocess.TimeoutExpired):
        child_process.run(["sleep", "300"], timeout=0.5)


def test_after_an_edit_of_the_ml_code_a_job_runs_its_stages_in_a_new_process(tmp_path, trained):
    from control_api import create_app
    from ml.config import REPO_ROOT
    from tests.helpers import run_job_here

    project = build_project(tmp_path, rows=300)
    (project.path / "ml").unlink()  # a copy of the ml code, edited: not what this process loaded
    shutil.copytree(REPO_ROOT / "ml", project.path / "ml", ignore=shutil.ignore_patterns("__pycache__"))
    with (project.path / "ml" / "validation.py").open("a") as edited:
        edited.write("# edited while the worker runs\n")
    app = create_app({"testing": True, "api_token": TOKEN, "state_dir": project.state,
                      "project_dir": project.path})
    services = app.extensions["opcon"]
    job, _ = services.jobs.submit("validate", {}, "a test", requested_by="tester")
    record = run_job_here(services, job["id"])
    assert record["status"] == "succeeded", record["log"][-3000:]
    assert "running them in a new process instead" in record["log"]
    assert "validation passed" in record["log"].lower()
    assert job_processes(job["id"]) == []
