"""Plotly figures: probability gauge, class probabilities, probability histogram, metrics by version."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

ALERT, CALM, NEUTRAL = "#d62728", "#2ca02c", "#4c78a8"
MARGINS = {"l": 10, "r": 10, "t": 40, "b": 10}


def probability_gauge(probability: float, threshold: float | None, positive_label: str) -> go.Figure:
    above = threshold is not None and probability >= threshold
    gauge = {"axis": {"range": [0, 100], "ticksuffix": " %"},
             "bar": {"color": ALERT if above else CALM}, "bgcolor": "rgba(0,0,0,0)"}
    if threshold is not None:
        gauge["threshold"] = {"line": {"color": "#333", "width": 3}, "value": threshold * 100,
                              "thickness": 0.85}
    figure = go.Figure(go.Indicator(mode="gauge+number", value=probability * 100, gauge=gauge,
                                    number={"suffix": " %", "valueformat": ".1f"},
                                    title={"text": f"Probability of “{positive_label}”"}))
    return figure.update_layout(height=240, margin={**MARGINS, "t": 60})


def class_probabilities(probabilities: dict[str, float], labels: dict[str, str]) -> go.Figure:
    names = [labels.get(k, k) for k in probabilities]
    figure = go.Figure(go.Bar(x=[v * 100 for v in probabilities.values()], y=names, orientation="h",
                              marker_color=NEUTRAL, texttemplate="%{x:.1f} %"))
    return figure.update_layout(height=60 + 40 * len(names), margin=MARGINS, title="Probability by class",
                                xaxis={"range": [0, 100], "ticksuffix": " %"})


def probability_histogram(probabilities: pd.Series, threshold: float | None,
                          positive_label: str) -> go.Figure:
    figure = go.Figure(go.Histogram(x=probabilities * 100, xbins={"start": 0, "end": 100, "size": 2.5},
                                    marker_color=NEUTRAL))
    if threshold is not None:
        figure.add_vline(x=threshold * 100, line_dash="dash", line_color=ALERT,
                         annotation_text=f"threshold {threshold * 100:.1f} %")
    return figure.update_layout(height=300, margin=MARGINS, bargap=0.05,
                                title=f"Probability of “{positive_label}” per row",
                                xaxis={"title": "probability (%)", "range": [0, 100]},
                                yaxis={"title": "rows"})


def class_counts(counts: pd.Series) -> go.Figure:
    figure = go.Figure(go.Bar(x=counts.index.astype(str), y=counts.to_numpy(), marker_color=NEUTRAL))
    return figure.update_layout(height=300, margin=MARGINS, title="Predicted class per row",
                                yaxis={"title": "rows"})


def metrics_by_version(frame: pd.DataFrame, metrics: list[str], champion: str | None) -> go.Figure:
    """frame: one row per version, column `version` and one column per metric (0..1)."""
    ordered = frame.sort_values("version", key=lambda v: v.astype(int))
    x = [f"v{v}" for v in ordered["version"]]
    figure = go.Figure()
    for metric in metrics:
        figure.add_trace(go.Scatter(x=x, y=ordered[metric], mode="lines+markers", name=metric))
    if champion is not None and champion in set(ordered["version"]):
        figure.add_vline(x=x.index(f"v{champion}"), line_dash="dot", line_color=CALM,
                         annotation_text="champion")
    return figure.update_layout(height=320, margin=MARGINS, title="Test metrics by version",
                                yaxis={"title": "score (0 to 1)"}, xaxis={"type": "category"},
                                legend={"orientation": "h", "y": -0.2})
