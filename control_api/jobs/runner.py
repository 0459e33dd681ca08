"""Runs a job in a worker: one step after another, progress and log in the job record.

DVC commands are serialised across workers with a file lock. Cancel is honoured between steps,
and kills the job's child processes (a `dvc pull`) at once. A failed step leaves what it found:
only the `evaluate` stage registers and promotes a model. A worker that finds its lease lost (the
job was declared interrupted while it was slow) stops and writes nothing more to the record.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from control_api.jobs import tasks
from control_api.jobs.job import CancelledError, Job, LeaseLostError, Step, StepFailedError
from control_api.jobs.records import JobStore
from control_api.settings import Settings

__all__ = ["CancelledError", "Job", "LeaseLostError", "Step", "StepFailedError", "configure", "execute",
           "run_steps"]

log = logging.getLogger("opcon.worker")
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


WATCH_SECONDS = 1.0  # how soon a cancel or a timeout kills the job's child processes


def _watch(job: Job, stop: threading.Event) -> None:
    """Beat the job's heartbeat (renewing its lease), and kill its child processes on cancel, on
    timeout, or when the lease is lost."""
    beaten = time.monotonic()
    while not stop.wait(min(WATCH_SECONDS, job.settings.job_heartbeat_seconds)):
        try:
            if time.monotonic() - beaten >= job.settings.job_heartbeat_seconds:
                beaten = time.monotonic()
                if not job.still_holds():
                    job.kill_children("lease")
                    return
            if job.children and job.store.cancel_requested(job.id):
                job.kill_children("cancel")
            elif job.overdue_children(job.settings.job_command_timeout_seconds):
                job.kill_children("timeout")
        except Exception:  # the database away for a moment: beat again at the next turn
            log.warning("job %s: heartbeat failed", job.id, exc_info=True)


def run_steps(job: Job, steps: list[Step]) -> dict:
    result: dict = {}
    for index, (name, action) in enumerate(steps):
        if job.store.cancel_requested(job.id):
            raise CancelledError(f"cancelled before step `{name}`")
        if not job.store.update(job.id, job.lease, step=name, progress=index / len(steps)):
            raise LeaseLostError(f"the job was declared interrupted before step `{name}`")
        job.log(f"== {name}")
        result.update(action(job) or {})
    return result


def execute(job_id: str) -> None:
    _ensure_context()
    store: JobStore = _context["store"]
    settings: Settings = _context["settings"]
    lease = store.start(job_id, _context["worker"])
    if lease is None:
        return  # cancelled while queued, or already taken
    job = Job(job_id, store, settings, lease)
    record = store.get(job_id)
    stop = threading.Event()
    threading.Thread(target=_watch, args=(job, stop), name=f"job-watch-{job_id}", daemon=True).start()
    try:
        with tasks.plan(record["kind"], record["params"] or {}, settings, job_id) as steps:
            result = run_steps(job, steps)
    except LeaseLostError as error:
        log.warning("job %s: %s; its record is left as the reconciler wrote it", job_id, error)
    except CancelledError as error:
        job.log(str(error))
        store.finish(job_id, "cancelled", error=str(error), lease=lease)
    except Exception as error:  # the job fails with its reason; the worker carries on
        job.log(f"FAILED: {error}")
        store.finish(job_id, "failed", error=str(error), lease=lease)
    else:
        job.log("done: " + json.dumps(result, default=str))
        store.finish(job_id, "succeeded", result=result, lease=lease)
    finally:
        stop.set()
