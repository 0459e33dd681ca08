"""What each kind of job does: an action for each step the catalogue (kinds.py) names."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from control_api import champion_history, datasets
from control_api.approvals import ApprovalStore
from control_api.jobs.dataset_job import UploadJob
from control_api.jobs.job import Job, Step, StepFailedError, bind
from control_api.settings import Settings
from ml import params as params_module
from ml.versioning import data_version


def _pull(job: Job) -> dict:
    project = job.settings.project_dir
    params = params_module.load(project)
    try:
        job.dvc("pull")
    except StepFailedError as error:
        if "failed to pull" not in str(error) and "Checkout failed" not in str(error):
            raise
        raise StepFailedError(f"{error}{_what_to_do(project, params.dataset.raw)}") from None
    datasets.record(job.store.engine, project, params, "dvc pull")  # a version new to the records
    return {"data_version": data_version(project / params.dataset.raw)}


def _what_to_do(project: Path, configured: str) -> str:
    """A pull fails when a `.dvc` pointer names data the remote lacks: most often one left behind by
    a data set no longer in use. Name those pointers and what to do about them."""
    stale = sorted(str(p.relative_to(project)) for p in (project / "data").rglob("*.dvc")
                   if p.relative_to(project).as_posix() != f"{configured}.dvc")
    if stale:
        return (f". The configured data set is `{configured}`; {', '.join(f'`{s}`' for s in stale)} "
                "point(s) at data no longer in use: remove them (`git rm`), or switch data sets with "
                "`make dataset`, which removes the old pointer")
    return (f". `{configured}.dvc` names data the instance's remote does not hold: push it from the "
            "machine that has it (`dvc push`), or add the data set again with `make dataset`")


def _validate(job: Job) -> dict:
    try:
        job.stages("validate")
    finally:
        path = job.settings.project_dir / "data" / "validation.json"
        report = json.loads(path.read_text()) if path.exists() else {}
    return {"validation": {"success": report.get("success"), "rows": report.get("rows"),
                           "failures": report.get("failures", [])}}


def _train(job: Job) -> dict:
    job.stages("prepare", "train")
    trained = json.loads((job.settings.project_dir / "models" / "train_run.json").read_text())
    return {"run_id": trained["run_id"], "val_metrics": {
        k: v for k, v in trained["metrics"].items() if k.startswith("val_")},
        "emissions_kg": trained["emissions"]["emissions_kg"]}


def _register(job: Job) -> dict:
    job.stages("evaluate")
    outcome = json.loads((job.settings.project_dir / "metrics" / "evaluate.json").read_text())
    name = params_module.load(job.settings.project_dir).registry.model_name
    previous = outcome.get("champion_version")
    previous = None if previous is None else str(previous)
    # the new version holds `champion` now, or `challenger`; either move is the requester's
    champion_history.record_move(
        job.store.audit, name, outcome["version"], previous, by=job.requested_by or "unknown",
        role=job.requested_role, reason=outcome["reason"], job_id=job.id,
        alias="champion" if outcome["promoted"] else "challenger")
    if outcome.get("awaiting_approval"):
        metric = outcome["metric"]
        ApprovalStore(job.store.engine).add_pending(
            name, outcome["version"], job_id=job.id, requested_by=job.requested_by,
            comparison={"metric": metric, "challenger_score": outcome[f"test_{metric}"],
                        "champion_score": outcome.get(f"champion_test_{metric}"),
                        "champion_version": previous,
                        "reason": outcome["reason"]})
        job.log(f"version {outcome['version']} passed the gate and awaits an admin's approval")
    return {"model_version": outcome["version"], "promoted": outcome["promoted"],
            "awaiting_approval": bool(outcome.get("awaiting_approval")),
            "promotion_reason": outcome["reason"]}


def _push(job: Job) -> dict:
    job.dvc("push")
    return {}


@contextlib.contextmanager
def plan(kind: str, params: dict, settings: Settings, job_id: str) -> Iterator[list[Step]]:
    """The job's steps while it runs; what the job leaves behind is tidied when it ends."""
    if kind == "retrain":
        yield bind(kind, [_pull, _validate, _train, _register, _push])
    elif kind == "data_pull":
        yield bind(kind, [_pull])
    elif kind == "validate":
        yield bind(kind, [_validate])
    elif kind == "drift_report":
        from control_api.jobs.drift_job import DriftReport  # scikit-learn and more: only for this kind

        yield DriftReport(params, settings).steps()
    elif kind == "dataset_upload":
        upload = UploadJob(params, settings, job_id)
        try:
            yield upload.steps()
        finally:
            upload.discard()
    else:
        raise ValueError(f"unknown job kind `{kind}`")
