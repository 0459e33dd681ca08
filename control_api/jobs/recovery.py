"""Jobs whose worker died, and jobs the queue lost: found by any live worker and by the API.

A running job whose worker is gone (a dead pid on this host, or a heartbeat older than
`job_stale_seconds`) is marked `interrupted`, and its record says what it left in the registry. A
queued job whose task is no longer in the queue (a Redis restart without persistence) is queued
again; starting a job is atomic, so a task queued twice runs once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from control_api.jobs.records import JobStore
from control_api.settings import Settings
from ml import params as params_module
from ml import registry

log = logging.getLogger("opcon.worker")

REQUEUE_AFTER_SECONDS = 5.0  # a job queued this long and absent from the queue was lost by it


def dead_on_this_host(worker: str | None) -> bool:
    """True for a worker of this machine whose process is gone (its pid is in its name)."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid() and not _runs_here(worker)


def _runs_here(worker: str) -> bool:
    """Our own pid names the job's worker: true while this process runs it (a job thread's)."""
    return any(thread.name.startswith("job-watch-") for thread in threading.enumerate())


def left_in_registry(settings: Settings):
    """`left_by` for JobStore.reconcile: what a retrain left in the registry."""
    def left_by(job: dict) -> dict:
        if job["kind"] != "retrain":
            return {}
        name = params_module.load(settings.project_dir).registry.model_name
        try:
            return registry.left_by_job(name, job["id"])
        except Exception as error:  # the registry away: the record says it could not tell
            log.warning("job %s: could not read the registry: %s", job["id"], error)
            return {"registry": f"not read: {type(error).__name__}"}
    return left_by


def interrupt_dead_jobs(store: JobStore, settings: Settings) -> list[str]:
    found = store.reconcile(settings.job_stale_seconds, dead_on_this_host, left_in_registry(settings))
    for job_id in found:
        log.warning("job %s was interrupted (its worker stopped)", job_id)
    return found


def requeue_lost(store: JobStore, older_than: float = REQUEUE_AFTER_SECONDS) -> list[str]:
    """Queue again the queued jobs whose task the queue no longer holds."""
    waiting = store.queued_ids(older_than)
    if not waiting:
        return []
    pending = {task.args[0] for task in store.queue.pending() if task.args}
    lost = [job_id for job_id in waiting if job_id not in pending]
    for job_id in lost:
        log.warning("job %s was queued but its task was lost: queued again", job_id)
        store.queue.run_job(job_id)
    return lost


class Throttled:
    """Runs `action` at most once per `seconds` (the API's readiness probe calls it often)."""

    def __init__(self, action, seconds: float):
        self.action, self.seconds, self._last = action, seconds, float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if time.monotonic() - self._last < self.seconds:
                return
            self._last = time.monotonic()
        try:
            self.action()
        except Exception:
            self._last = float("-inf")  # failed: the next call tries again
            raise
