"""No password or token reaches a log file.

A live API (gunicorn, two workers, debug log level, an access log) and a job worker, after the
first-admin bootstrap: sign-ins right and wrong (a lock-out too), accounts and password changes,
an API token created and used to run a job the worker carries out, sign-out. Then every file
under the state dir's logs/ and every *.log under the state dir is searched for each password and
token used, and for anything shaped like a session or API token. The servers are stopped first, so
every log line is written.

The whole suite's logs cannot be known from one module; when OPCON_SUITE_LOG_DIRS lists directories
(os.pathsep-separated), their files are searched too, for the live tests' service token and for
anything shaped like a token.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
import requests
import sqlalchemy as sa

from control_api import db
from ml.config import REPO_ROOT
from tests.helpers import build_project
from tests.live import TOKEN, Services

pytestmark = pytest.mark.live

REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN_SHAPED = re.compile(rb"\b(?:ocs|oct)_[A-Za-z0-9_-]{30,}")


def call(live, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, live.url + path, headers=headers, timeout=60, **kwargs)


def password() -> str:
    return f"pw-{secrets.token_urlsafe(15)}"


@pytest.fixture(scope="module")
def exercised(module_state):
    """Runs everything once, stops the servers; gives the state dir and every secret used."""
    project = build_project(module_state, rows=300)
    state = project.state
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    used: set[str] = {TOKEN}
    with open(logs / "bootstrap.log", "wb") as log:  # what `make run` shows before the servers start
        done = subprocess.run([sys.executable, "-m", "control_api.identity.bootstrap"], cwd=REPO_ROOT,
                              env={**os.environ, "OPCON_HOME": str(state), "OPCON_API_TOKEN": TOKEN},
                              stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False)
    assert done.returncode == 0, (logs / "bootstrap.log").read_text()
    admin_password = (state / "admin_password").read_text().strip()
    used.add(admin_password)

    live = Services(project.path, state, {
        # one count of failed sign-ins for both workers (in memory each would count for itself)
        "OPCON_RATELIMIT_STORAGE_URI": REDIS_URL, "OPCON_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
        "OPCON_LOGIN_MAX_FAILURES": "3", "OPCON_DRIFT_INTERVAL_MINUTES": "0",
        "API_ACCESS_LOG": str(logs / "access.log"),
        "GUNICORN_CMD_ARGS": "--log-level debug",
    })
    live.start_api()
    live.start_worker()
    people: dict[str, tuple[str, str]] = {}
    try:
        live.wait_healthy()
        signed_in = call(live, "POST", "/api/v1/auth/login",
                         json={"username": "admin", "password": admin_password})
        assert signed_in.status_code == 200, signed_in.text
        admin = signed_in.json()["token"]
        used.add(admin)

        for role in ("engineer", "viewer"):
            username, secret = f"logs-{role}-{uuid.uuid4().hex[:6]}", password()
            created = call(live, "POST", "/api/v1/users", admin,
                           json={"username": username, "role": role, "password": secret})
            assert created.status_code == 201, created.text
            people[role] = (username, secret)
            used.add(secret)
        engineer, engineer_password = people["engineer"]
        viewer, viewer_password = people["viewer"]

        # failed sign-ins: a near miss, another account's password, an unknown name; then locked out
        for attempt in (engineer_password[:-1], viewer_password, admin_password + "!"):
            used.add(attempt)
            refused = call(live, "POST", "/api/v1/auth/login",
                           json={"username": engineer, "password": attempt})
            assert refused.status_code == 401, refused.text
        locked = call(live, "POST", "/api/v1/auth/login",
                      json={"username": engineer, "password": engineer_password})
        assert locked.status_code == 429, locked.text
        unknown = call(live, "POST", "/api/v1/auth/login",
                       json={"username": f"nobody-{uuid.uuid4().hex[:6]}", "password": viewer_password})
        assert unknown.status_code == 401
        short = call(live, "PATCH", f"/api/v1/users/{viewer}", admin, json={"password": "short-pw!"})
        assert short.status_code == 422
        used.add("short-pw!")

        # a token, used to run a job in the worker; a new password; sign out
        created = call(live, "POST", "/api/v1/tokens", admin,
                       json={"owner": engineer, "name": "ci", "role": "engineer"})
        assert created.status_code == 201, created.text
        api_token = created.json()["token"]
        used.add(api_token)
        job = call(live, "POST", "/api/v1/jobs", api_token, json={"kind": "validate"})
        assert job.status_code == 202, job.text
        live.session.headers["Authorization"] = f"Bearer {api_token}"
        finished = live.wait_job(job.json()["id"], timeout=180)
        assert finished["status"] == "succeeded", finished["log_tail"]
        assert finished["requested_by"] == engineer

        new_password = password()
        used.add(new_password)
        changed = call(live, "PATCH", f"/api/v1/users/{viewer}", admin, json={"password": new_password})
        assert changed.status_code == 200, changed.text
        session = call(live, "POST", "/api/v1/auth/login",
                       json={"username": viewer, "password": new_password})
        assert session.status_code == 200
        used.add(session.json()["token"])
        assert call(live, "GET", "/api/v1/me", session.json()["token"]).status_code == 200
        assert call(live, "POST", "/api/v1/auth/logout", session.json()["token"]).status_code == 200
        assert call(live, "GET", "/api/v1/me", session.json()["token"]).status_code == 401
        assert call(live, "GET", "/api/v1/audit", admin, params={"limit": 1000}).status_code == 200
        assert call(live, "POST", "/api/v1/auth/logout", admin).status_code == 200
    finally:
        live.stop()
        client = redis.Redis.from_url(REDIS_URL)
        for username in [p[0] for p in people.values()]:
            for key in client.scan_iter(f"*{username}*"):
                client.delete(key)
        client.close()

    engine = sa.create_engine(f"sqlite:///{state / 'opcon.db'}")
    with engine.connect() as conn:
        hashes = {h for h in conn.execute(sa.select(db.users.c.password_hash)).scalars() if h}
    engine.dispose()
    return state, used, hashes


def log_files(state: Path) -> list[Path]:
    found = {p for p in (state / "logs").rglob("*") if p.is_file()}
    found |= {p for p in state.rglob("*.log") if p.is_file()}
    return sorted(found)


def test_the_logs_record_what_happened(exercised):
    """The search below is only worth something if the logs hold the activity."""
    state, _, _ = exercised
    names = {p.name for p in log_files(state)}
    assert {"api.log", "worker.log", "access.log", "bootstrap.log"} <= names, names
    access = (state / "logs" / "access.log").read_text()
    assert "/api/v1/auth/login" in access and "/api/v1/tokens" in access and "/api/v1/jobs" in access
    assert "opcon.run_job" in (state / "logs" / "worker.log").read_text()  # the job ran there
    assert str(state / "admin_password") in (state / "logs" / "bootstrap.log").read_text()


def test_no_log_file_holds_a_password_or_token(exercised):
    state, used, hashes = exercised
    secrets_used = sorted({s for s in used if len(s) >= 8})
    assert len(secrets_used) >= 10
    files = log_files(state)
    suite_dirs = [Path(d) for d in os.environ.get("OPCON_SUITE_LOG_DIRS", "").split(os.pathsep) if d]
    suite_files = sorted({p for d in suite_dirs if d.is_dir() for p in d.rglob("*") if p.is_file()})
    found = []
    for path in files:
        content = path.read_bytes()
        found += [f"{path}: a password or token ({secret[:6]}…)" for secret in secrets_used
                  if secret.encode() in content]
        found += [f"{path}: a password hash" for digest in hashes if digest.encode() in content]
        found += [f"{path}: something shaped like a token ({m[:8]!r}…)"
                  for m in TOKEN_SHAPED.findall(content)]
    for path in suite_files:
        content = path.read_bytes()
        if TOKEN.encode() in content:
            found.append(f"{path}: the live tests' service token")
        found += [f"{path}: something shaped like a token ({m[:8]!r}…)"
                  for m in TOKEN_SHAPED.findall(content)]
    assert not found, "\n".join(found)
