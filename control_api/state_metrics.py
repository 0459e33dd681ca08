"""Metrics read from durable state at scrape time: champion, latest drift report, jobs, emissions.

Every API worker reads the same database and files, so each one answers the same whichever gunicorn
worker the scrape reaches; nothing here lives in process memory except a few seconds' cache.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from control_api.db import jobs, row_dict
from control_api.jobs.kinds import ACTIVE
from ml import emissions, registry
from monitoring.reports import ReportStore

log = logging.getLogger(__name__)


def _jobs_families(engine: sa.Engine) -> list:
    total = CounterMetricFamily("opcon_jobs", "Job records by kind and status", labels=["kind", "status"])
    duration = GaugeMetricFamily("opcon_job_duration_seconds",
                                 "Duration of the latest finished job of each kind and status",
                                 labels=["kind", "status"])
    queued = GaugeMetricFamily("opcon_jobs_queued", "Jobs queued or running")
    newest = (sa.select(jobs.c.kind, jobs.c.status, sa.func.max(jobs.c.finished_at).label("finished"))
              .where(jobs.c.finished_at.is_not(None)).group_by(jobs.c.kind, jobs.c.status).subquery())
    with engine.connect() as conn:
        counts = conn.execute(sa.select(jobs.c.kind, jobs.c.status, sa.func.count())
                              .group_by(jobs.c.kind, jobs.c.status)).all()
        latest = conn.execute(sa.select(jobs.c.kind, jobs.c.status, jobs.c.started_at, jobs.c.finished_at)
                              .join(newest, (jobs.c.kind == newest.c.kind)
                                    & (jobs.c.status == newest.c.status)
                                    & (jobs.c.finished_at == newest.c.finished))).all()
    for kind, status, count in counts:
        total.add_metric([kind, status], count)
    queued.add_metric([], sum(c for _, s, c in counts if s in ACTIVE))
    seen = set()
    for row in latest:
        values = row_dict(row)
        key = (values["kind"], values["status"])
        if key in seen or values["started_at"] is None:  # cancelled while queued: never ran
            continue
        seen.add(key)
        duration.add_metric(list(key), (values["finished_at"] - values["started_at"]).total_seconds())
    return [total, duration, queued]


def _drift_families(reports: ReportStore) -> list:
    latest = reports.latest()
    dataset = GaugeMetricFamily("opcon_drift_dataset_drift", "1 when the latest drift report found "
                                "dataset drift")
    share = GaugeMetricFamily("opcon_drift_share", "Share of drifted features in the latest report")
    feature = GaugeMetricFamily("opcon_drift_feature_drifted", "1 when the feature drifted in the "
                                "latest report", labels=["feature"])
    stamp = GaugeMetricFamily("opcon_drift_report_timestamp_seconds", "When the latest drift report "
                              "was made (Unix time)")
    estimated = GaugeMetricFamily("opcon_estimated_performance", "The champion's quality on the latest "
                                  "drift report's window, estimated without labels", labels=["metric"])
    if latest:
        report = latest[0]
        dataset.add_metric([], float(bool(report["dataset_drift"])))
        share.add_metric([], float(report["drift_share"]))
        for column in report["columns"]:
            feature.add_metric([column["name"]], float(bool(column["drifted"])))
        stamp.add_metric([], datetime.fromisoformat(report["created"]).timestamp())
        figures = (report.get("estimated_performance") or {}).get("estimated") or {}
        for metric, figure in figures.items():
            if figure.get("value") is not None:
                estimated.add_metric([metric], float(figure["value"]))
    return [dataset, share, feature, stamp, estimated]


def _champion_family(model_name: str) -> list:
    info = GaugeMetricFamily("opcon_champion_info", "The champion model version (value 1)",
                             labels=["model_name", "version"])
    champion = registry.champion(model_name)
    if champion is not None:
        info.add_metric([model_name, str(champion.version)], 1.0)
    return [info]


def _emissions_families() -> list:
    kg = GaugeMetricFamily("opcon_training_emissions_kg_co2eq", "CO2-equivalent emitted by the latest "
                           "training run (kg)")
    kwh = GaugeMetricFamily("opcon_training_energy_kwh", "Energy used by the latest training run (kWh)")
    rows = emissions.read_table()
    if rows:
        for family, column in ((kg, "emissions_kg"), (kwh, "energy_kwh")):
            with contextlib.suppress(TypeError, ValueError):  # a row cut short by a crash
                family.add_metric([], float(rows[-1][column]))
    return [kg, kwh]


def _floor_family(floors: dict[str, float]) -> list:
    floor = GaugeMetricFamily("opcon_estimated_performance_floor", "The lowest estimated figure the "
                              "champion may show (params.yaml monitoring.performance_floor)",
                              labels=["metric"])
    for metric, value in floors.items():
        floor.add_metric([metric], float(value))
    return [floor]


class StateCollector(Collector):
    """A custom collector; its families are rebuilt at most every `cache_seconds`."""

    def __init__(self, engine: sa.Engine, reports: ReportStore, model_name: str, cache_seconds: float,
                 performance_floor: dict[str, float] | None = None):
        self.engine, self.reports, self.model_name = engine, reports, model_name
        self.performance_floor = performance_floor or {}
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, list] | None = None
        self._lock = threading.Lock()

    def collect(self):
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] >= self.cache_seconds:
                self._cached = (time.monotonic(), self._build())
            return list(self._cached[1])

    def _build(self) -> list:
        families = []
        for name, build in (("jobs", lambda: _jobs_families(self.engine)),
                            ("drift", lambda: _drift_families(self.reports)),
                            ("champion", lambda: _champion_family(self.model_name)),
                            ("emissions", _emissions_families),
                            ("floor", lambda: _floor_family(self.performance_floor))):
            try:
                families += build()
            except Exception:  # one unreadable source must not take the others off /metrics
                log.exception("metrics from %s could not be read", name)
        return families
