"""Faults of the services underneath, live: Redis restarted (queue lost) while jobs are queued and
one runs, and PostgreSQL restarted under prediction traffic.

The API (gunicorn, 2 workers) and a job worker run in scaled-out mode (huey on Redis, records in
PostgreSQL) against a PostgreSQL and a Redis server of this module's own (tests/own_servers.py), so
stopping them disturbs no other test. A personal API token (an engineer service account) is
checked alongside the static service token: it is the credential that needs the database.

Below them, in this process on the same servers: the credential cache of
control_api.identity.resolver (a verified token holds while PostgreSQL is down; a revocation made
while Redis is down holds in every process) and the sign-in counters (503 while Redis is down).
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections import Counter

import pandas as pd
import pytest
import requests
import sqlalchemy as sa
from huey import RedisHuey

from control_api.db import normalise
from monitoring.prediction_log import PredictionLog
from tests.helpers import build_project
from tests.live import TOKEN, running, wait_until
from tests.own_servers import private_postgres, private_redis

pytestmark = pytest.mark.live
QUEUE = "opcon-faults"
FINAL = ("succeeded", "failed", "cancelled", "interrupted")


@pytest.fixture(scope="module")
def pg():
    with private_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server():
    with private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def stack(module_state, pg, redis_server):
    project = build_project(module_state, rows=1000)
    project.train()
    env = {"REDIS_URL": redis_server.url, "OPCON_DATABASE_URL": pg.url, "OPCON_QUEUE_NAME": QUEUE,
           "OPCON_DRIFT_INTERVAL_MINUTES": "0"}
    with running(project, env) as services:
        raw = pd.read_csv(project.raw).head(40)
        services.records = raw[project.params.schema.feature_names].to_dict(orient="records")
        services.person = personal_token(services)
        services.engine = sa.create_engine(normalise(pg.url), pool_pre_ping=True)
        yield services
        services.engine.dispose()


@pytest.fixture
def servers_up(pg, redis_server):
    """Whatever a test did to the servers, they run again for the next one."""
    yield
    if not pg.running:
        pg.start()
    if redis_server.process is None:
        redis_server.start()


def personal_token(services) -> str:
    created = services.post("/api/v1/users", json={"username": "faults-bot", "role": "engineer",
                                                   "kind": "service"})
    assert created.status_code == 201, created.text
    token = services.post("/api/v1/tokens", json={"owner": "faults-bot", "name": "faults",
                                                  "role": "engineer"})
    assert token.status_code == 201, token.text
    return token.json()["token"]


def call(services, method: str, path: str, token: str = TOKEN, **kwargs) -> requests.Response:
    """One request on a new connection, so either API worker may answer it."""
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    return requests.request(method, services.url + path, headers=headers, timeout=60, **kwargs)


def predict(services, token: str, rows: int = 1) -> requests.Response:
    return call(services, "POST", "/api/v1/predict", token, json={"records": services.records[:rows]})


def verify_token_in_each_worker(services, token: str) -> None:
    """Each API worker has checked `token` against the database once (as it would in traffic)."""
    for pid in services.each_worker():
        answer = predict(services, token)
        assert answer.status_code == 200, (pid, answer.text)


class Traffic:
    """Predictions in a thread, alternating the service token and the personal token; every answer
    is kept with the phase (`before`, `down`, `after`) it was sent in."""

    def __init__(self, services):
        self.services, self.phase = services, "before"
        self.answers: list[tuple[str, str, int, str]] = []  # phase, token kind, status, body
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tokens = {"service": TOKEN, "personal": self.services.person}
        while not self._stop.is_set():
            for kind, token in tokens.items():
                phase = self.phase
                try:
                    answer = predict(self.services, token)
                    body = answer.text if answer.status_code == 200 else answer.text[:300]
                    self.answers.append((phase, kind, answer.status_code, body))
                except requests.RequestException as error:
                    self.answers.append((phase, kind, 0, str(error)[:300]))
            self._stop.wait(0.02)  # pacing, so the job worker keeps its share of the 2 cores

    def answered(self, phase: str) -> Counter:
        return Counter(kind for p, kind, status, _ in self.answers if p == phase and status == 200)

    def request_ids(self, phase: str) -> list[str]:
        return [json.loads(body)["request_id"] for p, _, status, body in self.answers
                if p == phase and status == 200]

    def failures(self) -> list:
        return [answer for answer in self.answers if answer[2] != 200]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join(timeout=60)


def submit(services, kind: str, token: str = TOKEN) -> dict:
    answer = call(services, "POST", "/api/v1/jobs", token, json={"kind": kind, "reason": "faults test"})
    assert answer.status_code == 202, answer.text
    return answer.json()


def job_starts(services, job_id: str) -> list[dict]:
    with services.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT params FROM audit_events WHERE action = 'job.start' "
                                    "AND target = :target"), {"target": f"job:{job_id}"}).all()
    return [row.params for row in rows]


# -- Redis ---------------------------------------------------------------------------------------

def test_a_redis_restart_loses_no_job_and_runs_none_twice(stack, redis_server, servers_up):
    verify_token_in_each_worker(stack, stack.person)
    predicted = predict(stack, stack.person, rows=40)  # a drift report needs 20 logged rows
    assert predicted.status_code == 200, predicted.text
    jobs = []
    try:
        jobs.append(submit(stack, "retrain"))
        stack.wait_job(jobs[0]["id"], until=("running",), timeout=60)
        jobs += [submit(stack, kind) for kind in ("drift_report", "validate")]
        assert [job["status"] for job in jobs[1:]] == ["queued", "queued"]
        assert RedisHuey(QUEUE, url=redis_server.url).pending_count() >= 2  # in Redis only

        redis_server.stop()  # no persistence: the queued tasks are gone
        try:
            # predictions need neither the queue nor the identity epoch kept next to it
            for token in (TOKEN, stack.person):
                answer = predict(stack, token)
                assert answer.status_code == 200, answer.text
            # a job asked for now is recorded; its record brings it to the queue when Redis is back
            answer = call(stack, "POST", "/api/v1/jobs", json={"kind": "data_pull"})
            assert answer.status_code == 202, answer.text
            jobs.append(answer.json())
            assert jobs[-1]["status"] == "queued"
        finally:
            redis_server.start()

        finished = {job["kind"]: stack.wait_job(job["id"], timeout=120) for job in jobs}
    finally:
        cancel_unfinished(stack, jobs)  # so that a failure here leaves no kind blocked
    assert {kind: job["status"] for kind, job in finished.items()} == dict.fromkeys(
        ("retrain", "drift_report", "validate", "data_pull"), "succeeded"), {
        kind: (job["status"], job["error"]) for kind, job in finished.items()}
    for job in finished.values():
        starts = job_starts(stack, job["id"])
        assert len(starts) == 1, (job["kind"], starts)  # started once: by one worker, one time
        assert starts[0]["worker"] and job["started_at"] <= job["finished_at"]

    assert stack.workers[0].poll() is None, f"the job worker exited:\n{stack.tail('worker.log')}"
    assert stack.api.poll() is None, f"the API exited:\n{stack.tail('api.log')}"
    assert stack.wait_ready()["queue"] == "ok"


def cancel_unfinished(services, jobs: list[dict]) -> None:
    for job in jobs:
        with contextlib.suppress(requests.RequestException):
            if call(services, "GET", f"/api/v1/jobs/{job['id']}").json()["status"] not in FINAL:
                call(services, "POST", f"/api/v1/jobs/{job['id']}/cancel")


# -- PostgreSQL ----------------------------------------------------------------------------------

JOB_ROUTES = [("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/{id}"), ("GET", "/api/v1/jobs/{id}/log"),
              ("POST", "/api/v1/jobs/{id}/cancel")]


def unavailable_answer(answer: requests.Response) -> tuple[int, str | None, str]:
    """Status, Retry-After and the body (compact JSON when it is JSON) of an answer."""
    try:
        body = json.dumps(answer.json(), separators=(",", ":"))
    except ValueError:
        body = answer.text
    return answer.status_code, answer.headers.get("Retry-After"), body[:300]


def test_a_postgres_restart_keeps_predictions_answered(stack, pg, servers_up):
    verify_token_in_each_worker(stack, stack.person)
    done = submit(stack, "validate")
    assert stack.wait_job(done["id"])["status"] == "succeeded"

    with Traffic(stack) as traffic:
        wait_until(lambda: all(traffic.answered("before")[k] >= 3 for k in ("service", "personal")),
                   30, "predictions are answered before the stop")
        pg.stop()
        traffic.phase = "down"
        try:
            unavailable = {}
            for method, path in JOB_ROUTES:
                answer = call(stack, method, path.format(id=done["id"]))
                unavailable[f"{method} {path}"] = unavailable_answer(answer)
            answer = call(stack, "POST", "/api/v1/jobs", json={"kind": "validate"})
            unavailable["POST /api/v1/jobs"] = unavailable_answer(answer)
            ready = requests.get(f"{stack.url}/ready", timeout=10)
            wait_until(lambda: all(traffic.answered("down")[k] >= 10 for k in ("service", "personal")),
                       30, "predictions are answered while PostgreSQL is down",
                       details=lambda: traffic.failures()[:5])
        finally:
            pg.start()
        traffic.phase = "after"
        # the API's pools reconnect by themselves (pre-ping): every worker answers job routes again
        wait_until(lambda: call(stack, "GET", "/api/v1/jobs").status_code == 200, 30,
                   "the job routes answer again")
        for pid in stack.each_worker():
            answer = call(stack, "GET", f"/api/v1/jobs/{done['id']}")
            assert answer.status_code == 200, (pid, answer.text)
        after = submit(stack, "validate", token=stack.person)
        assert stack.wait_job(after["id"])["status"] == "succeeded"  # the worker reconnected too
        wait_until(lambda: all(traffic.answered("after")[k] >= 3 for k in ("service", "personal")),
                   30, "predictions are answered after the restart")

    assert traffic.failures() == []
    wrong = {route: got for route, got in unavailable.items()
             if got[0] != 503 or got[1] is None or '"reason":"database unavailable"' not in got[2]}
    assert wrong == {}, wrong
    # still ready (predictions need no database), and it says the job records do not answer
    readiness = ready.json()
    assert ready.status_code == 200 and readiness["champion"] is not None, readiness
    assert readiness["jobs"].startswith("job records unreachable"), readiness
    # every prediction answered while the database was down is in the prediction log (files)
    answered = traffic.request_ids("down")
    logged = PredictionLog(stack.project.state / "predictions").logged_rows(answered)
    assert {request_id: logged.get(request_id) for request_id in answered} == dict.fromkeys(answered, 1)
    assert stack.workers[0].poll() is None, f"the job worker exited:\n{stack.tail('worker.log')}"


# -- the credential cache, in this process, on the same servers ---------------------------------

@pytest.fixture
def identities(pg, servers_up):
    from control_api import db
    from control_api.identity.store import IdentityStore

    engine = db.connect(pg.url)
    store = IdentityStore(engine)
    username = f"cache-{uuid.uuid4().hex[:8]}"
    store.create_user(username, "operator", kind="service")
    token, row = store.create_token(username, "cache", "operator", 1, "test")
    yield store, token, row["id"]
    engine.dispose()


def resolver_on(store, epoch):
    from control_api.identity.resolver import Resolver

    # touch_seconds=0: the token's last use is written on every request, as at a first use
    return Resolver(store, epoch, "the-service-token", "admin", touch_seconds=0)


def test_a_verified_token_holds_while_postgres_is_down_and_a_new_one_gets_503(identities, pg,
                                                                              tmp_path):
    from control_api.identity.resolver import FileEpoch

    store, token, _ = identities
    epoch = FileEpoch(tmp_path / "epoch")
    verified, fresh = resolver_on(store, epoch), resolver_on(store, epoch)
    assert verified.resolve(token).role == "operator"
    pg.stop()
    try:
        assert verified.resolve(token).role == "operator"  # its last use cannot be written: no matter
        with pytest.raises(sa.exc.OperationalError):  # never checked here: the API answers 503
            fresh.resolve(token)
    finally:
        pg.start()
    assert fresh.resolve(token).role == "operator"


def test_a_revocation_while_redis_is_down_holds_in_every_process(identities, redis_server):
    from control_api.identity.resolver import RedisEpoch

    store, token, token_id = identities
    epoch_key = f"faults-epoch-{uuid.uuid4().hex[:8]}"
    revoking, other = (resolver_on(store, RedisEpoch(redis_server.url, epoch_key)) for _ in range(2))
    assert revoking.resolve(token) is not None and other.resolve(token) is not None
    redis_server.stop()
    try:
        assert other.resolve(token) is not None  # checked against the database instead
        store.revoke_token(token_id)
        revoking.forget()  # the epoch cannot be bumped: the revocation stands all the same
        assert revoking.resolve(token) is None
        assert other.resolve(token) is None
    finally:
        redis_server.start()
    assert other.resolve(token) is None and revoking.resolve(token) is None


def test_sign_in_is_refused_with_503_while_its_counters_are_unreachable(redis_server, servers_up):
    from control_api.errors import APIError
    from control_api.identity.limits import LoginLimits

    limits = LoginLimits(redis_server.url, 3, 100, 60, namespace=f"faults-{uuid.uuid4().hex[:8]}")
    limits.failed("someone", "127.0.0.1")
    assert limits.wait_seconds("someone", "127.0.0.1") == 0
    redis_server.stop()
    try:
        for attempt in (lambda: limits.wait_seconds("someone", "127.0.0.1"),
                        lambda: limits.failed("someone", "127.0.0.1")):
            with pytest.raises(APIError) as refused:  # not counted: no guess may go through
                attempt()
            assert refused.value.status == 503 and refused.value.headers["Retry-After"]
            assert "sign-in counters unavailable" in refused.value.extra["reason"]
    finally:
        redis_server.start()
    assert limits.wait_seconds("someone", "127.0.0.1") == 0  # a fresh Redis: counting again
