"""The audit trail: what each request that is not a GET leaves in it (allowed or refused), the job
events, the hash chain's verification of an edited or deleted row, and a chain that neither forks
nor loses a row while several processes append at once (SQLite and PostgreSQL).

Real SQLite files, the local PostgreSQL server, real jobs run in-process by the job runner; the
project has data and no trained model.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
import sqlalchemy as sa

from control_api import create_app, db
from control_api.audit import GENESIS, AuditLog, event_hash
from ml.config import REPO_ROOT
from tests.helpers import postgres_database, run_job_here
from tests.live import wait_until

SERVICE_TOKEN = f"audit-{secrets.token_hex(12)}"
EVENT_FIELDS = {"seq", "at", "actor", "role", "action", "target", "request_id", "client", "outcome",
                "status", "params"}


def chain(verified: dict) -> dict:
    """A verify result without its tail hash (checked on its own where it matters)."""
    assert verified["last_hash"] is None or len(verified["last_hash"]) == 64
    return {k: v for k, v in verified.items() if k != "last_hash"}


def password() -> str:
    return f"pw-{secrets.token_urlsafe(15)}"


@pytest.fixture(scope="module")
def project(apps_project):
    return apps_project


@pytest.fixture
def app(project, tmp_path):
    return create_app({"testing": True, "api_token": SERVICE_TOKEN, "state_dir": tmp_path / "state",
                       "project_dir": project.path})


@pytest.fixture
def services(app):
    return app.extensions["opcon"]


class Caller:
    def __init__(self, app, token: str | None, address: str):
        self.client, self.token, self.address = app.test_client(), token, address

    def open(self, method: str, path: str, request_id: str | None = None, headers: dict | None = None,
             **kwargs):
        headers = {**({"Authorization": f"Bearer {self.token}"} if self.token else {}), **(headers or {})}
        if request_id:
            headers["X-Request-ID"] = request_id
        response = self.client.open(path, method=method, headers=headers,
                                    environ_base={"REMOTE_ADDR": self.address}, **kwargs)
        assert response.status_code != 500, response.get_data(as_text=True)[:800]
        if request_id:
            assert response.headers["X-Request-ID"] == request_id
        return response


def by_request(services, request_id: str) -> dict:
    with services.engine.connect() as conn:
        rows = [db.row_dict(r) for r in conn.execute(
            sa.select(db.audit_events).where(db.audit_events.c.request_id == request_id))]
    assert len(rows) == 1, f"{len(rows)} audit events for request {request_id}: {rows}"
    return rows[0]


def all_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [db.row_dict(r) for r in conn.execute(sa.select(db.audit_events)
                                                     .order_by(db.audit_events.c.seq))]


def test_every_request_that_is_not_a_get_is_audited_allowed_or_refused(app, services):
    store = services.identities
    viewer_password, admin_password, new_user_password = password(), password(), password()
    store.create_user("vera", "viewer", password=viewer_password)
    store.create_user("ada", "admin", password=admin_password)
    service = Caller(app, SERVICE_TOKEN, "10.1.0.1")
    anonymous = Caller(app, None, "10.1.0.2")
    signed_in = anonymous.open("POST", "/api/v1/auth/login", "req-login-ok",
                               json={"username": "vera", "password": viewer_password})
    assert signed_in.status_code == 200
    viewer_token = signed_in.get_json()["token"]
    viewer = Caller(app, viewer_token, "10.1.0.3")
    created = service.open("POST", "/api/v1/tokens", "req-token",
                           json={"owner": "ada", "name": "ci", "role": "operator"})
    assert created.status_code == 201
    token = created.get_json()

    # (caller, method, path, body, request id) → the event it must leave
    cases = [
        (anonymous, "POST", "/api/v1/auth/login", {"username": "vera", "password": "wrong password"},
         "req-login-bad", {"actor": "vera", "role": None, "action": "auth.login", "target": "user:vera",
                           "outcome": "denied", "status": 401}),
        (service, "POST", "/api/v1/users", {"username": "newbie", "role": "operator",
                                            "password": new_user_password}, "req-user",
         {"actor": "service-token", "role": "admin", "action": "users.create_user",
          "target": "user:newbie", "outcome": "ok", "status": 201}),
        (service, "PATCH", "/api/v1/users/newbie", {"password": password(), "display_name": "New B"},
         "req-patch", {"actor": "service-token", "role": "admin", "action": "users.change_user",
                       "target": "user:newbie", "outcome": "ok", "status": 200}),
        (viewer, "POST", "/api/v1/jobs", {"kind": "validate"}, "req-job-refused",
         {"actor": "vera", "role": "viewer", "action": "jobs.start", "target": "/api/v1/jobs",
          "outcome": "forbidden", "status": 403}),
        (anonymous, "POST", "/api/v1/jobs", {"kind": "validate"}, "req-job-anonymous",
         {"actor": "anonymous", "role": None, "action": "jobs.start", "target": "/api/v1/jobs",
          "outcome": "denied", "status": 401}),
        (Caller(app, token["token"], "10.1.0.4"), "POST", "/api/v1/predict", {"records": []},
         "req-predict-refused-nothing", None),  # allowed (operator): scoring is not audited
        (viewer, "POST", "/api/v1/predict", {"records": []}, "req-predict-refused",
         {"actor": "vera", "role": "viewer", "action": "predict.predict", "outcome": "forbidden",
          "status": 403}),
        (service, "POST", "/api/v1/jobs", {"kind": "validate", "reason": "audit test"}, "req-job",
         {"actor": "service-token", "role": "admin", "action": "jobs.start", "outcome": "ok",
          "status": 202}),
        (service, "POST", "/api/v1/users", {"username": "Not Valid", "role": "viewer",
                                            "password": password(), "client_secret": "s3cr3t-value"},
         "req-user-invalid", {"actor": "service-token", "action": "users.create_user",
                              "outcome": "rejected", "status": 422}),
        (service, "DELETE", f"/api/v1/tokens/{token['id']}", None, "req-revoke",
         {"actor": "service-token", "action": "tokens.revoke_token", "target": f"token:{token['id']}",
          "outcome": "ok", "status": 200}),
        (anonymous, "POST", "/api/v1/no-such-route", {}, "req-nowhere",
         {"actor": "anonymous", "outcome": "denied", "status": 401}),
        (viewer, "POST", "/api/v1/auth/logout", None, "req-logout",
         {"actor": "vera", "role": "viewer", "action": "auth.logout", "outcome": "ok", "status": 200}),
    ]
    for caller, method, path, body, request_id, expected in cases:
        response = caller.open(method, path, request_id, json=body)
        if expected is None:
            with services.engine.connect() as conn:
                found = conn.execute(sa.select(sa.func.count()).select_from(db.audit_events)
                                     .where(db.audit_events.c.request_id == request_id)).scalar()
            assert found == 0, f"{path}: an allowed prediction is in the audit trail"
            continue
        assert response.status_code == expected["status"], (path, response.get_json())
        event = by_request(services, request_id)
        assert {k: event[k] for k in expected} == expected, (path, event)
        assert event["client"] == caller.address
        assert isinstance(event["params"], dict)
        if body:
            assert set(event["params"]) >= set(body), (path, event["params"])

    login_ok = by_request(services, "req-login-ok")
    assert (login_ok["actor"], login_ok["role"], login_ok["outcome"], login_ok["status"]) == (
        "vera", "viewer", "ok", 200)
    assert login_ok["params"] == {"username": "vera", "password": "(redacted)"}
    assert by_request(services, "req-user")["params"]["password"] == "(redacted)"
    assert by_request(services, "req-user")["params"]["role"] == "operator"
    assert by_request(services, "req-patch")["params"] == {"username": "newbie", "password": "(redacted)",
                                                          "display_name": "New B"}
    assert by_request(services, "req-user-invalid")["params"]["client_secret"] == "(redacted)"
    assert by_request(services, "req-job-refused")["params"] == {"kind": "validate"}
    assert by_request(services, "req-token")["target"] == f"token:{token['id']}"
    assert by_request(services, "req-token")["params"] == {"owner": "ada", "name": "ci", "role": "operator"}
    assert by_request(services, "req-revoke")["params"] == {"token_id": token["id"]}
    nowhere = by_request(services, "req-nowhere")
    assert nowhere["target"] == "/api/v1/no-such-route" and "POST" in nowhere["action"]

    # no secret is anywhere in the trail
    trail = json.dumps(all_rows(services.engine), default=str)
    for secret in (viewer_password, admin_password, new_user_password, "wrong password", "s3cr3t-value",
                   viewer_token, token["token"], SERVICE_TOKEN):
        assert secret not in trail

    # a GET leaves nothing; a request id that is not well formed is replaced by a fresh one
    count = len(all_rows(services.engine))
    for path in ("/api/v1/me", "/api/v1/users", "/api/v1/audit", "/api/v1/audit/verify", "/health"):
        assert service.open("GET", path).status_code == 200
    assert len(all_rows(services.engine)) == count
    response = service.open("POST", "/api/v1/jobs", json={"kind": "data_pull"},
                            headers={"X-Request-ID": "bad id with spaces"})
    assert response.status_code == 202
    generated = response.headers["X-Request-ID"]
    assert generated and generated != "bad id with spaces"
    assert by_request(services, generated)["action"] == "jobs.start"
    assert chain(services.audit.verify()) == {"intact": True, "rows": count + 1,
                                              "first_broken": None, "problem": None}


def test_the_audit_endpoint_filters_and_pages_newest_first(app, services):
    service = Caller(app, SERVICE_TOKEN, "10.2.0.1")
    for index in range(5):
        assert service.open("POST", "/api/v1/users", json={
            "username": f"user-{index}", "role": "viewer", "password": password()}).status_code == 201
    assert service.open("POST", "/api/v1/jobs", json={"kind": "validate"}).status_code == 202
    page = service.open("GET", "/api/v1/audit", query_string={"limit": 3}).get_json()
    assert page["total"] == 6 and page["limit"] == 3 and page["offset"] == 0
    assert [e["seq"] for e in page["items"]] == [6, 5, 4]
    assert all(set(e) >= EVENT_FIELDS for e in page["items"]), page["items"][0]
    rest = service.open("GET", "/api/v1/audit", query_string={"limit": 3, "offset": 3}).get_json()
    assert [e["seq"] for e in rest["items"]] == [3, 2, 1]
    users = service.open("GET", "/api/v1/audit", query_string={"action": "users.create_user"}).get_json()
    assert users["total"] == 5
    one = service.open("GET", "/api/v1/audit", query_string={"target": "user-3"}).get_json()
    assert [e["target"] for e in one["items"]] == ["user:user-3"]
    assert service.open("GET", "/api/v1/audit", query_string={"actor": "nobody"}).get_json()["total"] == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert service.open("GET", "/api/v1/audit", query_string={"since": future}).get_json()["total"] == 0
    assert service.open("GET", "/api/v1/audit", query_string={"until": future}).get_json()["total"] == 6
    assert service.open("GET", "/api/v1/audit", query_string={"limit": 0}).status_code == 422


def test_jobs_leave_start_and_end_events_in_the_name_of_who_asked(app, services):
    engineer_password = password()
    services.identities.create_user("eng", "engineer", password=engineer_password)
    caller = Caller(app, None, "10.3.0.1")
    caller.token = caller.open("POST", "/api/v1/auth/login", json={
        "username": "eng", "password": engineer_password}).get_json()["token"]
    submitted = caller.open("POST", "/api/v1/jobs", "req-validate", json={"kind": "validate"})
    assert submitted.status_code == 202
    job_id = submitted.get_json()["id"]
    cancelled = caller.open("POST", "/api/v1/jobs", json={"kind": "data_pull"}).get_json()["id"]
    assert caller.open("POST", f"/api/v1/jobs/{cancelled}/cancel", "req-cancel").status_code == 200

    finished = run_job_here(services, job_id)
    assert finished["status"] == "succeeded", finished["log"][-3000:]

    start = services.audit.events("job.start", f"job:{job_id}")
    end = services.audit.events("job.end", f"job:{job_id}")
    assert len(start) == len(end) == 1
    assert (start[0]["actor"], start[0]["role"], start[0]["outcome"]) == ("eng", "engineer", "running")
    assert start[0]["params"]["kind"] == "validate" and start[0]["params"]["worker"]
    assert (end[0]["actor"], end[0]["role"], end[0]["outcome"]) == ("eng", "engineer", "succeeded")
    request = by_request(services, "req-validate")
    assert request["seq"] < start[0]["seq"] < end[0]["seq"]
    assert request["target"] == f"job:{job_id}" and request["actor"] == "eng"
    [gone] = services.audit.events("job.end", f"job:{cancelled}")
    assert (gone["actor"], gone["outcome"]) == ("eng", "cancelled")
    assert services.audit.events("job.start", f"job:{cancelled}") == []
    assert by_request(services, "req-cancel")["action"] == "jobs.cancel"
    assert services.audit.verify()["intact"] is True


# -- tampering -------------------------------------------------------------------------------------

def fill(services, count: int) -> list[dict]:
    for index in range(count):
        services.audit.record(actor=f"writer-{index % 3}", role="admin", action="test.event",
                              target=f"thing:{index}", outcome="ok", status=200,
                              request_id=f"r-{index}", client="10.0.0.1", params={"n": index})
    return all_rows(services.engine)


def verify_api(app) -> dict:
    response = Caller(app, SERVICE_TOKEN, "10.4.0.1").open("GET", "/api/v1/audit/verify")
    assert response.status_code == 200
    return response.get_json()


def test_verify_names_a_row_edited_in_the_database(app, services):
    rows = fill(services, 12)
    assert chain(verify_api(app)) == {"intact": True, "rows": 12, "first_broken": None, "problem": None}
    assert rows[0]["prev_hash"] == GENESIS
    with services.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 7"))
    result = verify_api(app)
    assert result["intact"] is False and result["first_broken"] == 7 and result["rows"] == 6
    assert "edited" in result["problem"]

    # put it back: intact again; then change what a request did, and a time
    with services.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor = :actor WHERE seq = 7"),
                     {"actor": rows[6]["actor"]})
    assert verify_api(app)["intact"] is True
    with services.engine.begin() as conn:
        conn.execute(db.audit_events.update().where(db.audit_events.c.seq == 3)
                     .values(at=rows[2]["at"] + timedelta(seconds=1)))
    assert verify_api(app)["first_broken"] == 3


def test_verify_finds_a_rehashed_edit_and_a_deleted_row(app, services):
    rows = fill(services, 10)
    # an edit whose own hash is recomputed breaks the link to the next row
    forged = {**rows[4], "outcome": "forbidden", "status": 403}
    forged["hash"] = event_hash(forged)
    with services.engine.begin() as conn:
        conn.execute(db.audit_events.update().where(db.audit_events.c.seq == 5)
                     .values(outcome="forbidden", status=403, hash=forged["hash"]))
    result = verify_api(app)
    assert (result["intact"], result["first_broken"]) == (False, 6)
    assert "previous" in result["problem"]
    with services.engine.begin() as conn:
        conn.execute(db.audit_events.update().where(db.audit_events.c.seq == 5)
                     .values(outcome=rows[4]["outcome"], status=rows[4]["status"], hash=rows[4]["hash"]))
    assert verify_api(app)["intact"] is True

    with services.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq = 4"))
    result = verify_api(app)
    assert (result["intact"], result["first_broken"], result["rows"]) == (False, 5, 3)
    assert "4" in result["problem"] and "missing" in result["problem"]
    with services.engine.begin() as conn:
        conn.execute(db.audit_events.insert().values(**rows[3]))
    assert chain(verify_api(app)) == {"intact": True, "rows": 10, "first_broken": None, "problem": None}
    with services.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq = 1"))
    assert verify_api(app)["first_broken"] == 2


def test_the_tail_hash_anchors_the_end_of_the_chain(app, services):
    rows = fill(services, 6)
    noted = verify_api(app)
    assert noted["last_hash"] == rows[-1]["hash"] and noted["rows"] == 6
    with services.engine.begin() as conn:  # the newest rows removed: the rest is still a chain...
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq > 4"))
    later = verify_api(app)
    assert later["intact"] is True
    assert (later["rows"], later["last_hash"]) == (4, rows[3]["hash"]) != (6, noted["last_hash"])


# -- concurrent writers ----------------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from control_api import db
from control_api.audit import AuditLog
url, name, count, ready, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
log = AuditLog(db.connect(url))
ready.touch()
while not go.exists():
    time.sleep(0.005)
for n in range(count):
    log.record(actor=name, role="admin", action="test.concurrent", target=f"n:{n}", outcome="ok",
               status=200, params={"n": n, "writer": name})
log.engine.dispose()
"""


def append_at_once(url: str, tmp_path, writers: int, each: int) -> None:
    AuditLog(db.connect(url)).engine.dispose()  # the tables exist before the writers start
    go = tmp_path / "go"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPCON_")}
    processes = []
    for index in range(writers):
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"writer-{index}", str(each),
             str(tmp_path / f"ready-{index}"), str(go)],
            cwd=REPO_ROOT, env={**clean, "OPCON_HOME": str(tmp_path / "home")},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))

    def all_ready() -> bool:
        failed = [p for p in processes if p.poll() not in (None, 0)]
        assert not failed, failed[0].communicate()[0]
        return all((tmp_path / f"ready-{i}").exists() for i in range(writers))

    wait_until(all_ready, 60, "every writer has started", interval=0.02)
    go.touch()  # every writer starts appending at this moment
    for process in processes:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output[-3000:]


def check_chain(url: str, writers: int, each: int) -> None:
    engine = db.connect(url)
    try:
        rows = all_rows(engine)
        total = writers * each
        assert len(rows) == total, f"{total - len(rows)} event(s) lost"
        assert [r["seq"] for r in rows] == list(range(1, total + 1)), "the sequence has gaps or repeats"
        previous = GENESIS
        for row in rows:
            assert row["prev_hash"] == previous, f"the chain forks at {row['seq']}"
            assert row["hash"] == event_hash(row), f"row {row['seq']} does not match its hash"
            previous = row["hash"]
        written = {(r["actor"], r["params"]["n"]) for r in rows}
        assert written == {(f"writer-{w}", n) for w in range(writers) for n in range(each)}
        by_writer = {}
        for row in rows:
            by_writer.setdefault(row["actor"], []).append(row["params"]["n"])
        assert all(ns == sorted(ns) for ns in by_writer.values())  # each writer's order is kept
        assert chain(AuditLog(engine).verify()) == {"intact": True, "rows": total,
                                                    "first_broken": None, "problem": None}
        interleaved = sum(a["actor"] != b["actor"] for a, b in pairwise(rows))
        assert interleaved >= writers - 1
    finally:
        engine.dispose()


def test_concurrent_writers_keep_one_chain_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    append_at_once(url, tmp_path, writers=4, each=200)
    check_chain(url, writers=4, each=200)


def test_concurrent_writers_keep_one_chain_on_postgresql(tmp_path):
    with postgres_database("opcon_audit") as url:
        append_at_once(url, tmp_path, writers=4, each=200)
        check_chain(url, writers=4, each=200)


def test_the_chain_holds_when_one_app_is_called_from_many_threads(app, services):
    from concurrent.futures import ThreadPoolExecutor

    def refused(index: int) -> int:
        caller = Caller(app, None, f"10.5.0.{index % 250}")
        return caller.open("POST", "/api/v1/jobs", f"thread-{index}", json={"kind": "validate"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(refused, range(120)))
    assert set(statuses) == {401}
    assert chain(services.audit.verify()) == {"intact": True, "rows": 120, "first_broken": None,
                                              "problem": None}
    assert {r["request_id"] for r in all_rows(services.engine)} == {f"thread-{i}" for i in range(120)}

