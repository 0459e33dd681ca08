"""Job records: what the API and UI show, and what survives a killed worker.

huey drops a task from its queue when a worker takes it, so a worker killed mid-job loses the task;
the record stays `running` with a heartbeat that stops. Any live worker, and the API's readiness
check, marks such records `interrupted` (reconcile) and releases their locks, so nothing waits
forever; the record then says what the job left in the registry.

The worker that starts a job holds its lease: a fencing token, new at each start, and the
heartbeat. Its writes to the record (log, progress, the end) and to the registry count only while
the token is the record's and the job is `running`; once a job is declared interrupted, a holder
that still runs somewhere changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from control_api.audit import AuditLog
from control_api.db import job_locks, jobs, row_dict

log = logging.getLogger("opcon.jobs")

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
            try:
                self.queue.run_job(job_id)
            except Exception as error:  # the queue is down: the record stands, and a worker
                # queues the job again once the queue answers (recovery.requeue_lost)
                log.warning("job %s is recorded but not queued yet (%s): the workers queue it "
                            "again when the queue answers", job_id, type(error).__name__)
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
    def start(self, job_id: str, worker: str) -> str | None:
        """queued → running, atomically; the lease (fencing token) of the worker that took it, or
        None when the job is gone, cancelled or taken."""
        lease = str(uuid.uuid4())
        with self.engine.begin() as conn:
            started = bool(conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued")
                .values(status="running", started_at=now(), heartbeat_at=now(), worker=worker,
                        lease=lease)
            ).rowcount)
        if not started:
            return None
        self._audit(job_id, "job.start", "running", worker=worker)
        return lease

    @staticmethod
    def _held(job_id: str, lease: str | None):
        """The job's row, while `lease` holds it (any row of the job when lease is None)."""
        where = jobs.c.id == job_id
        if lease is not None:
            where = where & (jobs.c.lease == lease) & (jobs.c.status == "running")
        return where

    def update(self, job_id: str, lease: str | None = None, **values) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(jobs.update().where(self._held(job_id, lease))
                                     .values(**values)).rowcount)

    def append_log(self, job_id: str, text: str, lease: str | None = None) -> None:
        if not text:
            return
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(jobs.c.log).where(self._held(job_id, lease))).scalar()
            if current is None:
                return  # not this holder's any more
            conn.execute(jobs.update().where(self._held(job_id, lease))
                         .values(log=(current + text)[-LOG_LIMIT:], heartbeat_at=now()))

    def heartbeat(self, job_id: str, lease: str | None = None) -> bool:
        """Renew the lease; False when it is no longer this holder's (the job was interrupted)."""
        return self.update(job_id, lease, heartbeat_at=now())

    def cancel_requested(self, job_id: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(sa.select(jobs.c.cancel_requested)
                                     .where(jobs.c.id == job_id)).scalar())

    def finish(self, job_id: str, status: str, result: dict | None = None,
               error: str | None = None, lease: str | None = None) -> bool:
        """End the job; False (and nothing written) when `lease` no longer holds it."""
        values = {"status": status, "finished_at": now(), "error": error}
        if result is not None:
            values["result"] = result
        if status == "succeeded":
            values["progress"] = 1.0
        with self.engine.begin() as conn:
            if not conn.execute(jobs.update().where(self._held(job_id, lease)).values(**values)).rowcount:
                return False
            conn.execute(job_locks.delete().where(job_locks.c.job_id == job_id))
        self._audit(job_id, "job.end", status, error=(error or "")[:200] or None)
        return True

    def reconcile(self, stale_after: float, is_dead=lambda worker: False,
                  left_by=lambda job: {}) -> list[str]:
        """Mark running jobs `interrupted` when their worker is known dead (`is_dead`) or its
        heartbeat is older than `stale_after` seconds; free their locks. Then `left_by(job)` says
        what each left in the registry (read after the lease is gone, so nothing changes later),
        and the record says so."""
        cutoff = now() - timedelta(seconds=stale_after)
        with self.engine.connect() as conn:
            running = [_as_dict(r) for r in conn.execute(sa.select(jobs).where(jobs.c.status == "running"))]
        interrupted = []
        for job in running:
            dead = is_dead(job["worker"])
            if not (dead or job["heartbeat_at"] < cutoff):
                continue
            # first the lease is taken away (the fence: its holder can change nothing from now
            # on), then the registry is read, then the record says what happened, in one write
            revoked = f"revoked:{uuid.uuid4()}"
            where = (jobs.c.id == job["id"]) & (jobs.c.status == "running")
            if not dead:  # the holder may have beaten since: then it is alive
                where = where & (jobs.c.heartbeat_at < cutoff)
            with self.engine.begin() as conn:
                if not conn.execute(jobs.update().where(where).values(lease=revoked)).rowcount:
                    continue  # it beat, finished, or another reconciler took it meanwhile
            left = left_by(job)
            with self.engine.begin() as conn:
                taken = conn.execute(jobs.update().where(jobs.c.id == job["id"], jobs.c.lease == revoked)
                                     .values(status="interrupted", finished_at=now(),
                                             error=_interrupted(job, left),
                                             result={**(job["result"] or {}), **left})).rowcount
                if taken:
                    conn.execute(job_locks.delete().where(job_locks.c.job_id == job["id"]))
            if taken:
                interrupted.append(job)
                self._audit(job["id"], "job.end", "interrupted", error="its worker stopped", **left)
        return [job["id"] for job in interrupted]

    def queued_ids(self, older_than: float = 0.0) -> list[str]:
        cutoff = now() - timedelta(seconds=older_than)
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(sa.select(jobs.c.id).where(
                jobs.c.status == "queued", jobs.c.created_at <= cutoff))]


def _interrupted(job: dict, left: dict) -> str:
    """What an interrupted job's record says; `left` is what it left in the registry."""
    where = f" during step `{job['step']}`" if job.get("step") else ""
    said = f"the worker running this job stopped (killed or crashed){where}"
    if job["kind"] != "retrain":
        return f"{said}; a new job can start"
    if "model_version" not in left:
        if left.get("registry"):
            return f"{said}; the registry could not be read ({left['registry']}); a new job can start"
        return f"{said}; it registered and promoted nothing, and a new job can start"
    version, alias = left["model_version"], left.get("alias")
    held = {"champion": "it is the champion now", "challenger": "it is the challenger"}.get(
        alias, "it holds no alias")
    return f"{said} after it registered version {version} ({held}); a new job can start"
