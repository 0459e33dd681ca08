"""What each kind of job does, as a list of named steps."""

from __future__ import annotations

import json

from control_api import champion_history
from control_api.approvals import ApprovalStore
from control_api.jobs.runner import Job, Step
from control_api.settings import Settings
from ml import params as params_module
from ml.versioning import data_version


def _pull(job: Job) -> dict:
    job.dvc("pull")
    params = params_module.load(job.settings.project_dir)
    return {"data_version": data_version(job.settings.project_dir / params.dataset.raw)}


def _validate(job: Job) -> dict:
    try:
        job.dvc("repro", "validate")
    finally:
        path = job.settings.project_dir / "data" / "validation.json"
        report = json.loads(path.read_text()) if path.exists() else {}
    return {"validation": {"success": report.get("success"), "rows": report.get("rows"),
                           "failures": report.get("failures", [])}}


def _train(job: Job) -> dict:
    job.dvc("repro", "prepare")
    job.dvc("repro", "--force", "--single-item", "train")
    trained = json.loads((job.settings.project_dir / "models" / "train_run.json").read_text())
    return {"run_id": trained["run_id"], "val_metrics": {
        k: v for k, v in trained["metrics"].items() if k.startswith("val_")},
        "emissions_kg": trained["emissions"]["emissions_kg"]}


def _register(job: Job) -> dict:
    job.dvc("repro", "--force", "--single-item", "evaluate")
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


def steps(kind: str, params: dict, settings: Settings) -> list[Step]:
    if kind == "retrain":
        return [("pull", _pull), ("validate", _validate), ("train", _train),
                ("register and promote", _register), ("push", _push)]
    if kind == "data_pull":
        return [("pull", _pull)]
    if kind == "validate":
        return [("validate", _validate)]
    if kind == "drift_report":
        from control_api.jobs.drift_job import DriftReport

        return DriftReport(params, settings).steps()
    raise ValueError(f"unknown job kind `{kind}`")
