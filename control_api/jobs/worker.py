"""The job worker: `python -m control_api.jobs.worker [--workers N]`.

On start it marks jobs left `running` by a dead worker as `interrupted` and re-queues queued jobs
whose task was lost (starting a job is atomic, so a duplicate task does nothing).

Its scheduler enqueues the periodic tasks on every tick: a minute, or OPCON_DRIFT_INTERVAL_SECONDS
when that is shorter. They reconcile stale jobs, compact the prediction log, and submit the
scheduled drift report when it is due (the job records decide, so several workers submit it once).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

from huey.consumer import Consumer, Scheduler

from control_api import db
from control_api.jobs import runner
from control_api.jobs.policy import schedule_drift_report
from control_api.jobs.queue import make_queue
from control_api.jobs.records import JobStore
from control_api.settings import Settings, from_env
from ml import config as ml_config
from ml import in_process
from monitoring.prediction_log import PredictionLog

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
    ml_config.use(settings.ml)  # this process's stages and registry calls use these settings
    in_process.preload()  # the stages' libraries, imported once before any job thread starts
    logging.getLogger("huey").setLevel(logging.INFO)  # MLflow's import turns huey's down to WARNING
    queue = make_queue(settings)
    store = JobStore(db.connect(settings.database_url), queue)
    runner.configure(settings, store)
    stale_after = 3 * settings.job_heartbeat_seconds

    tick = tick_seconds(settings)

    @queue.periodic_task(every_tick, name="opcon.reconcile")
    def reconcile_periodically():
        store.reconcile(stale_after)

    @queue.periodic_task(every_tick, name="opcon.compact_predictions")
    def compact_prediction_log():
        PredictionLog(settings.prediction_log_dir).compact()

    @queue.periodic_task(every_tick, name="opcon.schedule_drift_report")
    def scheduled_drift_report():
        job = schedule_drift_report(store, settings, tick_seconds=tick)
        if job is not None:
            log.info("scheduled drift report: job %s", job["id"])

    import monitoring.evidently_lib  # noqa: F401 - 2 s once here, not in the first drift report

    recover(store, stale_after)
    log.info("worker ready: %d thread(s), queue %s, periodic tasks every %g s", args.workers,
             settings.redis_url or settings.huey_path, tick)
    consumer_class(tick)(queue, workers=args.workers, worker_type="thread",
                         check_worker_health=True).run()
    return 0


def every_tick(_timestamp) -> bool:
    """Run a periodic task whenever the scheduler checks (every `tick_seconds`)."""
    return True


def tick_seconds(settings: Settings) -> float:
    """A minute, or the drift interval when it is shorter (tests use a few seconds)."""
    interval = settings.drift_interval
    return float(min(60, max(1, int(interval)))) if 0 < interval < 60 else 60.0


def consumer_class(tick: float) -> type[Consumer]:
    """huey's consumer with its periodic tasks enqueued every `tick` seconds instead of 60."""
    scheduler = type("TickScheduler", (Scheduler,), {"periodic_task_seconds": tick})
    return type("TickConsumer", (Consumer,), {"scheduler_class": scheduler})


if __name__ == "__main__":
    raise SystemExit(main())
