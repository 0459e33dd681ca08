"""Liveness and readiness (no token needed)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag

from control_api.jobs import recovery
from control_api.jobs.queue import reachable
from control_api.models import ErrorBody, Health, Ready

TAG = Tag(name="health", description="Liveness and readiness probes")


def blueprint(services) -> APIBlueprint:
    bp = APIBlueprint("health", __name__, abp_tags=[TAG], abp_responses={422: ErrorBody})
    # a probe is also a watch on the jobs: one whose worker died is marked `interrupted` even
    # while no worker runs
    interrupt_dead_jobs = recovery.Throttled(
        lambda: recovery.interrupt_dead_jobs(services.jobs, services.settings), seconds=5.0)

    @bp.get("/health", responses={200: Health}, security=[])
    def health():
        """The process answers."""
        return {"status": "ok"}

    @bp.get("/ready", responses={200: Ready, 503: Ready}, security=[])
    def ready():
        """200 when a champion is loaded (predictions need nothing else); `queue` and `jobs` say
        whether the job side answers (while either is down, the job routes answer 503)."""
        champion = services.champion.current
        if champion is None:
            services.champion.refresh()
            champion = services.champion.current
        reasons = [] if champion else [services.champion.last_error or "no champion loaded"]
        _queue_ok, queue_state = reachable(services.jobs.queue)
        try:
            with services.engine.connect() as connection:  # every probe: the watch below is throttled
                connection.execute(sa.text("SELECT 1"))
            interrupt_dead_jobs()
            jobs_state = "ok"
        except Exception as error:  # the database away: serving goes on, jobs do not
            jobs_state = f"job records unreachable: {type(error).__name__}"
        body = {"ready": not reasons, "queue": queue_state, "jobs": jobs_state, "reasons": reasons,
                "champion": f"{champion.name} version {champion.version}" if champion else None}
        return jsonify(body), 200 if not reasons else 503

    return bp
