"""The `dataset_upload` job: a batch that POST /datasets validated and stored in the state dir
becomes the next version of the raw data, DVC-added and pushed.

Steps: validate the batch on its own and with the data → under the DVC lock, write the data with
the batch, `dvc add` and `dvc push` it (any failure puts the data and its pointer back).
"""

from __future__ import annotations

import contextlib

from control_api import datasets
from control_api.jobs.job import Job, Step, StepFailedError, bind
from control_api.jobs.kinds import DatasetUpload
from control_api.settings import Settings
from ml import params as params_module
from ml.errors import DataError


class UploadJob:
    def __init__(self, params: dict, settings: Settings, job_id: str):
        self.request = DatasetUpload.model_validate(params)
        self.settings = settings
        self.project = settings.project_dir
        self.upload = datasets.upload_path(settings.state_dir, job_id)
        self.params = params_module.load(self.project)
        self.checked_version: str | None = None
        self.merged = None

    def steps(self) -> list[Step]:
        return bind("dataset_upload", [self.validate, self.add_and_push])

    def discard(self) -> None:
        """The stored batch goes once the job ends, whatever the outcome."""
        with contextlib.suppress(FileNotFoundError):
            self.upload.unlink()

    def _check(self) -> None:
        if not self.upload.is_file():
            raise StepFailedError("the uploaded batch is no longer in the state dir; upload it again")
        try:
            batch, self.merged = datasets.checked_batch(self.project, self.params, self.upload)
        except DataError as error:
            raise StepFailedError(str(error).replace(str(self.upload), "the batch")) from None
        except datasets.BatchRejectedError as error:
            raise StepFailedError(f"the {error.stage} failed validation: {error}") from None
        self.checked_version = datasets.current_version(self.project, self.params)
        self.batch_rows = len(batch)

    def validate(self, job: Job) -> dict:
        self._check()
        job.log(f"{self.batch_rows} rows in the batch; {len(self.merged)} with the data "
                f"(version {self.checked_version}): both pass the schema's expectations")
        return {"batch_rows": self.batch_rows, "previous_version": self.checked_version}

    def add_and_push(self, job: Job) -> dict:
        with job.dvc_lock:
            datasets.record(job.store.engine, self.project, self.params, "existing data")
            if datasets.current_version(self.project, self.params) != self.checked_version:
                job.log("the data changed since the batch was validated: validating again")
                self._check()

            def track(target: str) -> None:
                job.dvc("add", target)
                job.dvc("push", f"{target}.dvc")

            datasets.replace_raw(self.project, self.params, self.merged, track)
            summary = {"success": True, "failures": [], "batch_rows": self.batch_rows}
            row = datasets.record(job.store.engine, self.project, self.params,
                                  f"upload ({self.request.file_name})", validation=summary,
                                  frame=self.merged)
        version = datasets.current_version(self.project, self.params)
        job.log(f"data version {version}: {len(self.merged)} rows, pushed to the DVC remote")
        return {"data_version": version, "rows": len(self.merged),
                "class_balance": (row or {}).get("class_balance")}
