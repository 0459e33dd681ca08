"""Plotly figures of the Drift page: drift share over time, a column's score over time, and a column's
distribution in the reference against the window."""

from __future__ import annotations

import itertools

import pandas as pd
import plotly.graph_objects as go

from ui.components.charts import ALERT, CALM, MARGINS, NEUTRAL

REFERENCE, CURRENT = "#9aa5b1", "#1f5fbf"
TIME_AXIS = {"title": None}


def _time_axis(times: pd.Series) -> dict:
    """A lone report sits in the middle of an hour, not on an axis of one instant."""
    if len(times) != 1:
        return TIME_AXIS
    half_hour = pd.Timedelta(minutes=30)
    return {**TIME_AXIS, "range": [times.iloc[0] - half_hour, times.iloc[0] + half_hour]}


def drift_share_over_time(frame: pd.DataFrame) -> go.Figure:
    """frame: drift_view.history (one row per report, oldest first)."""
    colours = [ALERT if drifted else CALM for drifted in frame["dataset_drift"]]
    figure = go.Figure(go.Scatter(
        x=frame["created"], y=frame["drift_share"] * 100, mode="lines+markers", name="drifted features",
        line={"color": NEUTRAL}, marker={"color": colours, "size": 10},
        customdata=frame[["drifted", "rows"]].to_numpy(),
        hovertemplate="%{x|%Y-%m-%d %H:%M} UTC<br>%{y:.0f} % of features drifted: %{customdata[0]}"
                      "<br>%{customdata[1]:,} predictions<extra></extra>"))
    threshold = frame["threshold"].dropna()
    if len(threshold):
        figure.add_hline(y=threshold.iloc[-1] * 100, line_dash="dash", line_color=ALERT,
                         annotation_text="dataset drift at", annotation_position="top left")
    return figure.update_layout(height=320, margin=MARGINS, title="Share of drifted features, per report",
                                yaxis={"title": "features drifted (%)", "range": [-5, 105]},
                                xaxis=_time_axis(frame["created"]), showlegend=False)


def column_score_over_time(frame: pd.DataFrame, name: str, p_value: bool) -> go.Figure:
    """frame: drift_view.column_history; the test's score in every report with its threshold."""
    colours = [ALERT if drifted else CALM for drifted in frame["drifted"]]
    figure = go.Figure(go.Scatter(x=frame["created"], y=frame["score"], mode="lines+markers",
                                  line={"color": NEUTRAL}, marker={"color": colours, "size": 9},
                                  hovertemplate="%{x|%Y-%m-%d %H:%M} UTC<br>%{y:.3g}<extra></extra>"))
    where = "below" if p_value else "at or above"
    figure.add_hline(y=frame["threshold"].iloc[-1], line_dash="dash", line_color=ALERT,
                     annotation_text=f"drift {where}", annotation_position="top left")
    return figure.update_layout(height=320, margin=MARGINS, showlegend=False, title=f"“{name}”, per report",
                                xaxis={**_time_axis(frame["created"]), "nticks": 4, "tickangle": 0},
                                yaxis={"title": frame["test"].iloc[-1],
                                       "type": "log" if p_value else "linear"})


def distribution(name: str, spread: dict, unit: str | None = None) -> go.Figure:
    """One column's share of rows per bin (numbers) or per category, reference against the window.
    spread: {"kind": "num", "edges": [...], "reference": [...], "current": [...]} or
    {"kind": "cat", "categories": [...], "reference": [...], "current": [...]} (shares, 0..1)."""
    if spread["kind"] == "num":
        edges = spread["edges"]
        x = [(low + high) / 2 for low, high in itertools.pairwise(edges)]
        widths = [high - low for low, high in itertools.pairwise(edges)]
    else:
        x, widths = [str(c) for c in spread["categories"]], None
    figure = go.Figure()
    for side, colour, label in (("reference", REFERENCE, "reference (training)"),
                                ("current", CURRENT, "window (predictions)")):
        figure.add_trace(go.Bar(x=x, y=[share * 100 for share in spread[side]], width=widths, name=label,
                                marker_color=colour, opacity=0.6 if widths else 1.0))
    return figure.update_layout(height=320, margin=MARGINS, barmode="overlay" if widths else "group",
                                title=f"“{name}”: reference against the window",
                                yaxis={"title": "share of rows (%)"}, xaxis={"title": unit},
                                legend={"orientation": "h", "y": -0.2})
