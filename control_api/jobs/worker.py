"""The job worker: `python -m control_api.jobs.worker [--workers N]`.

On start it marks jobs left `running` by a dead worker as `interrupted` and re-queues queued jobs
whose task was lost (starting a job is atomic, so a duplicate task does nothing).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

from control_api import db
from control_api.jobs import runner
from control_api.jobs.queue import make_queue
from control_api.jobs.records import JobStore
from control_api.settings import from_env

log = logging.getLogger("opcon.worker")


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
    return int(pid) == os.getpid()  # our own pid: this process is new, that job was not ours


def recover(store: JobStore, stale_after: float) -> None:
    for job_id in store.reconcile(stale_after, dead_on_this_host):
        log.warning("job %s was interrupted (its worker stopped)", job_id)
    for job_id in store.queued_ids():
        store.queue.run_job(job_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run background jobs.")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = from_env()
    queue = make_queue(settings)
    store = JobStore(db.connect(settings.database_url), queue)
    runner.configure(settings, store)
    stale_after = 3 * settings.job_heartbeat_seconds

    @queue.periodic_task(_every_minute(), name="opcon.reconcile")
    def reconcile_periodically():
        store.reconcile(stale_after)

    recover(store, stale_after)
    log.info("worker ready: %d thread(s), queue %s", args.workers,
             settings.redis_url or settings.huey_path)
    queue.create_consumer(workers=args.workers, worker_type="thread", check_worker_health=True).run()
    return 0


def _every_minute():
    from huey import crontab

    return crontab(minute="*")


if __name__ == "__main__":
    raise SystemExit(main())
