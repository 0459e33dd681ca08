"""The task queue: huey on SQLite in the state dir by default, on Redis when REDIS_URL is set."""

from __future__ import annotations

TASK_NAME = "opcon.run_job"


def _run_job(job_id: str) -> None:
    from control_api.jobs import runner

    runner.execute(job_id)


def make_queue(settings):
    from huey import RedisHuey, SqliteHuey

    if settings.redis_url:
        huey = RedisHuey(settings.queue_name, url=settings.redis_url)
    else:
        settings.huey_path.parent.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey(settings.queue_name, filename=str(settings.huey_path))
    huey.run_job = huey.task(name=TASK_NAME)(_run_job)
    return huey


def reachable(huey) -> tuple[bool, str]:
    try:
        huey.pending_count()
    except Exception as error:
        return False, f"job queue unreachable: {error}"
    return True, "ok"
