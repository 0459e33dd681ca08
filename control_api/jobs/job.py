"""A job as its steps see it: its record, its log, DVC commands under the one DVC lock."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from filelock import FileLock

from control_api.jobs.kinds import KINDS
from control_api.jobs.records import JobStore
from control_api.settings import Settings
from ml.registry import ACTOR_VARIABLE
from ml.versioning import tool_env


class CancelledError(Exception):
    pass


class StepFailedError(Exception):
    pass


def dvc_lock(settings: Settings) -> FileLock:
    """The lock that serialises DVC commands (and changes of the data) across workers."""
    (settings.state_dir / "locks").mkdir(parents=True, exist_ok=True)
    return FileLock(settings.state_dir / "locks" / "dvc.lock")


class Job:
    """The running job as its steps see it."""

    def __init__(self, job_id: str, store: JobStore, settings: Settings):
        self.id, self.store, self.settings = job_id, store, settings
        record = store.get(job_id) or {}
        self.requested_by, self.requested_role = record.get("requested_by"), record.get("requested_role")
        # one lock object per job: re-entrant, so a step may hold it around several `dvc` calls
        self.dvc_lock = dvc_lock(settings)

    def log(self, text: str) -> None:
        self.store.append_log(self.id, text if text.endswith("\n") else text + "\n")

    def dvc(self, *args: str) -> str:
        """A DVC command in the project, its output streamed into the job log."""
        with self.dvc_lock:
            return self._stream([sys.executable, "-m", "dvc", *args])

    def stages(self, *names: str, fallback: tuple[tuple[str, ...], ...]) -> None:
        """Pipeline stages run by this already warm worker and recorded in dvc.lock, as `dvc repro`
        would leave it (ml.in_process); the `fallback` DVC commands instead when the project's ml code
        is not the code this worker loaded (edited since it started)."""
        from ml import in_process
        from ml.errors import PipelineError

        with self.dvc_lock:
            self.log(f"$ stages {' '.join(names)} (in the worker, then dvc commit)")
            try:
                in_process.run(self.settings.project_dir, names, actor=self.requested_by or "unknown",
                               log=self.log)
                return
            except in_process.CodeChangedError as error:
                self.log(f"{error}; running them with dvc instead")
            except PipelineError as error:
                stage = getattr(error, "stage", None) or " ".join(names)
                raise StepFailedError(f"stage `{stage}` failed: {error}") from None
        for args in fallback:
            self.dvc(*args)

    def _stream(self, command: list[str]) -> str:
        self.log("$ " + " ".join(["dvc", *command[3:]]))
        env = {**tool_env(self.settings.ml), ACTOR_VARIABLE: self.requested_by or "unknown"}
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


def bind(kind: str, actions: list[Callable[[Job], dict | None]]) -> list[Step]:
    """The kind's steps as the catalogue names them, each with its action (one per step, in order)."""
    names = KINDS[kind].steps
    if len(actions) != len(names):
        raise RuntimeError(f"`{kind}` has {len(names)} step(s) in the catalogue, {len(actions)} action(s)")
    return list(zip(names, actions, strict=True))
