"""Liveness and readiness (no token needed)."""

from __future__ import annotations

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
        """200 only when a champion is loaded and the job queue is reachable."""
        reasons = []
        try:
            interrupt_dead_jobs()
        except Exception as error:  # the database away: serving goes on, jobs do not
            reasons.append(f"job records unreachable: {type(error).__name__}")
        champion = services.champion.current
        if champion is None:
            services.champion.refresh()
            champion = services.champion.current
        if champion is None:
            reasons.append(services.champion.last_error or "no champion loaded")
        queue_ok, queue_state = reachable(services.jobs.queue)
        if not queue_ok:
            reasons.append(queue_state)
        body = {"ready": not reasons, "queue": queue_state, "reasons": reasons,
                "champion": f"{champion.name} version {champion.version}" if champion else None}
        return jsonify(body), 200 if not reasons else 503

    return bp
