"""The served model's quality per window: the estimate (no labels) with its band, the realised figure
from feedback, and how many labels each realised point rests on."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ui.components.charts import ALERT, CALM, MARGINS, NEUTRAL

METRIC_NAMES = {"roc_auc": "ROC AUC", "f1": "F1", "accuracy": "accuracy"}


def timeline(body: dict, metric: str) -> pd.DataFrame:
    rows = []
    for window in body["windows"]:
        estimated = (window.get("estimated") or {}).get(metric) or {}
        realised = (window.get("realised") or {}).get(metric)
        rows.append({"start": pd.Timestamp(window["start"]), "rows": window["rows"],
                     "estimated": estimated.get("value"), "low": (estimated.get("band") or [None])[0],
                     "high": (estimated.get("band") or [None, None])[1], "realised": realised,
                     "labels": window["labels"]})
    return pd.DataFrame(rows)


def quality_chart(frame: pd.DataFrame, metric: str, at_training: float | None,
                  floor: float | None) -> go.Figure:
    name = METRIC_NAMES[metric]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=frame["start"], y=frame["high"], mode="lines", line={"width": 0},
                                showlegend=False, hoverinfo="skip"))
    figure.add_trace(go.Scatter(x=frame["start"], y=frame["low"], mode="lines", line={"width": 0},
                                fill="tonexty", fillcolor="rgba(76,120,168,0.2)", name="95 % band"))
    figure.add_trace(go.Scatter(x=frame["start"], y=frame["estimated"], mode="lines+markers",
                                line={"color": NEUTRAL}, name=f"estimated {name} (no labels)"))
    figure.add_trace(go.Scatter(
        x=frame["start"], y=frame["realised"], mode="markers+text", marker={"color": CALM, "size": 10},
        text=[f"{n} labels" if n else "" for n in frame["labels"]], textposition="top center",
        name=f"realised {name} (feedback)"))
    if at_training is not None:
        figure.add_hline(y=at_training, line_dash="dot", line_color="#555",
                         annotation_text=f"at training {at_training:.3f}")
    if floor is not None:
        figure.add_hline(y=floor, line_dash="dash", line_color=ALERT, annotation_text=f"floor {floor:g}")
    return figure.update_layout(height=380, margin=MARGINS, title=f"{name} per window",
                                yaxis={"title": name}, legend={"orientation": "h", "y": -0.2})


def latest_line(frame: pd.DataFrame, metric: str, at_training: float | None) -> str | None:
    """`estimated F1 0.71 (band 0.66–0.76) against 0.78 at training` for the newest estimated window."""
    shown = frame.dropna(subset=["estimated"])
    if shown.empty:
        return None
    last = shown.iloc[-1]
    text = (f"Estimated {METRIC_NAMES[metric]} **{last['estimated']:.3f}** (band {last['low']:.3f}–"
            f"{last['high']:.3f}) on the latest window of {int(last['rows']):,} rows")
    return text + (f", against {at_training:.3f} at training." if at_training is not None else ".")
