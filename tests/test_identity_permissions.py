"""The permission matrix, generated from the API's own OpenAPI spec: every operation under /api/v1
× eight callers (four roles signed in, an operator API token, no credentials, a revoked API token,
an expired session).

The expected answer of each cell comes from the operation's `x-permission` and the one permission
table (control_api.identity.permissions.GRANTS): a caller with the permission gets neither 401 nor
403 (nor 500), a known caller without it exactly 403, a caller without valid credentials exactly
401. Allowed cells send a valid request built on real data (a trained champion, a logged
prediction, a drift report, a queued job), so most of them are 2xx; the few that cannot be (roll
back with no previous champion, approve with nothing pending) name the status they expect.

One Flask app on one trained project (real DVC, MLflow, scikit-learn) for the module; every cell
runs once, in a fixed order, inside the `matrix` fixture, and the tests check its rows.
"""

from __future__ import annotations

import io
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask
from flask_openapi3 import APIBlueprint, OpenAPI

from control_api import create_app, db, errors
from control_api.audit import AuditLog
from control_api.identity import permissions, routing
from control_api.identity.resolver import FileEpoch, Resolver
from control_api.identity.routing import SecuredBlueprint
from control_api.identity.store import IdentityStore, digest
from control_api.jobs import runner
from ml import registry
from ml.generate import generate
from tests.helpers import project_for_apps

pytestmark = pytest.mark.pipeline

SERVICE_TOKEN = f"matrix-{secrets.token_hex(12)}"
PASSWORD = f"pw-{secrets.token_urlsafe(12)}"  # every account of this module
PREFIX = "/api/v1/"
METHODS = ("get", "post", "patch", "put", "delete")

ROLE_CALLERS = ("viewer", "operator", "engineer", "admin")
# caller → the role it acts with (None: no valid credentials at all)
CALLERS: dict[str, str | None] = {
    "no credentials": None, "revoked API token": None, "expired session": None,
    "viewer": "viewer", "operator": "operator", "operator API token (admin's)": "operator",
    "engineer": "engineer", "admin": "admin",
}

# the contract (/tmp/opcon_contract.md): what each role adds to the one before it
CONTRACT_ADDS = {
    "viewer": {"read"},
    "operator": {"predict", "feedback:write"},
    "engineer": {"jobs:start", "jobs:cancel", "datasets:upload"},
    "admin": {"models:promote", "models:rollback", "models:approve", "users:manage", "tokens:manage",
              "audit:read"},
}


def contract_permission(method: str, path: str) -> str | None:
    """The permission the contract names for an operation (None: the contract does not say)."""
    special = {
        ("POST", "/api/v1/auth/login"): "public", ("POST", "/api/v1/auth/logout"): "signed-in",
        ("GET", "/api/v1/me"): "signed-in",
        ("GET", "/api/v1/users"): "users:manage", ("POST", "/api/v1/users"): "users:manage",
        ("PATCH", "/api/v1/users/{username}"): "users:manage",
        ("GET", "/api/v1/tokens"): "tokens:manage", ("POST", "/api/v1/tokens"): "tokens:manage",
        ("DELETE", "/api/v1/tokens/{token_id}"): "tokens:manage",
        ("GET", "/api/v1/audit"): "audit:read", ("GET", "/api/v1/audit/verify"): "audit:read",
        ("POST", "/api/v1/predict"): "predict", ("POST", "/api/v1/predict/batch"): "predict",
        ("POST", "/api/v1/feedback"): "feedback:write",
        ("POST", "/api/v1/jobs"): "jobs:start", ("POST", "/api/v1/jobs/{job_id}/cancel"): "jobs:cancel",
        ("POST", "/api/v1/datasets"): "datasets:upload",
        ("POST", "/api/v1/models/{version}/promote"): "models:promote",
        ("POST", "/api/v1/models/rollback"): "models:rollback",
        ("POST", "/api/v1/models/{version}/approve"): "models:approve",
        ("POST", "/api/v1/models/{version}/reject"): "models:approve",
    }
    if (method, path) in special:
        return special[(method, path)]
    return "read" if method == "GET" else None


# -- the requests each operation is sent ---------------------------------------------------------

@dataclass
class Request:
    path: str
    kwargs: dict = field(default_factory=dict)
    allowed: tuple[int, ...] | None = None  # statuses an allowed caller may get; None: any 2xx
    generic: bool = False  # built from the spec alone (an operation this module does not know)


@dataclass
class World:
    """Everything the cells need: the app, real objects to point at, one credential per caller."""

    app: Flask
    services: object
    project: object
    credentials: dict[str, str | None]
    users: dict[str, str]  # role caller → username
    record: dict
    request_id: str  # a logged prediction
    report_id: str
    job_id: str  # a finished job (the drift report)
    cancellable_job_id: str  # a queued job: the first allowed cancel succeeds, the rest are 409
    token_id: str  # a token the allowed callers revoke (again)
    target_user: str
    next_id: int = 0  # the next id column value of an uploaded batch

    def csv(self, rows: int, seed: int) -> bytes:
        frame = generate(rows, seed, first_id=self.next_id)
        self.next_id += rows
        return frame.to_csv(index=False).encode()


def _multipart(content: bytes, name: str = "batch.csv") -> dict:
    return {"data": {"file": (io.BytesIO(content), name)}, "content_type": "multipart/form-data"}


def request_for(world: World, method: str, path: str, caller: str, spec_op: dict) -> Request:
    """A valid request for one operation as `caller` sends it (fresh objects where it has effects)."""
    unique = uuid.uuid4().hex[:8]
    builders = {
        ("POST", "/api/v1/auth/login"): lambda: Request(path, {"json": {
            "username": world.users["viewer"], "password": PASSWORD}}),
        # a session signs out of a fresh session of its own (see `send`); a token cannot sign out
        ("POST", "/api/v1/auth/logout"): lambda: Request(
            path, allowed=(200,) if caller in ROLE_CALLERS else (409,)),
        ("POST", "/api/v1/users"): lambda: Request(path, {"json": {
            "username": f"m-new-{unique}", "role": "viewer", "password": PASSWORD}}, (201,)),
        ("PATCH", "/api/v1/users/{username}"): lambda: Request(
            f"/api/v1/users/{world.target_user}", {"json": {"display_name": f"Target {unique}"}}),
        ("GET", "/api/v1/tokens"): lambda: Request(path, {"query_string": {"owner": world.target_user}}),
        ("POST", "/api/v1/tokens"): lambda: Request(path, {"json": {
            "owner": world.target_user, "name": f"matrix {unique}", "role": "viewer",
            "expires_days": 1}}, (201,)),
        ("DELETE", "/api/v1/tokens/{token_id}"): lambda: Request(f"/api/v1/tokens/{world.token_id}"),
        ("GET", "/api/v1/audit"): lambda: Request(path, {"query_string": {"limit": 5}}),
        ("POST", "/api/v1/predict"): lambda: Request(path, {"json": {"records": [world.record]}}),
        ("POST", "/api/v1/predict/batch"): lambda: Request(path, _multipart(world.csv(5, 11))),
        ("GET", "/api/v1/predictions/summary"): lambda: Request(path, {"query_string": {"minutes": 60}}),
        ("GET", "/api/v1/models/{version}/card"): lambda: Request("/api/v1/models/1/card"),
        ("POST", "/api/v1/models/{version}/promote"): lambda: Request(
            "/api/v1/models/1/promote", {"json": {"reason": f"matrix {caller}"}}),
        # version 1 is the only champion there has been: nothing to roll back to
        ("POST", "/api/v1/models/rollback"): lambda: Request(path, allowed=(409,)),
        # nothing waits for approval (registry.require_approval is off)
        ("POST", "/api/v1/models/{version}/approve"): lambda: Request(
            "/api/v1/models/1/approve", {"json": {"comment": "matrix"}}, (409,)),
        ("POST", "/api/v1/models/{version}/reject"): lambda: Request(
            "/api/v1/models/1/reject", {"json": {"comment": "matrix"}}, (409,)),
        # validated at once, then a job adds it: the first allowed caller queues that job (no worker
        # runs here), the others are shown it (single flight)
        ("POST", "/api/v1/datasets"): lambda: Request(path, _multipart(world.csv(40, 12)), (202, 409)),
        ("POST", "/api/v1/feedback"): lambda: Request(path, {"json": {"items": [{
            "request_id": world.request_id, "row": 0,
            "label": world.project.params.schema.target.positive}]}}),
        # single flight: the first allowed caller queues it, the others are shown that job
        ("POST", "/api/v1/jobs"): lambda: Request(path, {"json": {"kind": "validate"}}, (202, 409)),
        ("GET", "/api/v1/jobs/kinds"): lambda: Request(path, allowed=(200,)),
        ("GET", "/api/v1/jobs/{job_id}"): lambda: Request(f"/api/v1/jobs/{world.job_id}"),
        ("GET", "/api/v1/jobs/{job_id}/log"): lambda: Request(f"/api/v1/jobs/{world.job_id}/log"),
        ("POST", "/api/v1/jobs/{job_id}/cancel"): lambda: Request(
            f"/api/v1/jobs/{world.cancellable_job_id}/cancel", allowed=(200, 409)),
        ("GET", "/api/v1/reports/{report_id}"): lambda: Request(f"/api/v1/reports/{world.report_id}"),
        ("GET", "/api/v1/reports/{report_id}/html"): lambda: Request(
            f"/api/v1/reports/{world.report_id}/html"),
    }
    if (method, path) in builders:
        return builders[(method, path)]()
    return generic_request(path, spec_op)


def generic_request(path: str, spec_op: dict) -> Request:
    """An operation this module does not know yet: path parameters filled from their schema, an
    empty JSON body. Allowed callers must still get neither 401 nor 403 (a 404 or 422 is fine)."""
    def value(name: str) -> str:
        schema = next((p.get("schema", {}) for p in spec_op.get("parameters", [])
                       if p.get("name") == name and p.get("in") == "path"), {})
        return "1" if schema.get("type") == "integer" else "unknown"

    concrete = re.sub(r"\{([^}]+)\}", lambda m: value(m.group(1)), path)
    content = spec_op.get("requestBody", {}).get("content", {})
    kwargs = {"json": {}} if "application/json" in content else {}
    return Request(concrete, kwargs, allowed=tuple(range(200, 500)), generic=True)


# -- building the world --------------------------------------------------------------------------

def sign_in(client, username: str) -> str:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["token"]


def bearer(token: str | None) -> dict:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def world(module_state):
    with project_for_apps(module_state, rows=600) as project:
        yield build_world(project)


def build_world(project) -> World:
    project.train()
    app = create_app({"testing": True, "api_token": SERVICE_TOKEN, "state_dir": project.state,
                      "project_dir": project.path})
    services = app.extensions["opcon"]
    client = app.test_client()
    service = bearer(SERVICE_TOKEN)
    store: IdentityStore = services.identities

    users = {role: f"m-{role}" for role in ROLE_CALLERS}
    for role, username in users.items():
        store.create_user(username, role, password=PASSWORD, created_by="matrix")
    store.create_user("m-target", "viewer", password=PASSWORD, created_by="matrix")
    credentials: dict[str, str | None] = {role: sign_in(client, users[role]) for role in ROLE_CALLERS}
    credentials["no credentials"] = None

    def new_token(owner: str, role: str) -> dict:
        response = client.post("/api/v1/tokens", headers=service,
                               json={"owner": owner, "name": f"matrix {role}", "role": role})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    credentials["operator API token (admin's)"] = new_token(users["admin"], "operator")["token"]
    revoked = new_token(users["engineer"], "engineer")
    assert client.delete(f"/api/v1/tokens/{revoked['id']}", headers=service).status_code == 200
    credentials["revoked API token"] = revoked["token"]
    # a session whose expiry has passed (set in the database; never used before, so no process
    # has it cached as valid)
    expired = sign_in(client, users["admin"])
    with services.engine.begin() as conn:
        changed = conn.execute(db.sessions.update().where(db.sessions.c.token_hash == digest(expired))
                               .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))).rowcount
    assert changed == 1
    credentials["expired session"] = expired

    schema = project.params.schema
    record = {f.name: f.typical if f.type == "category" else float(f.typical) for f in schema.features}
    frame = generate(40, 5)
    records = [{f.name: str(row[f.name]) if f.type == "category" else float(row[f.name])
                for f in schema.features} for row in frame[schema.feature_names].to_dict("records")]
    predicted = client.post("/api/v1/predict", headers=service, json={"records": records})
    assert predicted.status_code == 200, predicted.get_json()

    drift = client.post("/api/v1/jobs", headers=service, json={"kind": "drift_report"})
    assert drift.status_code == 202, drift.get_json()
    saved = dict(runner._context)  # the runner's process-wide context: put back afterwards
    runner.configure(services.settings, services.jobs)
    try:
        runner.execute(drift.get_json()["id"])
    finally:
        runner._context.clear()
        runner._context.update(saved)
    finished = services.jobs.get(drift.get_json()["id"])
    assert finished["status"] == "succeeded", finished["log"][-2000:]

    # what allowed readers and operators do once, done now: a label for a row is added once,
    # replaced after (GET /datasets changes nothing: the app recorded the data version when it started)
    assert client.get("/api/v1/datasets", headers=service).status_code == 200
    labelled = client.post("/api/v1/feedback", headers=service, json={"items": [{
        "request_id": predicted.get_json()["request_id"], "row": 0, "label": schema.target.positive}]})
    assert labelled.status_code == 200, labelled.get_json()

    cancellable = client.post("/api/v1/jobs", headers=service, json={"kind": "data_pull"})
    assert cancellable.status_code == 202
    throwaway = new_token("m-target", "viewer")
    world = World(app, services, project, credentials, users, record,
                  predicted.get_json()["request_id"], finished["result"]["report_id"],
                  finished["id"], cancellable.get_json()["id"], throwaway["id"], "m-target")
    world.next_id = int(pd.read_csv(project.raw)[schema.id_columns[0]].max()) + 1
    return world


@pytest.fixture(scope="module")
def spec(world) -> dict:
    response = world.app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    """(METHOD, path, operation) of every operation under /api/v1, in the spec's order."""
    return [(method.upper(), path, op) for path, item in spec["paths"].items()
            if path.startswith(PREFIX) for method, op in item.items() if method in METHODS]


def expected_class(permission: str, role: str | None) -> str:
    if permission == permissions.PUBLIC:
        return "allowed"
    if role is None:
        return "401"
    if permission == permissions.SIGNED_IN or permission in permissions.GRANTS[role]:
        return "allowed"
    return "403"


def snapshot(world: World) -> dict:
    """What a refused request must not change."""
    with world.services.engine.connect() as conn:
        counts = {table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                  for table in (db.users, db.api_tokens, db.jobs, db.data_versions, db.feedback,
                                db.approvals)}
        counts["revoked tokens"] = conn.execute(sa.select(sa.func.count()).select_from(db.api_tokens)
                                                .where(db.api_tokens.c.revoked_at.is_not(None))).scalar()
        counts["job states"] = sorted(conn.execute(sa.select(db.jobs.c.id, db.jobs.c.status)).all())
        counts["users"] = sorted(map(tuple, conn.execute(sa.select(
            db.users.c.username, db.users.c.display_name, db.users.c.role, db.users.c.disabled)).all()))
    name = world.project.params.registry.model_name
    counts["champion"] = str(registry.champion(name).version)
    counts["versions"] = len(registry.versions(name))
    counts["raw rows"] = len(pd.read_csv(world.project.raw))
    return counts


@dataclass
class Cell:
    caller: str
    method: str
    path: str
    permission: str
    expected: str  # allowed, 401, 403
    status: int
    body: dict | None
    problem: str | None
    generic: bool = False
    request_id: str = ""


def check_cell(cell: Cell, request: Request, role: str | None, response) -> str | None:
    """Why this answer breaks the rule, or None."""
    status, body = cell.status, cell.body or {}
    if cell.expected == "allowed":
        if status in (401, 403) or status >= 500:
            return f"allowed caller got {status}: {body.get('error')}"
        wanted = request.allowed or tuple(range(200, 300))
        if status not in wanted:
            return f"allowed caller got {status} (expected one of {wanted}): {str(body)[:300]}"
        return None
    if status != int(cell.expected):
        return f"expected exactly {cell.expected}, got {status}: {str(body)[:300]}"
    if body.get("permission") != cell.permission:
        return f"{status} body names permission {body.get('permission')!r}, not {cell.permission!r}"
    if not isinstance(body.get("error"), str) or not isinstance(body.get("details"), list):
        return f"{status} body is not the error body: {body}"
    if status == 401 and "Bearer" not in response.headers.get("WWW-Authenticate", ""):
        return "401 without a WWW-Authenticate: Bearer header"
    if status == 403 and body.get("role") != role:
        return f"403 body names role {body.get('role')!r}, not {role!r}"
    return None


def send(world: World, client, caller: str, operation: tuple[str, str, dict]) -> tuple[Cell, Request]:
    method, path, op = operation
    request = request_for(world, method, path, caller, op)
    token = world.credentials[caller]
    if (method, path) == ("POST", "/api/v1/auth/logout") and caller in ROLE_CALLERS:
        token = sign_in(client, world.users[caller])  # sign out of a session of its own
    request_id = f"cell-{uuid.uuid4().hex}"
    response = client.open(request.path, method=method,
                           headers={**bearer(token), "X-Request-ID": request_id}, **request.kwargs)
    body = response.get_json(silent=True) if response.is_json else None
    permission = op.get("x-permission")
    cell = Cell(caller, method, path, permission, expected_class(permission, CALLERS[caller]),
                response.status_code, body, None, request.generic, request_id)
    cell.problem = check_cell(cell, request, CALLERS[caller], response)
    shown = response.get_data()
    if token and token.encode() in shown and (method, path) != ("POST", "/api/v1/auth/login"):
        cell.problem = (cell.problem or "") + " / the response contains the caller's credential"
    return cell, request


@pytest.fixture(scope="module")
def matrix(world, spec) -> dict[str, list[Cell]]:
    """Every cell, run once: the callers that may change little first, one caller at a time."""
    client = world.app.test_client()
    ops = operations(spec)
    rows: dict[str, list[Cell]] = {}
    for caller, role in CALLERS.items():
        before = snapshot(world)
        rows[caller] = [send(world, client, caller, operation)[0] for operation in ops]
        after = snapshot(world)
        if role is None or not ({"jobs:start", "users:manage"} & permissions.GRANTS[role]):
            # a caller that may change none of these (feedback for a row is replaced, not added)
            changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            if changed:
                rows[caller].append(Cell(caller, "-", "(state)", "-", "unchanged", 0, None,
                                         f"refused requests changed {changed}"))
    return rows


# -- the tests -----------------------------------------------------------------------------------

def test_every_api_operation_declares_a_known_permission(spec):
    ops = operations(spec)
    assert len(ops) >= 30, [f"{m} {p}" for m, p, _ in ops]
    known = permissions.ALL | {permissions.PUBLIC, permissions.SIGNED_IN}
    missing = [f"{m} {p}" for m, p, op in ops if "x-permission" not in op]
    assert not missing, f"operations without x-permission: {missing}"
    unknown = {f"{m} {p}": op["x-permission"] for m, p, op in ops if op["x-permission"] not in known}
    assert not unknown, unknown
    for method, path, op in ops:
        responses = op.get("responses", {})
        if op["x-permission"] != permissions.PUBLIC:
            assert {"401", "403"} <= set(responses), f"{method} {path} documents {sorted(responses)}"


def test_the_spec_names_the_contracts_permission_for_each_operation(spec):
    wrong = {}
    for method, path, op in operations(spec):
        wanted = contract_permission(method, path)
        if wanted is not None and op["x-permission"] != wanted:
            wrong[f"{method} {path}"] = (op["x-permission"], wanted)
    assert not wrong, f"x-permission (spec, contract): {wrong}"


def test_the_permission_table_is_the_contracts():
    assert permissions.ROLES == ("viewer", "operator", "engineer", "admin")
    granted: set[str] = set()
    for role in permissions.ROLES:
        granted |= CONTRACT_ADDS[role]
        assert permissions.GRANTS[role] == granted, role
    assert not permissions.allows("viewer", "predict")
    assert permissions.allows("viewer", permissions.SIGNED_IN)
    assert permissions.lower("admin", "operator") == permissions.lower("operator", "admin") == "operator"


def test_a_public_operation_asks_for_no_credentials_in_the_spec(spec):
    public = [(m, p, op) for m, p, op in operations(spec) if op["x-permission"] == permissions.PUBLIC]
    assert [(m, p) for m, p, _ in public] == [("POST", "/api/v1/auth/login")]
    for method, path, op in public:
        # routing.SecuredBlueprint._secured sets `security=[]` for public routes, but flask-openapi3
        # appends the blueprint's abp_security to it, so the spec says login needs a bearer token
        assert op.get("security", []) == [], (
            f"API bug: {method} {path} is public (x-permission: public) but its OpenAPI "
            f"security is {op.get('security')} (control_api/identity/routing.py, "
            "SecuredBlueprint._secured: `options.setdefault('security', [])` is overridden by "
            "abp_security)")


@pytest.mark.parametrize("caller", list(CALLERS))
def test_permission_matrix(matrix, caller):
    row = matrix[caller]
    problems = [f"{c.method} {c.path} [{c.permission}] expected {c.expected}: {c.problem}"
                for c in row if c.problem]
    assert not problems, f"{caller}: {len(problems)} cell(s) wrong:\n" + "\n".join(problems)
    if CALLERS[caller] is None:
        assert {c.status for c in row if c.permission != permissions.PUBLIC} == {401}


def test_matrix_size_and_audit_of_every_refusal(matrix, spec, world, record_property, capsys):
    ops = operations(spec)
    cells = [c for row in matrix.values() for c in row if c.method != "-"]
    assert len(cells) == len(ops) * len(CALLERS)
    counts = {kind: sum(c.expected == kind for c in cells) for kind in ("allowed", "401", "403")}
    record_property("permission_matrix", f"{len(ops)} operations x {len(CALLERS)} callers")
    with capsys.disabled():
        print(f"\npermission matrix: {len(ops)} operations × {len(CALLERS)} callers = {len(cells)} "
              f"cells ({counts['allowed']} allowed, {counts['403']} → 403, {counts['401']} → 401)")
        generic = sorted({f"{c.method} {c.path}" for c in cells if c.generic})
        if generic:
            print(f"operations sent a request built from the spec alone: {generic}")
    assert counts["403"] > 0 and counts["401"] > 0
    # every refused request that is not a GET is in the audit trail as refused
    events, _ = world.services.audit.query(limit=100_000)
    refused = {(e["action"], e["outcome"]) for e in events if e["status"] in (401, 403)}
    assert ("models.promote", "forbidden") in refused and ("models.promote", "denied") in refused
    assert ("users.create_user", "forbidden") in refused
    assert world.services.audit.verify()["intact"] is True


def test_every_cell_that_is_not_a_get_is_in_the_audit_trail(matrix, world):
    """Allowed or refused, every request that is not a GET leaves one event, in the name of the
    caller, with its status and outcome (scoring is the exception: an answered prediction is in the
    prediction log instead)."""
    with world.services.engine.connect() as conn:
        events = {r.request_id: db.row_dict(r) for r in conn.execute(sa.select(db.audit_events))}
    outcomes = {401: "denied", 403: "forbidden"}
    actors = {**{caller: world.users[caller] for caller in ROLE_CALLERS},
              "operator API token (admin's)": world.users["admin"]}
    wrong, checked = [], 0
    for caller, row in matrix.items():
        for cell in row:
            if cell.method in ("-", "GET"):
                continue
            event = events.get(cell.request_id)
            if cell.path.startswith("/api/v1/predict") and cell.expected == "allowed":
                if event is not None:
                    wrong.append(f"{caller} {cell.method} {cell.path}: an answered prediction is audited")
                continue
            checked += 1
            if event is None:
                wrong.append(f"{caller} {cell.method} {cell.path} ({cell.status}): no audit event")
                continue
            want = {"status": cell.status,
                    "outcome": outcomes.get(cell.status, "ok" if cell.status < 400 else "rejected")}
            if cell.path != "/api/v1/auth/login":
                want.update(actor=actors.get(caller, "anonymous"), role=CALLERS[caller])
            got = {k: event[k] for k in want}
            if got != want:
                wrong.append(f"{caller} {cell.method} {cell.path}: {got} != {want}")
    assert checked >= 100
    assert not wrong, "\n".join(wrong)


def test_a_route_without_a_permission_stops_the_app_from_starting(tmp_path):
    store = IdentityStore(db.connect(f"sqlite:///{tmp_path / 'tiny.db'}"))
    resolver = Resolver(store, FileEpoch(tmp_path / "epoch"), "tiny-service-token", "viewer")
    audit = AuditLog(store.engine)

    def tiny_app(extra: str | None) -> tuple[Flask, list]:
        app = OpenAPI(__name__)
        errors.register(app)
        secured = SecuredBlueprint("tiny", __name__)

        @secured.get("/fine", permission="read")
        def fine():
            return {"ok": True}

        @secured.post("/work", permission="jobs:start")
        def work():
            return {"ok": True}

        app.register_api(secured)
        blueprints = [secured]
        if extra == "blueprint":
            plain = APIBlueprint("plain", __name__, url_prefix="/api/v1")

            @plain.get("/naked")
            def naked():
                return {"ok": True}

            app.register_api(plain)
            blueprints.append(plain)
        elif extra == "route":
            app.add_url_rule("/api/v1/bare", "bare", lambda: {"ok": True})
        return app, blueprints

    for extra, named in (("blueprint", "/api/v1/naked"), ("route", "/api/v1/bare")):
        app, blueprints = tiny_app(extra)
        with pytest.raises(RuntimeError, match=re.escape(named)):
            routing.install(app, blueprints, resolver, audit)

    with pytest.raises(ValueError, match="unknown permission"):
        SecuredBlueprint("bad", __name__).get("/x", permission="read-everything")(lambda: None)

    app, blueprints = tiny_app(None)
    routing.install(app, blueprints, resolver, audit)  # every route declares one: it starts
    client = app.test_client()
    service = bearer("tiny-service-token")  # a viewer here
    assert client.get("/api/v1/fine", headers=service).status_code == 200
    assert client.get("/api/v1/fine").status_code == 401
    refused = client.post("/api/v1/work", headers=service)
    assert refused.status_code == 403 and refused.get_json()["permission"] == "jobs:start"
    assert [(e["action"], e["status"]) for e in audit.query()[0]] == [("tiny.work", 403)]
