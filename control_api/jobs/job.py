"""A job as its steps see it: its record and lease, its log, its child processes, DVC commands
under the one DVC lock.

Every child process of a job runs in a process group of its own and dies with the worker
(ml.child_process); the worker's watch (runner) kills the group on cancel, on timeout and when
the job's lease is lost. Registry writes of the job's stages are fenced by its lease.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

from filelock import FileLock

from control_api.jobs.kinds import KINDS
from control_api.jobs.records import JobStore
from control_api.settings import Settings
from ml import child_process, registry
from ml.registry import ACTOR_VARIABLE
from ml.versioning import tool_env

JOB_VARIABLE = "OPCON_JOB_ID"  # in the environment of every process a job starts
LEASE_VARIABLE = "OPCON_JOB_LEASE"  # the fencing token, for the stage process of a job


class CancelledError(Exception):
    pass


class StepFailedError(Exception):
    pass


class LeaseLostError(Exception):
    """The job was declared interrupted while this worker still ran it."""


def dvc_lock(settings: Settings) -> FileLock:
    """The lock that serialises DVC commands (and changes of the data) across workers."""
    (settings.state_dir / "locks").mkdir(parents=True, exist_ok=True)
    return FileLock(settings.state_dir / "locks" / "dvc.lock")


class Job:
    """The running job as its steps see it."""

    def __init__(self, job_id: str, store: JobStore, settings: Settings, lease: str | None = None):
        self.id, self.store, self.settings, self.lease = job_id, store, settings, lease
        record = store.get(job_id) or {}
        self.requested_by, self.requested_role = record.get("requested_by"), record.get("requested_role")
        # one lock object per job: re-entrant, so a step may hold it around several `dvc` calls
        self.dvc_lock = dvc_lock(settings)
        self.children: dict[subprocess.Popen, float] = {}  # running child -> when it started
        self.stopped: str | None = None  # why the watch killed the children: cancel, timeout, lease
        self._children_lock = threading.Lock()

    def log(self, text: str) -> None:
        self.store.append_log(self.id, text if text.endswith("\n") else text + "\n", self.lease)

    def still_holds(self) -> bool:
        """Renew the lease; False once the job is no longer this worker's."""
        return self.lease is None or self.store.heartbeat(self.id, self.lease)

    def dvc(self, *args: str) -> str:
        """A DVC command in the project, its output streamed into the job log."""
        with self.dvc_lock:
            self.log("$ " + " ".join(["dvc", *args]))
            return self._stream([sys.executable, "-m", "dvc", *args], f"dvc {' '.join(args)}")

    def stages(self, *names: str) -> None:
        """Pipeline stages run by this already warm worker and recorded in dvc.lock, as `dvc repro`
        would leave it (ml.in_process); in a fresh process of the job's when the project's ml code
        is not the code this worker loaded (edited since it started). Registry writes are fenced."""
        from ml import in_process
        from ml.errors import PipelineError

        with self.dvc_lock:
            self.log(f"$ stages {' '.join(names)} (in the worker, then dvc commit)")
            try:
                with registry.fenced(self.id, self.still_holds):
                    in_process.run(self.settings.project_dir, names,
                                   actor=self.requested_by or "unknown", log=self.log)
                return
            except in_process.CodeChangedError as error:
                self.log(f"{error}; running them in a new process instead")
            except registry.LeaseLostError as error:
                raise LeaseLostError(str(error)) from None
            except PipelineError as error:
                stage = getattr(error, "stage", None) or " ".join(names)
                raise StepFailedError(f"stage `{stage}` failed: {error}") from None
            self._stream([sys.executable, "-m", "control_api.jobs.stage_process", *names],
                         f"stages {' '.join(names)}",
                         {LEASE_VARIABLE: self.lease or "", "OPCON_DATABASE_URL": self.settings.database_url})

    def kill_children(self, why: str) -> None:
        """Kill every running child's process group (the watch's answer to cancel, timeout, loss)."""
        self.stopped = why
        with self._children_lock:
            for child in self.children:
                child_process.kill_group(child)

    def overdue_children(self, limit: float) -> bool:
        with self._children_lock:
            return any(time.monotonic() - started > limit for started in self.children.values())

    def _stream(self, command: list[str], what: str, extra_env: dict | None = None) -> str:
        env = {**tool_env(self.settings.ml), ACTOR_VARIABLE: self.requested_by or "unknown",
               JOB_VARIABLE: self.id, **(extra_env or {})}
        process = child_process.popen(command, cwd=self.settings.project_dir, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with self._children_lock:
            self.children[process] = time.monotonic()
        try:
            output = self._follow(process)
        finally:
            with self._children_lock:
                self.children.pop(process, None)
        if self.stopped == "cancel":
            raise CancelledError(f"cancelled during `{what}` (its processes were killed)")
        if self.stopped == "timeout":
            limit = self.settings.job_command_timeout_seconds
            raise StepFailedError(f"`{what}` took longer than {limit:g} s and was killed")
        if self.stopped == "lease":
            raise LeaseLostError(f"`{what}` was killed: the job was declared interrupted")
        if process.returncode != 0:
            lines = [line.strip() for line in output if line.strip()]
            reason = next((line for line in reversed(lines) if line.startswith("ERROR")), None)
            detail = "\n".join(lines[-12:])
            raise StepFailedError(f"`{what}` failed: {reason or detail}")
        return "".join(output)

    def _follow(self, process: subprocess.Popen) -> list[str]:
        output, pending, flushed = [], [], time.monotonic()
        for line in process.stdout:
            output.append(line)
            pending.append(line)
            if time.monotonic() - flushed > 1.0:
                self.log("".join(pending))
                pending, flushed = [], time.monotonic()
        process.wait()
        self.log("".join(pending))
        return output


Step = tuple[str, Callable[[Job], dict | None]]


def bind(kind: str, actions: list[Callable[[Job], dict | None]]) -> list[Step]:
    """The kind's steps as the catalogue names them, each with its action (one per step, in order)."""
    names = KINDS[kind].steps
    if len(actions) != len(names):
        raise RuntimeError(f"`{kind}` has {len(names)} step(s) in the catalogue, {len(actions)} action(s)")
    return list(zip(names, actions, strict=True))
