"""Data versions: list them; upload a labelled batch that becomes the next version."""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import jsonify, request
from flask_openapi3 import Tag

from control_api import datasets
from control_api.errors import APIError, invalid
from control_api.identity.routing import SecuredBlueprint
from control_api.models import BatchForm, DataVersionList, DataVersionOut, ErrorBody
from ml.errors import DataError

TAG = Tag(name="datasets", description="Versions of the training data (DVC)")


def present(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "pointer"}


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("datasets", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    settings, params, engine = services.settings, services.params, services.engine

    @bp.get("/datasets", permission="read", responses={200: DataVersionList})
    def list_versions():
        """Data versions, newest first: DVC md5, rows, class balance, validation status."""
        datasets.record(engine, settings.project_dir, params, "existing data")
        current = datasets.data_version(settings.project_dir / params.dataset.raw)
        return {"current": current, "versions": [present(r) for r in datasets.listing(engine)]}

    @bp.post("/datasets", permission="datasets:upload",
             responses={201: DataVersionOut, 422: ErrorBody, 413: ErrorBody})
    def upload(form: BatchForm):
        """Append a labelled CSV batch: validated (Great Expectations), then DVC-tracked and pushed.

        On any failed expectation: 422 with all of them, and nothing changes.
        """
        upload_file = request.files.get("file")
        if upload_file is None or not upload_file.filename:
            raise invalid([{"field": "file", "problem": "no file uploaded (multipart field `file`)"}])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "batch.csv"  # never the client's file name
            upload_file.save(path)
            try:
                row = datasets.append_batch(engine, settings.project_dir, settings.state_dir, params,
                                            upload=path, source=f"upload ({upload_file.filename[:100]})")
            except DataError as error:
                raise invalid([{"field": "file",
                                "problem": str(error).replace(str(path), "file")}]) from None
            except datasets.BatchRejectedError as error:
                details = [{"field": f["column"] or "file", "problem": f["message"]}
                           for f in error.report.failures]
                raise APIError(422, f"the {error.stage} failed validation; nothing was changed",
                               details) from None
        return jsonify(present(row)), 201

    return bp
