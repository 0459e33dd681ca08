"""Runs a job in a worker: one step after another, progress and log in the job record.

DVC commands are serialised across workers with a file lock; cancel is honoured between steps.
A failed step leaves what it found: only the `evaluate` stage registers and promotes a model.
"""

from __future__ import annotations

import json
import os
import socket
import threading

from control_api.jobs import tasks
from control_api.jobs.job import CancelledError, Job, Step, StepFailedError
from control_api.jobs.records import JobStore
from control_api.settings import Settings

__all__ = ["CancelledError", "Job", "Step", "StepFailedError", "configure", "execute", "run_steps"]

_context: dict = {}


def configure(settings: Settings, store: JobStore) -> None:
    """Called once by the worker process before it takes tasks."""
    _context.update(settings=settings, store=store, worker=f"{socket.gethostname()}:{os.getpid()}")


def _ensure_context() -> None:
    if not _context:  # a queue consumer started without worker.main (e.g. huey's own CLI)
        from control_api import db
        from control_api.settings import from_env

        settings = from_env()
        configure(settings, JobStore(db.connect(settings.database_url)))


def _heartbeat(job: Job, stop: threading.Event) -> None:
    while not stop.wait(job.settings.job_heartbeat_seconds):
        job.store.heartbeat(job.id)


def run_steps(job: Job, steps: list[Step]) -> dict:
    result: dict = {}
    for index, (name, action) in enumerate(steps):
        if job.store.cancel_requested(job.id):
            raise CancelledError(f"cancelled before step `{name}`")
        job.store.update(job.id, step=name, progress=index / len(steps))
        job.log(f"== {name}")
        result.update(action(job) or {})
    return result


def execute(job_id: str) -> None:
    _ensure_context()
    store: JobStore = _context["store"]
    settings: Settings = _context["settings"]
    if not store.start(job_id, _context["worker"]):
        return  # cancelled while queued, or already taken
    job = Job(job_id, store, settings)
    record = store.get(job_id)
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(job, stop), daemon=True).start()
    try:
        with tasks.plan(record["kind"], record["params"] or {}, settings, job_id) as steps:
            result = run_steps(job, steps)
    except CancelledError as error:
        job.log(str(error))
        store.finish(job_id, "cancelled", error=str(error))
    except Exception as error:  # the job fails with its reason; the worker carries on
        job.log(f"FAILED: {error}")
        store.finish(job_id, "failed", error=str(error))
    else:
        job.log("done: " + json.dumps(result, default=str))
        store.finish(job_id, "succeeded", result=result)
    finally:
        stop.set()
