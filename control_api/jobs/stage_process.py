"""`python -m control_api.jobs.stage_process STAGE...`: a job's pipeline stages in a fresh process.

The worker runs stages itself while the project's ml code is the code it loaded; after an edit it
starts this instead (in the project, so the new code is imported), with the job's id and lease in
the environment. The stages' registry writes are fenced by that lease, as in the worker.
"""

from __future__ import annotations

import os
import sys

from control_api import db
from control_api.jobs.job import JOB_VARIABLE, LEASE_VARIABLE
from control_api.jobs.records import JobStore
from control_api.settings import from_env
from ml import config as ml_config
from ml import in_process, registry
from ml.errors import PipelineError


def main(stages: list[str]) -> int:
    job_id, lease = os.environ[JOB_VARIABLE], os.environ.pop(LEASE_VARIABLE, "") or None
    settings = from_env()
    ml_config.use(settings.ml)
    store = JobStore(db.connect(settings.database_url))
    record = store.get(job_id) or {}
    try:
        with registry.fenced(job_id, lambda: lease is None or store.heartbeat(job_id, lease)):
            in_process.run(settings.project_dir, stages, actor=record.get("requested_by") or "unknown",
                           log=lambda text: print(text, flush=True))
    except PipelineError as error:
        print(f"ERROR: stage `{getattr(error, 'stage', None) or ' '.join(stages)}` failed: {error}",
              flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
