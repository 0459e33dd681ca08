"""Scaled-out mode: huey on the local Redis, job records in the local PostgreSQL, two workers.

These servers run on every machine of this project (127.0.0.1:6379 and :5432); the tests use them
for real and fail, never skip, when they are missing.
"""

from __future__ import annotations

import uuid

import pytest
import redis
import sqlalchemy as sa

from tests.helpers import build_project
from tests.live import Services

pytestmark = pytest.mark.live
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def new_database():
    name = f"opcon_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"  # the form users write
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


postgres_url = pytest.fixture(scope="module")(new_database)
empty_postgres_url = pytest.fixture(new_database)


@pytest.fixture(scope="module")
def scaled(module_state, postgres_url):
    project = build_project(module_state, rows=1500)
    project.train()
    queue = f"opcon-test-{uuid.uuid4().hex[:8]}"
    services = Services(project.path, project.state, {
        "REDIS_URL": REDIS_URL, "OPCON_DATABASE_URL": postgres_url, "OPCON_QUEUE_NAME": queue})
    services.start_api()
    services.start_worker()
    services.start_worker()
    services.wait_ready()
    services.queue, services.database, services.project = queue, postgres_url, project
    yield services
    services.stop()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"*{queue}*"):
        client.delete(key)


def test_jobs_run_through_redis_and_are_recorded_in_postgres(scaled):
    started = {kind: scaled.post("/api/v1/jobs", json={"kind": kind}).json()
               for kind in ("validate", "data_pull")}
    finished = {kind: scaled.wait_job(job["id"]) for kind, job in started.items()}
    assert {kind: job["status"] for kind, job in finished.items()} == {
        "validate": "succeeded", "data_pull": "succeeded"}, finished
    assert finished["validate"]["result"]["validation"]["success"] is True

    engine = sa.create_engine(scaled.database.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kind, status, worker FROM jobs")).all()
    engine.dispose()
    assert sorted((kind, status) for kind, status, _ in rows) == [
        ("data_pull", "succeeded"), ("validate", "succeeded")]
    assert not (scaled.project.state / "jobs" / "queue.db").exists()  # no SQLite queue in this mode
    worker_log = scaled.tail("worker.log", lines=100_000)
    assert worker_log.count(f"queue {REDIS_URL}") == 2  # both workers on Redis
    assert all(worker for _, _, worker in rows)


def test_ready_reports_the_redis_queue(scaled):
    body = scaled.get("/ready").json()
    assert body["ready"] is True and body["queue"] == "ok"


def test_servers_starting_together_create_the_tables_once(empty_postgres_url):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from control_api import db

    barrier = Barrier(4)

    def start(_) -> list[str]:
        barrier.wait()  # four processes' worth of start-up at the same instant
        engine = db.connect(empty_postgres_url)
        try:
            return sorted(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()

    with ThreadPoolExecutor(4) as pool:
        tables = list(pool.map(start, range(4)))
    assert tables[0] and all(found == tables[0] for found in tables)
