"""Automatic actions: a periodic drift report, and a retrain after drift in N reports in a row.

Both go through the job records like any request, with a reason that says why, so the jobs list
shows every automatic action.
"""

from __future__ import annotations

from datetime import UTC, datetime

from control_api.jobs.records import JobStore
from control_api.settings import Settings
from monitoring.prediction_log import PredictionLog
from monitoring.reports import ReportStore

SCHEDULED = "scheduled"
AUTO_RETRAIN_ACTOR = "policy:auto-retrain"  # who a drift-triggered retrain (and its promotion) is for
SCHEDULE_ACTOR = "policy:schedule"


def retrain_if_drifting(store: JobStore, reports: ReportStore, after: int) -> dict | None:
    """Submit a retrain when the newest `after` reports all found dataset drift and all came after
    the last retrain started (a retrain resets the count). `after` 0: never."""
    if after <= 0:
        return None
    recent = reports.latest(after)
    if len(recent) < after or not all(r.get("dataset_drift") for r in recent):
        return None
    last_retrain = store.latest("retrain")
    if last_retrain is not None and any(datetime.fromisoformat(r["created"]) <= last_retrain["created_at"]
                                        for r in recent):
        return None
    ids = ", ".join(r["id"] for r in reversed(recent))
    reason = f"auto-retrain: dataset drift in {after} reports in a row ({ids})"
    job, created = store.submit("retrain", {}, reason[:500], AUTO_RETRAIN_ACTOR, "engineer")
    return {"retrain_job": job["id"], "retrain_created": created, "retrain_reason": job["reason"]}


def schedule_drift_report(store: JobStore, settings: Settings, now: datetime | None = None,
                          tick_seconds: float = 0.0) -> dict | None:
    """Submit the periodic drift report when the interval has passed since the last scheduled one
    and predictions were logged since (no new rows: no new report). Every worker calls this on
    its scheduler's tick; the job records make it happen once."""
    interval = settings.drift_interval
    if interval <= 0:
        return None
    now = now or datetime.now(UTC)
    last = store.latest("drift_report", reason=SCHEDULED)
    if last is not None and (now - last["created_at"]).total_seconds() < interval - tick_seconds / 2:
        return None
    newest = PredictionLog(settings.prediction_log_dir).newest()
    if newest is None or (last is not None and newest <= last["created_at"].timestamp()):
        return None
    job, created = store.submit("drift_report", {"last_rows": settings.drift_window_rows}, SCHEDULED,
                                SCHEDULE_ACTOR, "engineer")
    return job if created else None
