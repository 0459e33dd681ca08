"""Accounts, sign-in sessions and API tokens through Flask's test client (real SQLite, argon2, the
real rate limiter): signing in and the lock-out, signing out and revocation from the next request
(also in another process's cache), token roles capped by their owner's, what ends a session, the
last admin, what is stored, what no response shows, and the bootstrap of the first admin.

The project has data but no trained model: nothing here needs one.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import redis
import sqlalchemy as sa

from control_api import create_app, db
from control_api.identity import permissions
from ml.config import REPO_ROOT
from tests.live import wait_until

SERVICE_TOKEN = f"sessions-{secrets.token_hex(12)}"
REDIS_URL = "redis://127.0.0.1:6379/0"
USER_FIELDS = {"username", "display_name", "role", "kind", "created_at", "disabled", "last_login_at"}


def new_password() -> str:
    return f"pw-{secrets.token_urlsafe(15)}"


@pytest.fixture(scope="module")
def project(apps_project):
    return apps_project


class Api:
    """The test client of one app, with the secrets it has seen: no response may show one, except
    the sign-in and token-create responses that hand it out."""

    HANDS_OUT: ClassVar = {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/tokens")}

    def __init__(self, app, token: str | None = SERVICE_TOKEN):
        self.app, self.client, self.token = app, app.test_client(), token
        self.services = app.extensions["opcon"]
        self.secrets: set[str] = {SERVICE_TOKEN}
        self.address = "127.0.0.1"

    def open(self, method: str, path: str, token: str | bool | None = True, address: str | None = None,
             **kwargs):
        token = self.token if token is True else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = kwargs.get("json")
        if isinstance(body, dict) and isinstance(body.get("password"), str) and body["password"]:
            self.secrets.add(body["password"])
        response = self.client.open(path, method=method, headers=headers,
                                    environ_base={"REMOTE_ADDR": address or self.address}, **kwargs)
        assert response.status_code != 500, response.get_data(as_text=True)[:1000]
        shown = response.get_data(as_text=True) + repr(list(response.headers.items()))
        handed = response.get_json(silent=True) if response.is_json else None
        allowed = set()
        if (method, path) in self.HANDS_OUT and response.status_code in (200, 201):
            allowed.add(handed["token"])
            self.secrets.add(handed["token"])
        leaked = [s for s in self.secrets - allowed if s in shown]
        assert not leaked, f"{method} {path} ({response.status_code}) shows a secret: {shown[:500]}"
        assert "$argon2" not in shown and "token_hash" not in shown and "password_hash" not in shown
        return response

    def get(self, path: str, **kwargs):
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.open("POST", path, **kwargs)

    def patch(self, path: str, **kwargs):
        return self.open("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.open("DELETE", path, **kwargs)

    # -- shortcuts ---------------------------------------------------------------------------------
    def user(self, role: str, password: str | None = None, username: str | None = None) -> tuple[str, str]:
        username = username or f"u-{role}-{uuid.uuid4().hex[:6]}"
        password = password or new_password()
        response = self.post("/api/v1/users", json={"username": username, "role": role,
                                                    "password": password})
        assert response.status_code == 201, response.get_json()
        return username, password

    def login(self, username: str, password: str, address: str | None = None):
        return self.post("/api/v1/auth/login", token=None, address=address,
                         json={"username": username, "password": password})

    def session(self, username: str, password: str) -> str:
        response = self.login(username, password)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]

    def new_token(self, owner: str, role: str, **extra) -> dict:
        response = self.post("/api/v1/tokens", json={"owner": owner, "name": "test", "role": role,
                                                     **extra})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def me(self, token: str):
        return self.get("/api/v1/me", token=token)


@pytest.fixture
def make_api(project, tmp_path):
    """Apps on this test's own state dir (its own database); `same=True` shares the previous one's."""
    state = tmp_path / "state"

    def make(shared_state=None, **settings) -> Api:
        app = create_app({"testing": True, "api_token": SERVICE_TOKEN, "state_dir": shared_state or state,
                          "project_dir": project.path, **settings})
        return Api(app)

    return make


@pytest.fixture
def api(make_api) -> Api:
    return make_api()


def error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:800])
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"] and isinstance(body["details"], list)
    return body


# -- signing in ----------------------------------------------------------------------------------

def test_sign_in_gives_a_session_token_that_says_who_you_are(api):
    username, password = api.user("operator")
    before = datetime.now(UTC)
    response = api.login(username, password)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"token", "expires_at", "user", "permissions"}
    assert body["token"].startswith("ocs_") and len(body["token"]) >= 40
    expires = datetime.fromisoformat(body["expires_at"])
    hours = api.services.settings.session_hours
    assert before + timedelta(hours=hours) - timedelta(seconds=5) <= expires
    assert expires <= datetime.now(UTC) + timedelta(hours=hours)
    assert set(body["user"]) == USER_FIELDS and body["user"]["username"] == username
    assert body["user"]["role"] == "operator" and body["user"]["kind"] == "person"
    assert body["user"]["disabled"] is False and body["user"]["last_login_at"] is not None
    assert body["permissions"] == sorted(permissions.GRANTS["operator"])

    me = api.me(body["token"])
    assert me.status_code == 200
    assert me.get_json() == {"username": username, "display_name": username, "role": "operator",
                             "kind": "person", "auth": "session",
                             "permissions": sorted(permissions.GRANTS["operator"]),
                             "expires_at": body["expires_at"]}
    # a second sign-in is a second session; both work
    other = api.session(username, password)
    assert other != body["token"] and api.me(other).status_code == 200
    assert api.me(body["token"]).status_code == 200


def test_a_wrong_username_and_a_wrong_password_get_the_same_answer(api):
    username, password = api.user("viewer")
    wrong_password = error(api.login(username, password + "x"), 401)
    wrong_user = error(api.login(f"nobody-{uuid.uuid4().hex[:6]}", password), 401)
    assert wrong_password == wrong_user
    assert username not in str(wrong_password)
    assert error(api.login(username, ""), 422)["details"][0]["field"] == "password"
    assert api.login(username, password).status_code == 200


def test_a_disabled_account_is_told_so_only_with_the_right_password(api):
    username, password = api.user("engineer")
    assert api.patch(f"/api/v1/users/{username}", json={"disabled": True}).status_code == 200
    body = error(api.login(username, password), 403)
    assert "disabled" in body["error"]
    assert error(api.login(username, password + "x"), 401) == error(api.login("nobody-x", password), 401)
    assert api.patch(f"/api/v1/users/{username}", json={"disabled": False}).status_code == 200
    assert api.login(username, password).status_code == 200


def test_a_session_expires(make_api):
    api = make_api(session_hours=2 / 3600)  # two seconds
    username, password = api.user("viewer")
    token = api.session(username, password)
    assert api.me(token).status_code == 200  # now known (and cached) by this process
    wait_until(lambda: api.me(token).status_code != 200, 30, "a two-second session stops working")
    assert error(api.me(token), 401)["details"][0]["field"] == "Authorization"


# -- the lock-out --------------------------------------------------------------------------------

def locked(response, lockout_seconds: int) -> int:
    body = error(response, 429)
    wait = body["retry_after"]
    assert isinstance(wait, int) and 0 < wait <= lockout_seconds, body
    assert response.headers["Retry-After"].isdigit()
    assert abs(int(response.headers["Retry-After"]) - wait) <= 1
    assert str(wait) in body["error"]
    return wait


def test_failed_sign_ins_lock_a_username_and_a_right_password_uses_no_allowance(make_api):
    api = make_api(login_max_failures=3, login_max_failures_per_address=100, login_lockout_seconds=120)
    username, password = api.user("viewer")
    other, other_password = api.user("viewer")
    for _ in range(2):
        error(api.login(username, "wrong password!"), 401)
    for _ in range(5):  # right passwords in between use none of the three failures
        assert api.login(username, password).status_code == 200
    error(api.login(username, "wrong password!"), 401)  # the third failure: still answered
    locked(api.login(username, password), 120)  # now even the right password waits
    locked(api.login(username, "wrong password!"), 120)
    locked(api.login(username.upper(), password), 120)  # the same name, spelt otherwise
    locked(api.login(username, password, address="10.9.8.7"), 120)  # from anywhere
    assert api.login(other, other_password).status_code == 200  # another user is not locked
    # every refusal is audited as such
    events, _ = api.services.audit.query(action="auth.login", limit=1000)
    outcomes = [e["outcome"] for e in reversed(events) if e["actor"] in (username, username.upper())]
    assert outcomes == ["denied"] * 2 + ["ok"] * 5 + ["denied"] + ["locked"] * 4


def test_failed_sign_ins_lock_a_client_address(make_api):
    api = make_api(login_max_failures=100, login_max_failures_per_address=4, login_lockout_seconds=60)
    username, password = api.user("viewer")
    attacker = "10.0.0.66"
    for index in range(4):  # four different names from one address
        error(api.login(f"guess-{index}", "wrong password!", address=attacker), 401)
    wait = locked(api.login(username, password, address=attacker), 60)
    assert wait <= 60
    assert api.login(username, password, address="10.0.0.67").status_code == 200
    assert api.login(username, password).status_code == 200


# -- signing out and revocation ------------------------------------------------------------------

def test_sign_out_ends_that_session_on_the_next_request(api):
    username, password = api.user("admin")
    token, other = api.session(username, password), api.session(username, password)
    assert api.me(token).status_code == 200
    response = api.post("/api/v1/auth/logout", token=token)
    assert response.status_code == 200 and response.get_json() == {"signed_out": True}
    assert error(api.me(token), 401)["permission"] == permissions.SIGNED_IN
    error(api.post("/api/v1/auth/logout", token=token), 401)
    error(api.get("/api/v1/users", token=token), 401)
    assert api.me(other).status_code == 200  # the user's other session goes on
    # an API token cannot sign out (it is revoked instead)
    api_token = api.new_token(username, "admin")["token"]
    assert error(api.post("/api/v1/auth/logout", token=api_token), 409)
    assert api.me(api_token).status_code == 200


def test_a_revoked_token_is_refused_on_the_next_request(api):
    username, _ = api.user("engineer")
    created = api.new_token(username, "engineer")
    token = created["token"]
    assert token.startswith("oct_") and created["prefix"] == token[:12]
    me = api.me(token).get_json()
    assert (me["username"], me["role"], me["auth"]) == (username, "engineer", "token")
    revoked = api.delete(f"/api/v1/tokens/{created['id']}")
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"] is not None
    assert "token" not in revoked.get_json()
    error(api.me(token), 401)
    error(api.post("/api/v1/jobs", token=token, json={"kind": "validate"}), 401)
    listed = api.get("/api/v1/tokens", query_string={"owner": username}).get_json()["items"]
    assert [(t["id"], t["revoked_at"] is not None) for t in listed] == [(created["id"], True)]
    error(api.delete("/api/v1/tokens/no-such-token"), 404)


@pytest.mark.parametrize("epoch", ["file", "redis"])
def test_revocation_holds_in_another_process_that_had_the_credential_cached(make_api, tmp_path, epoch):
    """Two apps on one database are two API processes, each with its own identity cache; the epoch
    they share (a file in the state dir, or a Redis key) makes the other one forget."""
    settings = {"redis_url": REDIS_URL, "queue_name": f"opcon-test-{uuid.uuid4().hex[:8]}"} \
        if epoch == "redis" else {}
    first = make_api(**settings)
    second = make_api(shared_state=first.services.settings.state_dir, **settings)
    try:
        username, password = first.user("engineer")
        session, other_session = first.session(username, password), first.session(username, password)
        created = first.new_token(username, "engineer")
        for credential in (session, other_session, created["token"]):
            assert second.me(credential).status_code == 200  # cached by the second process
        assert first.post("/api/v1/auth/logout", token=session).status_code == 200
        error(second.me(session), 401)
        assert first.delete(f"/api/v1/tokens/{created['id']}").status_code == 200
        error(second.me(created["token"]), 401)
        assert second.me(other_session).status_code == 200
        assert first.patch(f"/api/v1/users/{username}", json={"role": "viewer"}).status_code == 200
        error(second.me(other_session), 401)
    finally:
        if epoch == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(f"*{settings['queue_name']}*"):
                client.delete(key)
            client.close()


# -- token roles ---------------------------------------------------------------------------------

def test_a_token_never_acts_above_its_owner(api):
    username, _ = api.user("engineer")
    body = error(api.post("/api/v1/tokens", json={"owner": username, "name": "x", "role": "admin"}), 422)
    assert body["details"][0]["field"] == "role"
    error(api.post("/api/v1/tokens", json={"owner": "no-such-user", "name": "x", "role": "viewer"}), 404)
    token = api.new_token(username, "engineer", expires_days=1)
    assert datetime.fromisoformat(token["expires_at"]) <= datetime.now(UTC) + timedelta(days=1)
    viewer_token = api.new_token(username, "viewer")["token"]
    assert api.me(viewer_token).get_json()["role"] == "viewer"
    error(api.post("/api/v1/jobs", token=viewer_token, json={"kind": "validate"}), 403)

    assert api.post("/api/v1/jobs", token=token["token"], json={"kind": "validate"}).status_code == 202
    assert api.patch(f"/api/v1/users/{username}", json={"role": "viewer"}).status_code == 200
    me = api.me(token["token"]).get_json()
    assert me["role"] == "viewer" and me["permissions"] == ["read"]
    body = error(api.post("/api/v1/jobs", token=token["token"], json={"kind": "validate"}), 403)
    assert body["role"] == "viewer" and body["permission"] == "jobs:start"
    # a disabled owner's tokens stop working, and work again when the account is enabled
    assert api.patch(f"/api/v1/users/{username}", json={"disabled": True}).status_code == 200
    error(api.me(token["token"]), 401)
    error(api.post("/api/v1/tokens", json={"owner": username, "name": "x", "role": "viewer"}), 409)
    assert api.patch(f"/api/v1/users/{username}", json={"disabled": False}).status_code == 200
    assert api.me(token["token"]).get_json()["role"] == "viewer"
    # promoted above the token's role, the owner's token stays at its own
    assert api.patch(f"/api/v1/users/{username}", json={"role": "admin"}).status_code == 200
    assert api.me(token["token"]).get_json()["role"] == "engineer"
    error(api.get("/api/v1/users", token=token["token"]), 403)
    assert api.post("/api/v1/jobs", token=token["token"], json={"kind": "data_pull"}).status_code == 202


def test_the_service_token_role_comes_from_the_environment(project, tmp_path, monkeypatch):
    monkeypatch.setenv("OPCON_API_TOKEN_ROLE", "viewer")
    api = Api(create_app({"testing": True, "api_token": SERVICE_TOKEN, "state_dir": tmp_path / "s",
                          "project_dir": project.path}))
    me = api.get("/api/v1/me").get_json()
    assert (me["role"], me["kind"], me["auth"], me["permissions"]) == (
        "viewer", "service", "service-token", ["read"])
    body = error(api.post("/api/v1/jobs", json={"kind": "validate"}), 403)
    assert body["permission"] == "jobs:start" and body["role"] == "viewer"
    assert api.get("/api/v1/jobs").status_code == 200
    monkeypatch.setenv("OPCON_API_TOKEN_ROLE", "superuser")
    with pytest.raises(ValueError, match="OPCON_API_TOKEN_ROLE"):
        create_app({"testing": True, "api_token": SERVICE_TOKEN, "state_dir": tmp_path / "t",
                    "project_dir": project.path})


# -- what ends a session -------------------------------------------------------------------------

@pytest.mark.parametrize("change", ["password", "role", "disabled"])
def test_a_new_password_role_or_disabled_account_ends_the_users_sessions(api, change):
    username, password = api.user("engineer")
    sessions = [api.session(username, password) for _ in range(2)]
    token = api.new_token(username, "engineer")["token"]
    bystander, bystander_password = api.user("engineer")
    kept = api.session(bystander, bystander_password)
    # a new display name ends nothing
    assert api.patch(f"/api/v1/users/{username}", json={"display_name": "Someone"}).status_code == 200
    assert all(api.me(s).status_code == 200 for s in sessions)

    fresh = new_password()
    values = {"password": fresh, "role": "operator", "disabled": True}
    response = api.patch(f"/api/v1/users/{username}", json={change: values[change]})
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == USER_FIELDS
    for session in sessions:
        error(api.me(session), 401)
    assert api.me(kept).status_code == 200
    if change == "password":
        error(api.login(username, password), 401)
        assert api.login(username, fresh).status_code == 200
        assert api.me(token).get_json()["role"] == "engineer"  # API tokens are not sessions
    elif change == "role":
        assert api.me(api.session(username, password)).get_json()["role"] == "operator"
        assert api.me(token).get_json()["role"] == "operator"
    else:
        error(api.login(username, password), 403)
        error(api.me(token), 401)


def test_the_last_admin_can_be_neither_disabled_nor_demoted(api):
    first, first_password = api.user("admin")
    for change in ({"disabled": True}, {"role": "engineer"}, {"role": "viewer", "disabled": True}):
        body = error(api.patch(f"/api/v1/users/{first}", json=change), 409)
        assert "last" in body["error"]
    session = api.session(first, first_password)
    assert api.me(session).get_json()["role"] == "admin"  # nothing changed, no session ended
    # with a second admin, the first may go; then the second is the last
    second, _ = api.user("admin")
    assert api.patch(f"/api/v1/users/{first}", json={"role": "engineer"}).status_code == 200
    error(api.patch(f"/api/v1/users/{second}", json={"disabled": True}), 409)
    error(api.patch(f"/api/v1/users/{second}", json={"role": "operator"}), 409)
    assert api.patch(f"/api/v1/users/{second}", json={"display_name": "Still admin"}).status_code == 200
    # a disabled admin is not an admin that counts
    assert api.patch(f"/api/v1/users/{first}", json={"role": "admin"}).status_code == 200
    assert api.patch(f"/api/v1/users/{first}", json={"disabled": True}).status_code == 200
    error(api.patch(f"/api/v1/users/{second}", json={"role": "viewer"}), 409)
    roles = {u["username"]: (u["role"], u["disabled"]) for u in api.get("/api/v1/users").get_json()["items"]}
    assert roles[first] == ("admin", True) and roles[second] == ("admin", False)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_admins_demoting_each_other_at_once_leave_an_admin(make_api, request, database):
    """The last-admin rule under two API processes: each of two admins demotes the other at the same
    moment; one of the two changes must be refused, whichever wins."""
    settings = {}
    if database == "postgresql":
        settings["database_url"] = request.getfixturevalue("fresh_postgres_url")
    api = make_api(**settings)
    other = make_api(shared_state=api.services.settings.state_dir, **settings)
    outcomes = []
    for attempt in range(8):
        first, _ = api.user("admin", username=f"first-{attempt}")
        second, _ = api.user("admin", username=f"second-{attempt}")
        barrier = threading.Barrier(2)
        statuses: dict[str, int] = {}

        def demote(client: Api, username: str, barrier=barrier, statuses=statuses) -> None:
            barrier.wait()
            statuses[username] = client.patch(f"/api/v1/users/{username}", json={"role": "viewer"}
                                              ).status_code

        threads = [threading.Thread(target=demote, args=(client, name))
                   for client, name in ((api, first), (other, second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        admins = [u["username"] for u in api.get("/api/v1/users").get_json()["items"]
                  if u["role"] == "admin" and not u["disabled"]]
        outcomes.append((sorted(statuses.values()), admins))
        assert admins, (
            f"API bug: round {attempt}: both demotions answered {statuses} and no enabled admin is "
            f"left (control_api/identity/store.py update_user: the admin count at line 125 and the "
            f"UPDATE are a check-then-act without a lock; {database}). Rounds so far: {outcomes}")
        assert sorted(statuses.values()) == [200, 409], statuses
        # back to no admin user before the next round (the service token stays admin)
        with api.services.engine.begin() as conn:
            conn.execute(db.users.update().where(db.users.c.role == "admin").values(role="viewer"))


def test_user_refusals(api):
    username, _ = api.user("viewer")
    error(api.post("/api/v1/users", json={"username": username, "role": "viewer",
                                          "password": new_password()}), 409)
    error(api.post("/api/v1/users", json={"username": "no-password", "role": "viewer"}), 422)
    error(api.post("/api/v1/users", json={"username": "svc", "role": "viewer", "kind": "service",
                                          "password": new_password()}), 422)
    error(api.post("/api/v1/users", json={"username": "Upper Case", "role": "viewer",
                                          "password": new_password()}), 422)
    error(api.post("/api/v1/users", json={"username": "x-root", "role": "root",
                                          "password": new_password()}), 422)
    error(api.patch("/api/v1/users/nobody-here", json={"role": "viewer"}), 404)
    service = api.post("/api/v1/users", json={"username": "svc-bot", "role": "operator",
                                              "kind": "service"})
    assert service.status_code == 201 and service.get_json()["kind"] == "service"
    error(api.login("svc-bot", "any password at all"), 401)  # a service account has no password
    token = api.new_token("svc-bot", "operator")["token"]
    assert api.me(token).get_json()["kind"] == "service"


# -- what is stored, what is shown ---------------------------------------------------------------

def test_passwords_are_argon2id_hashes_and_tokens_sha256(api):
    username, password = api.user("engineer")
    session = api.session(username, password)
    created = api.new_token(username, "operator")
    with api.services.engine.connect() as conn:
        user = conn.execute(sa.select(db.users).where(db.users.c.username == username)).one()
        session_rows = conn.execute(sa.select(db.sessions).where(db.sessions.c.username == username)).all()
        token_row = conn.execute(sa.select(db.api_tokens).where(db.api_tokens.c.id == created["id"])).one()
        every_row = [str(tuple(r)) for table in (db.users, db.sessions, db.api_tokens, db.audit_events)
                     for r in conn.execute(sa.select(table))]
    assert user.password_hash.startswith("$argon2id$") and password not in user.password_hash
    from argon2 import PasswordHasher

    assert PasswordHasher().verify(user.password_hash, password)
    assert [r.token_hash for r in session_rows] == [hashlib.sha256(session.encode()).hexdigest()]
    assert token_row.token_hash == hashlib.sha256(created["token"].encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", token_row.token_hash)
    assert token_row.prefix == created["token"][:12] == created["prefix"]
    for secret in (password, session, created["token"], SERVICE_TOKEN):
        assert not any(secret in row for row in every_row), "a credential is stored in clear"


def test_no_response_shows_a_password_or_token_but_the_ones_that_hand_them_out(api):
    """Api.open checks every response against every password and token this test used."""
    username, password = api.user("admin")
    session = api.session(username, password)
    token = api.new_token(username, "engineer")
    assert token["token"] not in str(api.get("/api/v1/tokens").get_json())
    for path in ("/api/v1/users", "/api/v1/tokens", "/api/v1/me", "/api/v1/audit?limit=1000",
                 "/api/v1/audit/verify", f"/api/v1/tokens?owner={username}"):
        assert api.get(path, token=session).status_code == 200
        assert api.get(path, token=token["token"]).status_code in (200, 403)
    new = new_password()
    assert api.patch(f"/api/v1/users/{username}", token=session, json={"password": new}).status_code == 200
    error(api.login(username, password), 401)
    session = api.session(username, new)
    audit = api.get("/api/v1/audit?limit=1000", token=session).get_json()["items"]
    logins = [e for e in audit if e["action"] == "auth.login"]
    assert logins and all(e["params"]["password"] == "(redacted)" for e in logins)
    assert api.post("/api/v1/auth/logout", token=session).status_code == 200


def test_a_rejected_password_is_not_echoed_back(api):
    """A password that fails validation (too short, too long) is still something a person typed as
    a password: the 422 must name the field without repeating it."""
    username, _ = api.user("viewer")
    short, long = "short-pw", "x" * 300
    for method, path, body in (
            ("PATCH", f"/api/v1/users/{username}", {"password": short}),
            ("POST", "/api/v1/users", {"username": "new-one", "role": "viewer", "password": short}),
            ("PATCH", f"/api/v1/users/{username}", {"password": long}),
            ("POST", "/api/v1/auth/login", {"username": username, "password": long})):
        response = api.client.open(path, method=method, json=body,
                                   headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
        assert response.status_code == 422, (method, path, response.get_json())
        assert response.get_json()["details"][0]["field"] == "password"
        assert body["password"] not in response.get_data(as_text=True), (
            f"API bug: {method} {path} echoes the rejected password in its 422 "
            f"(control_api/errors.py pydantic_details copies each error's `input` into `value`): "
            f"{response.get_json()}")


# -- the bootstrap -------------------------------------------------------------------------------

def bootstrap(home, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("OPCON_") and k not in ("REDIS_URL", "MLFLOW_TRACKING_URI")}
    return subprocess.run([sys.executable, "-m", "control_api.identity.bootstrap"], cwd=REPO_ROOT,
                          env={**clean, "OPCON_HOME": str(home), **env}, capture_output=True, text=True,
                          timeout=120, check=False)


def accounts(home) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{home / 'opcon.db'}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(
                db.users.c.username, db.users.c.role, db.users.c.kind, db.users.c.disabled,
                db.users.c.password_hash))]
    finally:
        engine.dispose()


def test_bootstrap_creates_the_first_admin_once(project, tmp_path):
    home = tmp_path / "home"
    first = bootstrap(home)
    assert first.returncode == 0, first.stderr
    path = home / "admin_password"
    password = path.read_text().strip()
    assert len(password) >= 12
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in first.stdout and "admin" in first.stdout
    assert password not in first.stdout + first.stderr
    [(username, role, kind, disabled, stored)] = accounts(home)
    assert (username, role, kind, disabled) == ("admin", "admin", "person", False)
    assert stored.startswith("$argon2id$")

    again = bootstrap(home)
    assert again.returncode == 0, again.stderr
    assert password not in again.stdout + again.stderr
    assert accounts(home) == [(username, role, kind, disabled, stored)]  # nothing created or changed
    assert path.read_text().strip() == password

    api = Api(create_app({"testing": True, "api_token": SERVICE_TOKEN, "state_dir": home,
                          "project_dir": project.path}))
    api.secrets.add(password)
    token = api.session("admin", password)
    assert api.me(token).get_json()["role"] == "admin"


def test_bootstrap_takes_the_password_from_the_environment(project, tmp_path):
    home, password = tmp_path / "home", new_password()
    done = bootstrap(home, OPCON_ADMIN_PASSWORD=password)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    assert (home / "admin_password").read_text().strip() == password
    assert stat.S_IMODE((home / "admin_password").stat().st_mode) == 0o600
    api = Api(create_app({"testing": True, "api_token": SERVICE_TOKEN, "state_dir": home,
                          "project_dir": project.path}))
    api.secrets.add(password)
    assert api.login("admin", password).status_code == 200

    short_home = tmp_path / "short"
    refused = bootstrap(short_home, OPCON_ADMIN_PASSWORD="too-short")
    assert refused.returncode == 2 and "at least 12" in refused.stderr
    assert "too-short" not in refused.stdout + refused.stderr
    assert accounts(short_home) == [] and not (short_home / "admin_password").exists()
