"""Runs a job in a worker: one step after another, progress and log in the job record.

DVC commands are serialised across workers with a file lock; cancel is honoured between steps.
A failed step leaves what it found: only the `evaluate` stage registers and promotes a model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from filelock import FileLock

from control_api.jobs.records import JobStore
from control_api.settings import Settings
from ml.registry import ACTOR_VARIABLE
from ml.versioning import tool_env


class CancelledError(Exception):
    pass


class StepFailedError(Exception):
    pass


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


class Job:
    """The running job as its steps see it."""

    def __init__(self, job_id: str, store: JobStore, settings: Settings):
        self.id, self.store, self.settings = job_id, store, settings
        record = store.get(job_id) or {}
        self.requested_by, self.requested_role = record.get("requested_by"), record.get("requested_role")

    def log(self, text: str) -> None:
        self.store.append_log(self.id, text if text.endswith("\n") else text + "\n")

    def dvc(self, *args: str) -> str:
        """A DVC command in the project, its output streamed into the job log."""
        lock = FileLock(self.settings.state_dir / "locks" / "dvc.lock")
        (self.settings.state_dir / "locks").mkdir(parents=True, exist_ok=True)
        with lock:
            return self._stream([sys.executable, "-m", "dvc", *args])

    def _stream(self, command: list[str]) -> str:
        self.log("$ " + " ".join(["dvc", *command[3:]]))
        env = {**tool_env(), ACTOR_VARIABLE: self.requested_by or "unknown"}
        process = subprocess.Popen(command, cwd=self.settings.project_dir, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, pending, flushed = [], [], time.monotonic()
        for line in process.stdout:
            output.append(line)
            pending.append(line)
            if time.monotonic() - flushed > 1.0:
                self.log("".join(pending))
                pending, flushed = [], time.monotonic()
        process.wait()
        self.log("".join(pending))
        if process.returncode != 0:
            lines = [line.strip() for line in output if line.strip()]
            reason = next((line for line in reversed(lines) if line.startswith("ERROR")), None)
            detail = "\n".join(lines[-12:])
            raise StepFailedError(f"`dvc {' '.join(command[3:])}` failed: {reason or detail}")
        return "".join(output)


Step = tuple[str, Callable[[Job], dict | None]]


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
    from control_api.jobs import tasks

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
        result = run_steps(job, tasks.steps(record["kind"], record["params"] or {}, settings))
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
