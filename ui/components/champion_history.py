"""Which version served as champion when: one bar per period (GET /models/champion/history)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import plotly.graph_objects as go

from ui.components import formatting
from ui.components.charts import CALM, MARGINS, NEUTRAL


def periods_frame(periods: list[dict]) -> pd.DataFrame:
    """One row per period, newest first; `to` is None while the version still serves."""
    rows = [{"version": f"v{p['version']}", "from": formatting.timestamp(p["from"]),
             "to": formatting.timestamp(p.get("to")), "moved by": p.get("moved_by") or "",
             "reason": p.get("reason") or ""} for p in periods]
    frame = pd.DataFrame(rows, columns=["version", "from", "to", "moved by", "reason"])
    for column in ("from", "to"):  # an empty `to` (still serving) as NaT
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.iloc[::-1].reset_index(drop=True)


def timeline(frame: pd.DataFrame) -> go.Figure:
    """Gantt-like: a bar from each period's start to its end (now for the serving one)."""
    now = pd.Timestamp(datetime.now(UTC))
    ordered = frame.iloc[::-1]
    ends = ordered["to"].where(ordered["to"].notna(), now)
    milliseconds = [(end - start).total_seconds() * 1000 for start, end in zip(ordered["from"], ends,
                                                                                   strict=True)]
    serving = ordered["to"].isna()
    figure = go.Figure(go.Bar(
        y=ordered["version"], x=milliseconds, base=[s.isoformat() for s in ordered["from"]], orientation="h",
        marker_color=[CALM if now_serving else NEUTRAL for now_serving in serving],
        customdata=[[formatting.when(start.isoformat()), "now" if end is None or pd.isna(end)
                     else formatting.when(end.isoformat()), by, reason]
                    for start, end, by, reason in zip(ordered["from"], ordered["to"], ordered["moved by"],
                                                      ordered["reason"], strict=True)],
        hovertemplate="%{y}: %{customdata[0]} → %{customdata[1]}<br>moved by %{customdata[2]}"
                      "<br>%{customdata[3]}<extra></extra>"))
    versions = list(dict.fromkeys(ordered["version"]))
    return figure.update_layout(
        height=90 + 32 * len(versions), margin=MARGINS, title="Champion over time (green: serving now)",
        xaxis={"type": "date", "title": "UTC"},
        yaxis={"type": "category", "categoryorder": "array", "categoryarray": versions[::-1]},
        showlegend=False)
