"""The job worker: `python -m control_api.jobs.worker [--workers N]`.

On start, and every few seconds after, it marks jobs left `running` by a dead worker as
`interrupted` and queues again queued jobs whose task was lost (control_api.jobs.recovery).

Its scheduler enqueues the periodic tasks on every tick: a minute, or OPCON_DRIFT_INTERVAL_SECONDS
when that is shorter. They compact the prediction log and submit the scheduled drift report when
it is due (the job records decide, so several workers submit it once).
"""

from __future__ import annotations

import argparse
import logging
import threading

from huey.consumer import Consumer, Scheduler

from control_api import db
from control_api.jobs import recovery, runner
from control_api.jobs.policy import schedule_drift_report
from control_api.jobs.queue import make_queue
from control_api.jobs.records import JobStore
from control_api.settings import Settings, from_env
from ml import config as ml_config
from ml import in_process
from monitoring.prediction_log import PredictionLog

log = logging.getLogger("opcon.worker")


KEEPER_SECONDS = 5.0  # how often a worker looks for dead jobs and lost tasks


def keep_records(store: JobStore, settings: Settings, stop: threading.Event) -> None:
    """Interrupt the jobs of dead workers and queue again what the queue lost, every few seconds
    (a thread of its own: it works while the queue is down, and with every worker thread busy)."""
    every = min(KEEPER_SECONDS, settings.job_stale_seconds / 3)
    while True:
        try:
            recovery.interrupt_dead_jobs(store, settings)
            recovery.requeue_lost(store)
        except Exception as error:  # the database or the queue away: try again at the next turn
            log.warning("could not check the job records: %s", error)
        if stop.wait(every):
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run background jobs.")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = from_env()
    ml_config.use(settings.ml)  # this process's stages and registry calls use these settings
    queue = make_queue(settings)
    store = JobStore(db.connect(settings.database_url), queue)
    # the records are kept from the start: a dead worker's job is found while this one loads
    threading.Thread(target=keep_records, args=(store, settings, threading.Event()),
                     name="job-records-keeper", daemon=True).start()
    in_process.preload()  # the stages' libraries, imported once before any job thread starts
    logging.getLogger("huey").setLevel(logging.INFO)  # MLflow's import turns huey's down to WARNING
    runner.configure(settings, store)
    tick = tick_seconds(settings)

    @queue.periodic_task(every_tick, name="opcon.compact_predictions")
    def compact_prediction_log():
        PredictionLog(settings.prediction_log_dir).compact()
        PredictionLog(settings.shadow_log_dir, indexed=False).compact()

    @queue.periodic_task(every_tick, name="opcon.schedule_drift_report")
    def scheduled_drift_report():
        job = schedule_drift_report(store, settings, tick_seconds=tick)
        if job is not None:
            log.info("scheduled drift report: job %s", job["id"])

    import monitoring.evidently_lib  # noqa: F401 - 2 s once here, not in the first drift report

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
