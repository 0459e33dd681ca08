"""The Service page's numbers, from Prometheus when PROMETHEUS_URL is set, else from the API itself
(/metrics read by this page every few seconds, and the prediction log's summary)."""

from __future__ import annotations

import dataclasses
import os
import time

import pandas as pd
import streamlit as st

from ui.components import formatting, service_metrics
from ui.components.prometheus import HOUR, PrometheusClient, prometheus_dashboard_parts
from ui.components.session import api

READINGS = "service_metrics_readings"


@dataclasses.dataclass
class Dashboard:
    source: str  # where the numbers come from, said under the page's title
    span: str  # what "the rate" and the percentiles cover
    request_rate: float | None  # requests per second
    error_ratio: float | None  # share of requests answered 5xx
    latency: dict[str, float | None]  # p50/p95/p99 of POST /predict, seconds
    over_time: pd.DataFrame  # time (UTC), requests_per_s, error_ratio, p50, p95, p99
    predictions: pd.DataFrame  # minute (UTC), label, rows: the last hour
    until: pd.Timestamp  # the end of that hour
    queued: int | None = None
    running: int | None = None


def prometheus_url() -> str | None:
    return (os.environ.get("PROMETHEUS_URL") or "").rstrip("/") or None


def _per_minute(summary: dict) -> pd.DataFrame:
    rows = [{"minute": formatting.timestamp(m["minute"]), "label": label, "rows": count}
            for m in summary["per_minute"] for label, count in m["labels"].items()]
    return pd.DataFrame(rows, columns=["minute", "label", "rows"])


def from_api() -> Dashboard:
    """Rates between this browser tab's readings of /metrics (up to an hour of them); with a single
    reading, the error ratio and percentiles since the API started."""
    client = api()
    reading = service_metrics.parse(client.metrics_text(), time.time())
    readings = st.session_state[READINGS] = service_metrics.keep(st.session_state.get(READINGS, []),
                                                                 reading, HOUR)
    change = reading.minus(readings[0])
    if change.at >= 1:
        rate = change.requests / change.at
        span = f"the last {formatting.duration(change.at)} (read by this page)"
    else:
        change, rate, span = reading, None, "since the API started"
    over_time = pd.DataFrame(service_metrics.intervals(readings),
                             columns=["time", "requests_per_s", "error_ratio", "p50", "p95", "p99"])
    over_time["time"] = service_metrics.utc(over_time["time"])
    summary = client.predictions_summary(60)
    return Dashboard(
        source="the API's own /metrics, read every few seconds while this page is open, and the "
               "prediction log (set PROMETHEUS_URL for the full history)",
        span=span, request_rate=rate,
        error_ratio=change.errors / change.requests if change.requests else None,
        latency=service_metrics.percentiles(change.latency), over_time=over_time,
        predictions=_per_minute(summary), until=formatting.timestamp(summary["until"]))


def from_prometheus(url: str) -> Dashboard:
    now = time.time()
    parts = prometheus_dashboard_parts(PrometheusClient(url), now)
    return Dashboard(source=f"Prometheus at {url}", span="the last hour",
                     until=service_metrics.utc(now), **parts)


def dashboard() -> Dashboard:
    url = prometheus_url()
    board = from_prometheus(url) if url else from_api()
    client = api()
    board.queued = client.jobs(status="queued", limit=1)["total"]
    board.running = client.jobs(status="running", limit=1)["total"]
    return board
