"""Plotly figures of the Service page: traffic and errors, latency percentiles, predictions per class."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ui.components.charts import ALERT, MARGINS, NEUTRAL

LATENCY_COLOURS = {"p50": "#4c78a8", "p95": "#f58518", "p99": "#d62728"}
CLASS_COLOURS = ["#4c78a8", "#d62728", "#54a24b", "#f58518", "#b279a2", "#9d755d"]
LEGEND = {"orientation": "h", "y": -0.2}
TIME_AXIS = {"tickformat": "%H:%M:%S", "title": None}


def _time_axis(over_time: pd.DataFrame) -> dict:
    """At least the last minute, so that a few readings do not fill the axis with one instant."""
    if over_time.empty:
        return TIME_AXIS
    end = over_time["time"].max()
    start = min(over_time["time"].min(), end - pd.Timedelta(minutes=1))
    padding = (end - start) * 0.03
    return {**TIME_AXIS, "range": [start - padding, end + padding]}


def _empty(figure: go.Figure, text: str) -> go.Figure:
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                          font={"color": "#888"})
    return figure.update_xaxes(visible=False).update_yaxes(visible=False)


def traffic(over_time: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    if over_time["requests_per_s"].notna().any():
        figure.add_trace(go.Scatter(x=over_time["time"], y=over_time["requests_per_s"], name="requests/s",
                                    mode="lines+markers", line={"color": NEUTRAL}, marker={"size": 4}))
        figure.add_trace(go.Scatter(x=over_time["time"], y=over_time["error_ratio"] * 100,
                                    name="errors (5xx, %)", mode="lines+markers", yaxis="y2",
                                    marker={"size": 4},
                                    line={"color": ALERT, "dash": "dot"}))
    else:
        _empty(figure, "collecting readings…")
    worst = over_time["error_ratio"].max() * 100 if over_time["error_ratio"].notna().any() else 0.0
    return figure.update_layout(height=300, margin=MARGINS, title="Requests and errors", legend=LEGEND,
                                xaxis=_time_axis(over_time),
                                yaxis={"title": "requests/s", "rangemode": "tozero"},
                                yaxis2={"title": "errors (%)", "overlaying": "y", "side": "right",
                                        "range": [0, max(5.0, worst * 1.2)], "tickmode": "auto",
                                        "showgrid": False})


def latency(over_time: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    for name, colour in LATENCY_COLOURS.items():
        if over_time[name].notna().any():
            figure.add_trace(go.Scatter(x=over_time["time"], y=over_time[name] * 1000, name=name,
                                        mode="lines+markers", line={"color": colour}, marker={"size": 4}))
    if not figure.data:
        _empty(figure, "no prediction request in this span")
    return figure.update_layout(height=300, margin=MARGINS, title="Latency of POST /predict",
                                xaxis=_time_axis(over_time),
                                yaxis={"title": "ms", "rangemode": "tozero"}, legend=LEGEND)


def predictions_per_class(frame: pd.DataFrame, labels: dict[str, str], until: pd.Timestamp) -> go.Figure:
    """frame: minute, label, rows; stacked bars, one colour per class, over the hour up to `until`."""
    figure = go.Figure()
    for index, (label, rows) in enumerate(frame.groupby("label", sort=True)):
        figure.add_trace(go.Bar(x=rows["minute"] + pd.Timedelta(seconds=30), y=rows["rows"],
                                width=55_000, name=labels.get(label, label),  # ms: one minute, a gap
                                marker_color=CLASS_COLOURS[index % len(CLASS_COLOURS)]))
    if not figure.data:
        _empty(figure, "no prediction in the last hour")
    return figure.update_layout(height=300, margin=MARGINS, barmode="stack", legend=LEGEND,
                                title="Predictions per minute, by class", yaxis={"title": "rows"},
                                xaxis={"range": [until - pd.Timedelta(hours=1), until],
                                       "tickformat": "%H:%M"})
