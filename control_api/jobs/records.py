"""Job records: what the API and UI show, and what survives a killed worker.

huey drops a task from its queue when a worker takes it, so a worker killed mid-job loses the task;
the record stays `running` with a heartbeat that stops. Workers mark such records `interrupted`
(reconcile) and release their locks, so nothing waits forever.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from control_api.audit import AuditLog
from control_api.db import job_locks, jobs, row_dict

LOG_LIMIT = 200_000  # characters kept per job; the oldest are dropped first


def now() -> datetime:
    return datetime.now(UTC)


_as_dict = row_dict


class JobStore:
    def __init__(self, engine: sa.Engine, queue=None):
        self.engine, self.queue = engine, queue
        self.audit = AuditLog(engine)

    def _audit(self, job_id: str, action: str, outcome: str, **params) -> None:
        """job.start / job.end in the audit trail, in the name of whoever asked for the job."""
        job = self.get(job_id)
        if job is None:
            return
        self.audit.record(actor=job["requested_by"] or "unknown", role=job["requested_role"],
                          action=action, target=f"job:{job_id}", outcome=outcome,
                          params={"kind": job["kind"], **job["params"], **params})

    # -- the API side --------------------------------------------------------------------------
    def submit(self, kind: str, params: dict, reason: str, requested_by: str | None = None,
               requested_role: str | None = None, *, job_id: str | None = None) -> tuple[dict, bool]:
        """Queue a job, or return the active job of that kind (created=False): single flight.
        `requested_by` is who asked (a user, or a policy); a promotion the job makes is theirs.
        `job_id`: an id chosen beforehand (a file the job reads is named after it)."""
        job_id = job_id or str(uuid.uuid4())
        try:
            with self.engine.begin() as conn:
                conn.execute(job_locks.insert().values(kind=kind, job_id=job_id))
                conn.execute(jobs.insert().values(
                    id=job_id, kind=kind, status="queued", params=params, reason=reason,
                    progress=0.0, created_at=now(), cancel_requested=False, log="",
                    requested_by=requested_by, requested_role=requested_role))
        except sa.exc.IntegrityError:
            active = self.active(kind)
            if active is not None:
                return active, False
            return self.submit(kind, params, reason, requested_by, requested_role,
                               job_id=job_id)  # the holder finished
        if self.queue is not None:
            self.queue.run_job(job_id)
        return self.get(job_id), True

    def active(self, kind: str) -> dict | None:
        with self.engine.connect() as conn:
            holder = conn.execute(sa.select(job_locks.c.job_id).where(job_locks.c.kind == kind)).scalar()
            if holder is None:
                return None
            return _as_dict(conn.execute(sa.select(jobs).where(jobs.c.id == holder)).first())

    def get(self, job_id: str) -> dict | None:
        with self.engine.connect() as conn:
            return _as_dict(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first())

    def list(self, kind: str | None = None, status: str | None = None, limit: int = 50,
             offset: int = 0) -> tuple[list[dict], int]:
        query, count = sa.select(jobs), sa.select(sa.func.count()).select_from(jobs)
        for column, value in ((jobs.c.kind, kind), (jobs.c.status, status)):
            if value is not None:
                query, count = query.where(column == value), count.where(column == value)
        query = query.order_by(jobs.c.created_at.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_as_dict(r) for r in conn.execute(query)], conn.execute(count).scalar()

    def latest(self, kind: str, reason: str | None = None) -> dict | None:
        """The newest job of a kind (and with exactly this reason), whatever its status."""
        query = sa.select(jobs).where(jobs.c.kind == kind)
        if reason is not None:
            query = query.where(jobs.c.reason == reason)
        with self.engine.connect() as conn:
            return _as_dict(conn.execute(query.order_by(jobs.c.created_at.desc()).limit(1)).first())

    def cancel(self, job_id: str) -> dict | None:
        """A queued job is cancelled now; a running one at its next step boundary."""
        with self.engine.begin() as conn:
            done = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued")
                                .values(status="cancelled", finished_at=now(),
                                        cancel_requested=True)).rowcount
            if done:
                conn.execute(job_locks.delete().where(job_locks.c.job_id == job_id))
            else:
                conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "running")
                             .values(cancel_requested=True))
        if done:
            self._audit(job_id, "job.end", "cancelled", error="cancelled while queued")
        return self.get(job_id)

    # -- the worker side -----------------------------------------------------------------------
    def start(self, job_id: str, worker: str) -> bool:
        """queued → running, atomically; False when the job is gone, cancelled or taken."""
        with self.engine.begin() as conn:
            started = bool(conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued")
                .values(status="running", started_at=now(), heartbeat_at=now(), worker=worker)
            ).rowcount)
        if started:
            self._audit(job_id, "job.start", "running", worker=worker)
        return started

    def update(self, job_id: str, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def append_log(self, job_id: str, text: str) -> None:
        if not text:
            return
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(jobs.c.log).where(jobs.c.id == job_id)).scalar() or ""
            conn.execute(jobs.update().where(jobs.c.id == job_id)
                         .values(log=(current + text)[-LOG_LIMIT:], heartbeat_at=now()))

    def heartbeat(self, job_id: str) -> None:
        self.update(job_id, heartbeat_at=now())

    def cancel_requested(self, job_id: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(sa.select(jobs.c.cancel_requested)
                                     .where(jobs.c.id == job_id)).scalar())

    def finish(self, job_id: str, status: str, result: dict | None = None,
               error: str | None = None) -> None:
        values = {"status": status, "finished_at": now(), "error": error}
        if result is not None:
            values["result"] = result
        if status == "succeeded":
            values["progress"] = 1.0
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))
            conn.execute(job_locks.delete().where(job_locks.c.job_id == job_id))
        self._audit(job_id, "job.end", status, error=(error or "")[:200] or None)

    def reconcile(self, stale_after: float, is_dead=lambda worker: False) -> list[str]:
        """Mark running jobs `interrupted` when their worker is known dead (`is_dead`) or stopped
        beating; free their locks."""
        cutoff = now() - timedelta(seconds=stale_after)
        with self.engine.begin() as conn:
            running = conn.execute(sa.select(jobs.c.id, jobs.c.worker, jobs.c.heartbeat_at)
                                   .where(jobs.c.status == "running")).all()
            stale = [r.id for r in running
                     if is_dead(r.worker) or _as_dict(r)["heartbeat_at"] < cutoff]
            for job_id in stale:
                conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                    status="interrupted", finished_at=now(),
                    error="the worker running this job stopped (killed or crashed); nothing was "
                          "promoted by it, and a new job can start"))
                conn.execute(job_locks.delete().where(job_locks.c.job_id == job_id))
        for job_id in stale:
            self._audit(job_id, "job.end", "interrupted", error="its worker stopped")
        return stale

    def queued_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(sa.select(jobs.c.id).where(jobs.c.status == "queued"))]
