"""Sign-in, lock-out, sign-out, revocation and the audit chain under gunicorn with two workers: what
one worker learns, the other acts on from the very next request.

Each check is made in every worker: tests.live.Services.only_worker keeps the other sync worker busy
with a connection that sends nothing, so a request can only be answered by the one chosen (the
access log, with the pid of the answering worker, confirms it). Failed sign-ins are counted in the
local Redis (OPCON_RATELIMIT_STORAGE_URI), one count for both workers. The API needs no champion
for any of this: the project has data and no trained model, and the API is waited for on /health.
"""

from __future__ import annotations

import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from tests.helpers import build_project
from tests.live import TOKEN, Services, wait_until

pytestmark = pytest.mark.live

REDIS_URL = "redis://127.0.0.1:6379/0"
MAX_FAILURES = 4
LOCKOUT_SECONDS = 300


@pytest.fixture(scope="module")
def live(module_state):
    project = build_project(module_state, rows=300)
    logs = project.state / "logs"
    services = Services(project.path, project.state, {
        "OPCON_RATELIMIT_STORAGE_URI": REDIS_URL,
        "OPCON_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
        "OPCON_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",  # every request comes from 127.0.0.1
        "OPCON_LOGIN_LOCKOUT_SECONDS": str(LOCKOUT_SECONDS),
        "OPCON_DRIFT_INTERVAL_MINUTES": "0",
        "API_ACCESS_LOG": str(logs / "access.log"),
        "GUNICORN_CMD_ARGS": "--access-logformat '%(p)s %({x-request-id}o)s %(m)s %(U)s %(s)s'",
    })
    services.start_api()
    services.usernames = []
    try:
        services.wait_healthy()
        yield services
    finally:
        services.stop()
        client = redis.Redis.from_url(REDIS_URL)
        for username in services.usernames:  # the lock-out counters of this module's accounts
            for key in client.scan_iter(f"*{username}*"):
                client.delete(key)
        client.close()


def fresh(method: str, url: str, token: str | None = None, **kwargs) -> requests.Response:
    """One request on a new connection."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


def new_user(live, role: str) -> tuple[str, str]:
    username, password = f"live-{role}-{uuid.uuid4().hex[:8]}", f"pw-{secrets.token_urlsafe(15)}"
    response = fresh("POST", f"{live.url}/api/v1/users", TOKEN,
                     json={"username": username, "role": role, "password": password})
    assert response.status_code == 201, response.text
    live.usernames.append(username)
    return username, password


def login(live, username: str, password: str, request_id: str | None = None) -> requests.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    return fresh("POST", f"{live.url}/api/v1/auth/login", headers=headers,
                 json={"username": username, "password": password})


def me(live, token: str) -> requests.Response:
    return fresh("GET", f"{live.url}/api/v1/me", token)


def answered_by(live, request_id: str, timeout: float = 20) -> int:
    """The pid of the worker that answered a request, from the access log (written just after the
    response)."""
    path = live.logs / "access.log"

    def logged_pid() -> int | None:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        for line in lines:
            fields = line.split()
            if len(fields) >= 2 and fields[1] == request_id:
                return int(fields[0].strip("<>"))
        return None

    return wait_until(logged_pid, timeout, f"request {request_id} is in the access log", interval=0.05,
                      details=lambda: live.tail("access.log"))


def pinned(live, pid: int, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    """A request the worker `pid` must answer (call inside live.only_worker(pid))."""
    request_id = f"pin-{uuid.uuid4().hex[:12]}"
    response = fresh(method, f"{live.url}{path}", token,
                     headers={"X-Request-ID": request_id, **kwargs.pop("headers", {})}, **kwargs)
    assert answered_by(live, request_id) == pid
    return response


def test_a_session_from_one_worker_works_in_every_worker(live):
    username, password = new_user(live, "operator")
    tokens = {}
    for pid in live.each_worker():
        response = login(live, username, password, f"login-{uuid.uuid4().hex[:8]}")
        assert response.status_code == 200, response.text
        assert answered_by(live, response.headers["X-Request-ID"]) == pid
        tokens[pid] = response.json()["token"]
    assert len(tokens) == 2
    for pid in live.each_worker():
        for token in tokens.values():
            body = pinned(live, pid, "GET", "/api/v1/me", token).json()
            assert (body["username"], body["role"], body["auth"]) == (username, "operator", "session")


def test_the_lock_out_is_one_count_for_every_worker(live):
    username, password = new_user(live, "viewer")
    workers = live.api_worker_pids()
    assert len(workers) == 2
    # half the allowed failures in each worker: with a count per process neither would lock
    for pid in workers:
        with live.only_worker(pid):
            for _ in range(MAX_FAILURES // 2):
                response = pinned(live, pid, "POST", "/api/v1/auth/login",
                                  json={"username": username, "password": "wrong password"})
                assert response.status_code == 401, response.text
    for pid in live.each_worker():
        response = pinned(live, pid, "POST", "/api/v1/auth/login",
                          json={"username": username, "password": password})
        assert response.status_code == 429, (pid, response.text)
        wait = response.json()["retry_after"]
        assert isinstance(wait, int) and 0 < wait <= LOCKOUT_SECONDS
        assert abs(int(response.headers["Retry-After"]) - wait) <= 1
    # another account is not locked
    other, other_password = new_user(live, "viewer")
    assert login(live, other, other_password).status_code == 200


def test_sign_out_and_revocation_hold_in_every_worker_from_the_next_request(live):
    username, password = new_user(live, "engineer")
    session = login(live, username, password).json()["token"]
    created = fresh("POST", f"{live.url}/api/v1/tokens", TOKEN,
                    json={"owner": username, "name": "live", "role": "engineer"})
    assert created.status_code == 201, created.text
    api_token = created.json()
    workers = live.api_worker_pids()
    for pid in live.each_worker():  # both workers know (and cache) both credentials
        assert pinned(live, pid, "GET", "/api/v1/me", session).status_code == 200
        assert pinned(live, pid, "GET", "/api/v1/me", api_token["token"]).status_code == 200

    first, second = workers
    with live.only_worker(first):
        response = pinned(live, first, "POST", "/api/v1/auth/logout", session)
        assert response.status_code == 200 and response.json() == {"signed_out": True}
    with live.only_worker(second):
        assert pinned(live, second, "GET", "/api/v1/me", session).status_code == 401
    assert {me(live, session).status_code for _ in range(20)} == {401}

    with live.only_worker(second):
        revoked = pinned(live, second, "DELETE", f"/api/v1/tokens/{api_token['id']}", TOKEN)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    with live.only_worker(first):
        assert pinned(live, first, "GET", "/api/v1/me", api_token["token"]).status_code == 401
        response = pinned(live, first, "POST", "/api/v1/jobs", api_token["token"], json={"kind": "validate"})
        assert response.status_code == 401
    assert {me(live, api_token["token"]).status_code for _ in range(20)} == {401}

    # a role change reaches every worker too
    session = login(live, username, password).json()["token"]
    for pid in live.each_worker():
        assert pinned(live, pid, "GET", "/api/v1/me", session).json()["role"] == "engineer"
    changed = fresh("PATCH", f"{live.url}/api/v1/users/{username}", TOKEN, json={"role": "viewer"})
    assert changed.status_code == 200
    for pid in live.each_worker():
        assert pinned(live, pid, "GET", "/api/v1/me", session).status_code == 401
    session = login(live, username, password).json()["token"]
    for pid in live.each_worker():
        body = pinned(live, pid, "POST", "/api/v1/jobs", session, json={"kind": "validate"}).json()
        assert body["role"] == "viewer" and body["permission"] == "jobs:start"


def test_the_audit_chain_holds_while_both_workers_write_at_once(live):
    username, password = new_user(live, "viewer")
    session = login(live, username, password).json()["token"]
    before = fresh("GET", f"{live.url}/api/v1/audit/verify", TOKEN).json()
    assert before["intact"] is True
    batch = uuid.uuid4().hex[:8]

    def refused(index: int) -> int:
        return fresh("POST", f"{live.url}/api/v1/jobs", session, json={"kind": "validate"},
                     headers={"X-Request-ID": f"chain-{batch}-{index}"}).status_code

    count = 160
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(refused, range(count)))
    assert set(statuses) == {403}
    after = fresh("GET", f"{live.url}/api/v1/audit/verify", TOKEN).json()
    assert after["intact"] is True, after
    assert after["rows"] == before["rows"] + count, (before, after)
    page = fresh("GET", f"{live.url}/api/v1/audit", TOKEN,
                 params={"actor": username, "action": "jobs.start", "limit": 1000}).json()
    assert page["total"] == count
    assert {e["request_id"] for e in page["items"]} == {f"chain-{batch}-{i}" for i in range(count)}
    assert {e["outcome"] for e in page["items"]} == {"forbidden"}
    pids = {answered_by(live, f"chain-{batch}-{i}") for i in range(count)}
    assert pids == set(live.api_worker_pids()), "both workers should have written"
