"""The automatic actions' rules, on real job records (SQLite) and report files: when a scheduled drift
report is due, and when drift in N reports in a row starts a retrain."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from control_api import db
from control_api.jobs.policy import SCHEDULED, retrain_if_drifting, schedule_drift_report
from control_api.jobs.records import JobStore
from control_api.settings import Settings
from monitoring.prediction_log import PredictionLog
from monitoring.reports import ReportStore, new_id


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, project_dir=tmp_path, api_token="t",
                    database_url=f"sqlite:///{tmp_path / 'opcon.db'}", drift_interval_seconds=600,
                    drift_window_rows=500)


@pytest.fixture
def store(settings) -> JobStore:
    return JobStore(db.connect(settings.database_url))


def predict_something(settings: Settings) -> None:
    PredictionLog(settings.prediction_log_dir).append("r", "1", "onnx", [{"x": 1.0}])


def test_a_scheduled_report_needs_new_predictions_and_the_interval(settings, store):
    assert schedule_drift_report(store, settings) is None  # nothing logged yet
    predict_something(settings)
    job = schedule_drift_report(store, settings)
    assert job["kind"] == "drift_report" and job["reason"] == SCHEDULED
    assert job["params"] == {"last_rows": 500}
    store.finish(job["id"], "succeeded")
    time.sleep(0.05)  # a segment's time is its mtime, from the kernel's coarse clock (a few ms)
    predict_something(settings)
    created = job["created_at"]
    assert schedule_drift_report(store, settings, now=created + timedelta(seconds=599)) is None
    later = schedule_drift_report(store, settings, now=created + timedelta(seconds=600))
    assert later is not None and later["id"] != job["id"]
    store.finish(later["id"], "succeeded")
    # the interval passed again, but nothing was predicted since: no report
    assert schedule_drift_report(store, settings, now=later["created_at"] + timedelta(hours=2)) is None


def test_an_interval_of_zero_schedules_nothing(settings, store):
    settings.drift_interval_seconds = 0
    predict_something(settings)
    assert schedule_drift_report(store, settings) is None


def save_reports(reports: ReportStore, *drifted: bool) -> list[str]:
    from datetime import UTC, datetime

    ids = []
    for flag in drifted:
        ids.append(new_id())
        reports.save({"id": ids[-1], "created": datetime.now(UTC).isoformat(), "dataset_drift": flag,
                      "drift_share": 1.0 if flag else 0.0, "columns": []}, None)
    return ids


def test_drift_in_n_reports_in_a_row_starts_one_retrain(settings, store):
    reports = ReportStore(settings.reports_dir)
    assert retrain_if_drifting(store, reports, 2) is None  # no reports
    save_reports(reports, True, False, True)
    assert retrain_if_drifting(store, reports, 2) is None  # the row was broken
    ids = save_reports(reports, True)
    started = retrain_if_drifting(store, reports, 2)
    job = store.get(started["retrain_job"])
    assert job["kind"] == "retrain" and started["retrain_created"] is True
    assert all(report_id in job["reason"] for report_id in [reports.latest(2)[1]["id"], *ids])
    store.finish(job["id"], "succeeded")
    assert retrain_if_drifting(store, reports, 2) is None  # the retrain restarted the count
    save_reports(reports, True)
    assert retrain_if_drifting(store, reports, 2) is None  # one drifted report since
    save_reports(reports, True)
    assert retrain_if_drifting(store, reports, 2)["retrain_created"] is True
    assert retrain_if_drifting(store, reports, 0) is None  # off
