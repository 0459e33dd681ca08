"""Who moved the champion, end to end: an engineer's retrain promotes in their name; with
`registry.require_approval` a challenger waits for an admin other than the one who retrained.

Real gunicorn API and huey worker, real DVC pipeline and MLflow registry; users sign in through the
API. Retraining on the same data scores the same, and `min_improvement: 0` lets that pass the gate.
"""

from __future__ import annotations

import pytest
import requests

from ml import registry
from tests.helpers import build_project
from tests.live import running, wait_until

pytestmark = pytest.mark.live
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def live(module_state):
    project = build_project(module_state, rows=1500, params_changes={"evaluate": {"min_improvement": 0.0}})
    project.train()
    project.git_commit("first model")
    with running(project) as services:
        for name, role in (("eve", "engineer"), ("alice", "admin"), ("bob", "admin")):
            created = services.post("/api/v1/users", json={"username": name, "role": role,
                                                           "password": PASSWORD})
            assert created.status_code == 201, created.text
        yield services


def session(live, username: str) -> requests.Session:
    answer = requests.post(f"{live.url}/api/v1/auth/login", json={"username": username,
                                                                  "password": PASSWORD}, timeout=30)
    assert answer.status_code == 200, answer.text
    signed_in = requests.Session()
    signed_in.headers["Authorization"] = f"Bearer {answer.json()['token']}"
    return signed_in


def retrain(live, user: requests.Session, username: str) -> dict:
    started = user.post(f"{live.url}/api/v1/jobs", json={"kind": "retrain"}, timeout=30)
    assert started.status_code == 202, started.text
    assert started.json()["requested_by"] == username
    job = live.wait_job(started.json()["id"])
    assert job["status"] == "succeeded", job["log_tail"]
    return job


def champion(live) -> str:
    return str(registry.champion(live.project.params.registry.model_name).version)


def events(live, **filters) -> list[dict]:
    answer = live.get("/api/v1/audit", params={"limit": 1000, **filters})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_an_engineers_retrain_promotes_in_their_name(live):
    eve = session(live, "eve")
    job = retrain(live, eve, "eve")
    assert job["result"]["promoted"] is True and job["result"]["awaiting_approval"] is False
    version = job["result"]["model_version"]
    assert champion(live) == version == "2"

    moves = events(live, action="champion.move")
    assert [(m["actor"], m["role"], m["params"]["version"], m["params"]["job_id"]) for m in moves] == [
        ("eve", "engineer", "2", job["id"])]
    assert moves[0]["params"]["previous"] == "1"
    ends = [e for e in events(live, action="job.end") if e["target"] == f"job:{job['id']}"]
    assert [(e["actor"], e["outcome"]) for e in ends] == [("eve", "succeeded")]
    assert [e["actor"] for e in events(live, action="jobs.start")] == ["eve"]

    periods = live.get("/api/v1/models/champion/history").json()["periods"]
    assert [(p["version"], p["moved_by"], p["to"] is None) for p in periods][-2:] == [
        ("1", "pipeline", False), ("2", "eve", True)]
    assert periods[-2]["to"] == periods[-1]["from"]
    assert periods[-1]["job_id"] == job["id"]
    version_tags = registry.client().get_model_version(live.project.params.registry.model_name, "2").tags
    assert version_tags["promoted_by"] == "eve"


def test_with_approval_on_another_admin_must_approve(live):
    live.project.update_params({"registry": {"require_approval": True}})
    alice, bob = session(live, "alice"), session(live, "bob")
    before = champion(live)
    job = retrain(live, alice, "alice")
    assert job["result"]["awaiting_approval"] is True and job["result"]["promoted"] is False
    waiting = job["result"]["model_version"]
    assert champion(live) == before

    pending = live.get("/api/v1/approvals", params={"status": "pending"}).json()["items"]
    assert [(a["version"], a["requested_by"], a["job_id"]) for a in pending] == [
        (waiting, "alice", job["id"])]
    assert pending[0]["comparison"]["champion_version"] == before
    listed = {v["version"]: v for v in live.get("/api/v1/models").json()["versions"]}
    assert listed[waiting]["approval"]["status"] == "pending"
    assert listed[waiting]["promotion"]["outcome"] == "awaiting approval"

    refused = alice.post(f"{live.url}/api/v1/models/{waiting}/approve", json={"comment": "mine"}, timeout=30)
    assert refused.status_code == 403, refused.text
    assert refused.json()["permission"] == "models:approve" and champion(live) == before

    approved = bob.post(f"{live.url}/api/v1/models/{waiting}/approve", json={"comment": "checked"},
                        timeout=30)
    assert approved.status_code == 200, approved.text
    assert champion(live) == waiting
    listed = {v["version"]: v for v in live.get("/api/v1/models").json()["versions"]}
    assert listed[waiting]["promotion"]["outcome"] == "promoted (approved)"
    assert listed[waiting]["approval"]["status"] == "approved"
    again = bob.post(f"{live.url}/api/v1/models/{waiting}/approve", json={"comment": "x"}, timeout=30)
    assert again.status_code == 409

    latest = live.get("/api/v1/models/champion/history").json()["periods"][-1]
    assert (latest["version"], latest["moved_by"]) == (waiting, "bob")
    assert "checked" in latest["reason"]
    approvals = [(e["actor"], e["status"]) for e in reversed(events(live, action="approvals.approve"))]
    assert approvals == [("alice", 403), ("bob", 200), ("bob", 409)]
    wait_until(lambda: live.get("/ready").json()["champion"].endswith(f"version {waiting}"), 60,
               "the API serves the approved version")


def test_a_rejected_challenger_leaves_the_champion(live):
    alice, bob = session(live, "alice"), session(live, "bob")
    before = champion(live)
    job = retrain(live, bob, "bob")
    waiting = job["result"]["model_version"]
    rejected = alice.post(f"{live.url}/api/v1/models/{waiting}/reject", json={"comment": "not now"},
                          timeout=30)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected" and rejected.json()["decided_by"] == "alice"
    assert champion(live) == before
    assert live.get("/api/v1/approvals", params={"status": "pending"}).json()["items"] == []
    verify = live.get("/api/v1/audit/verify").json()
    assert verify["intact"] is True and verify["rows"] > 10
