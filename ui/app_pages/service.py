"""Service: how the API has been doing over the last hour — requests, errors, latency, predictions per
class — and the job queue; refreshed every few seconds."""

from __future__ import annotations

import streamlit as st

from ui.components import formatting, service_charts
from ui.components.errors import guarded
from ui.components.service_view import Dashboard, dashboard, prometheus_url
from ui.components.session import schema

REFRESH_SECONDS = 5
CHART_CONFIG = {"displayModeBar": False}


def milliseconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.3g} ms"


def rate(per_second: float | None) -> str:
    return "—" if per_second is None else f"{per_second:.3g} /s"


def headline(board: Dashboard) -> None:
    requests, errors, p50, p95, p99, queue = st.columns(6)
    requests.metric("Requests", rate(board.request_rate), help=f"all endpoints, over {board.span}")
    errors.metric("Errors (5xx)", formatting.percent(board.error_ratio), help=f"over {board.span}")
    for column, name in ((p50, "p50"), (p95, "p95"), (p99, "p99")):
        column.metric(f"Latency {name}", milliseconds(board.latency[name]),
                      help=f"POST /api/v1/predict, over {board.span}")
    queue.metric("Jobs waiting", f"{board.queued}", help=f"{board.queued} queued, {board.running} running")


def predictions_total(board: Dashboard, labels: dict[str, str]) -> str:
    totals = board.predictions.groupby("label")["rows"].sum()
    if not totals.sum():
        return "No prediction in the last hour."
    parts = [f"{labels.get(label, label)} {rows:,.0f} ({rows / totals.sum() * 100:.1f} %)"
             for label, rows in totals.items()]
    return f"**{totals.sum():,.0f} rows predicted in the last hour**: " + ", ".join(parts) + "."


@st.fragment(run_every=REFRESH_SECONDS)
@guarded
def live() -> None:
    board = dashboard()
    labels = schema()["target"]["labels"]
    headline(board)
    st.caption(f"Source: {board.source}. Rates and percentiles over {board.span}; "
               f"{board.running} job(s) running. Refreshed every {REFRESH_SECONDS} s.")
    traffic, latency = st.columns(2, gap="large")
    traffic.plotly_chart(service_charts.traffic(board.over_time), config=CHART_CONFIG)
    latency.plotly_chart(service_charts.latency(board.over_time), config=CHART_CONFIG)
    st.markdown(predictions_total(board, labels))
    st.plotly_chart(service_charts.predictions_per_class(board.predictions, labels, board.until),
                    config=CHART_CONFIG)


st.title("Service")
st.caption("How the control API has served over the last hour: requests, errors, latency of a "
           "prediction, predictions per class, and the jobs waiting for a worker"
           + (" (from Prometheus)." if prometheus_url() else "."))
live()
