"""Background jobs: what kinds there are, start, follow, list, cancel."""

from __future__ import annotations

from flask import Response, g, jsonify
from flask_openapi3 import Tag
from pydantic import ValidationError

from control_api.errors import APIError, invalid, pydantic_details
from control_api.identity.routing import SecuredBlueprint
from control_api.jobs.kinds import ACTIVE, KINDS, catalogue
from control_api.models import ErrorBody, JobCatalogue, JobKind, JobOut, JobPage, JobPath, JobQuery, JobRef

TAG = Tag(name="jobs", description="Retrain, data pull, validation, drift reports and dataset uploads "
                                   "in the background")
LOG_TAIL = 4_000


def location(job: dict) -> dict:
    """The header of an answer that started a job: where to follow it."""
    return {"Location": f"/api/v1/jobs/{job['id']}"}


def present(job: dict) -> dict:
    shown = {k: v for k, v in job.items()
             if k not in ("log", "heartbeat_at", "worker", "requested_role", "lease")}
    shown["log_tail"] = (job.get("log") or "")[-LOG_TAIL:]
    shown["params"] = job.get("params") or {}
    return shown


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("jobs", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    store, settings = services.jobs, services.settings

    def job_params(body: JobKind) -> dict:
        model = KINDS[body.kind].params
        if model is None:
            if body.params:
                raise APIError(422, f"`{body.kind}` takes no params",
                               [{"field": "params", "problem": "must be empty for this kind"}])
            return {}
        try:
            return model.model_validate(body.params).as_params(settings)
        except ValidationError as error:
            raise invalid(pydantic_details(error.errors(), prefix="params")) from None

    def found(job_id: str) -> dict:
        job = store.get(job_id)
        if job is None:
            raise APIError(404, f"no job `{job_id}`", [{"field": "job_id", "problem": "unknown"}])
        return job

    @bp.post("/jobs", permission="jobs:start", responses={202: JobOut, 409: JobRef, 422: ErrorBody})
    def start(body: JobKind):
        """Start a job (202, `Location` names it). While one of the same kind is queued or running,
        answers 409 with it. GET /jobs/kinds lists the kinds, their params and steps.

        `retrain`, `data_pull` and `validate` take no params: they run the pipeline as params.yaml
        and the current data describe it. `drift_report` compares a window of the prediction log
        with the champion's training data: params `{"last_rows": N}` or `{"since": time,
        "until": time}` (ISO 8601; `until` defaults to now), none for the last
        OPCON_DRIFT_WINDOW_ROWS rows. Its result names the report (`GET /reports/{id}`).
        """
        job, created = store.submit(body.kind, job_params(body), body.reason, g.identity.name,
                                    g.identity.role)
        g.audit_target = f"job:{job['id']}"
        if not created:
            return jsonify({"error": f"a {body.kind} job is already {job['status']}",
                            "details": [], "job": present(job)}), 409
        return jsonify(present(job)), 202, location(job)

    @bp.get("/jobs/kinds", permission="read", responses={200: JobCatalogue})
    def kinds():
        """Every kind of job: what it does, the request that starts it, the params it takes (JSON
        Schema) and the steps the worker runs, in order; and which states are active or final."""
        return catalogue()

    @bp.get("/jobs", permission="read", responses={200: JobPage, 422: ErrorBody})
    def list_jobs(query: JobQuery):
        """Jobs, newest first, filtered by kind and status."""
        items, total = store.list(query.kind, query.status, query.limit, query.offset)
        return {"items": [present(j) for j in items], "total": total, "limit": query.limit,
                "offset": query.offset}

    @bp.get("/jobs/<job_id>", permission="read", responses={200: JobOut, 404: ErrorBody})
    def get_job(path: JobPath):
        """Status, current step, progress, timestamps, log tail and result of one job."""
        return present(found(path.job_id))

    @bp.get("/jobs/<job_id>/log", permission="read",
            responses={200: {"content": {"text/plain": {}}}, 404: ErrorBody})
    def job_log(path: JobPath):
        """The whole log of one job, as plain text."""
        return Response(found(path.job_id).get("log") or "", mimetype="text/plain")

    @bp.post("/jobs/<job_id>/cancel", permission="jobs:cancel",
             responses={200: JobOut, 404: ErrorBody, 409: ErrorBody})
    def cancel(path: JobPath):
        """Cancel a queued job now, a running one at its next step boundary."""
        g.audit_target = f"job:{path.job_id}"
        job = found(path.job_id)
        if job["status"] not in ACTIVE:
            raise APIError(409, f"job is {job['status']}: nothing to cancel")
        return present(store.cancel(path.job_id))

    return bp
