"""Data versions: list them; upload a labelled batch that a job makes the next version."""

from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path

from flask import g, jsonify, request
from flask_openapi3 import Tag

from control_api import datasets
from control_api.errors import APIError, invalid
from control_api.identity.routing import SecuredBlueprint
from control_api.jobs.kinds import ACTIVE
from control_api.models import BatchForm, DataVersionList, ErrorBody, JobOut, JobRef
from control_api.routes.jobs import location
from control_api.routes.jobs import present as present_job
from ml.errors import DataError, PipelineError

TAG = Tag(name="datasets", description="Versions of the training data (DVC)")
log = logging.getLogger(__name__)


def present(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "pointer"}


def refusal(error: Exception, stored: Path) -> APIError:
    if isinstance(error, datasets.DuplicateColumnError):
        return APIError(422, str(error), [{"field": name or "file", "problem": f"duplicate column `{name}`"}
                                          for name in error.names])
    if isinstance(error, datasets.BatchRejectedError):
        details = [{"field": f["column"] or "file", "problem": f["message"]} for f in error.report.failures]
        return APIError(422, f"the {error.stage} failed validation; nothing was changed", details)
    return invalid([{"field": "file", "problem": str(error).replace(str(stored), "file")}])


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("datasets", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    settings, params, engine, store = services.settings, services.params, services.engine, services.jobs
    project = settings.project_dir
    try:  # the data the API starts on is a version too (described once, when it is new)
        datasets.record(engine, project, params, "existing data")
    except PipelineError as error:
        log.warning("the current data version could not be recorded: %s", str(error)[:200])

    def sweep() -> None:
        """Batches whose job ended without taking them (cancelled while queued, worker killed)."""
        for leftover in datasets.uploads_dir(settings.state_dir).glob("*.csv"):
            job = store.get(leftover.stem)
            if job is None or job["status"] not in ACTIVE:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    @bp.get("/datasets", permission="read", responses={200: DataVersionList})
    def list_versions():
        """Data versions, newest first: DVC md5, rows, class balance, validation status. `current`
        is the version the DVC pointer names."""
        return {"current": datasets.current_version(project, params),
                "versions": [present(r) for r in datasets.listing(engine)]}

    @bp.post("/datasets", permission="datasets:upload",
             responses={202: JobOut, 409: JobRef, 422: ErrorBody, 413: ErrorBody})
    def upload(form: BatchForm):
        """Append a labelled CSV batch: validated now (Great Expectations), on its own and with the
        data; a `dataset_upload` job then DVC-adds and pushes it (202, `Location` names the job).

        On any failed expectation: 422 with all of them, and nothing changes. While an upload job
        is queued or running: 409 with it, and this batch is not kept.
        """
        upload_file = request.files.get("file")
        if upload_file is None or not upload_file.filename:
            raise invalid([{"field": "file", "problem": "no file uploaded (multipart field `file`)"}])
        sweep()
        job_id = str(uuid.uuid4())
        stored = datasets.upload_path(settings.state_dir, job_id)  # never the client's file name
        stored.parent.mkdir(parents=True, exist_ok=True)
        kept = False
        try:
            upload_file.save(stored)
            try:
                rows = datasets.check_upload(project, params, stored)
            except (DataError, datasets.BatchRejectedError) as error:
                raise refusal(error, stored) from None
            job, kept = store.submit(
                "dataset_upload", {"file_name": upload_file.filename[:100], "batch_rows": rows},
                "dataset upload through the API", g.identity.name, g.identity.role, job_id=job_id)
        finally:
            if not kept:
                stored.unlink(missing_ok=True)
        g.audit_target = f"job:{job['id']}"
        if not kept:
            return jsonify({"error": f"a dataset upload is already {job['status']}; this batch was "
                                     "not kept", "details": [], "job": present_job(job)}), 409
        return jsonify(present_job(job)), 202, location(job)

    return bp
