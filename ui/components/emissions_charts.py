"""Plotly figures of the Emissions page: cost per run or version, cumulative emissions, emissions
against the metric gained. Values arrive in base units (kg, kWh, s) and are drawn in `units`."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.components.charts import ALERT, CALM, MARGINS, NEUTRAL
from ui.components.emissions_view import Unit

ENERGY_COLOUR, TIME_COLOUR = "#72b7b2", "#9d755d"


def costs(frame: pd.DataFrame, label: str, units: dict[str, Unit]) -> go.Figure:
    """Three bar charts side by side: CO₂eq, energy and duration for each row of `frame` (runs or
    versions), labelled by its column `label`."""
    quantities = [("emissions_kg_co2eq", "CO₂eq", NEUTRAL), ("energy_kwh", "energy", ENERGY_COLOUR),
                  ("duration_s", "duration", TIME_COLOUR)]
    figure = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                           subplot_titles=[f"{name} ({units[key].symbol})" for key, name, _ in quantities])
    figure.update_annotations(font_size=13)
    for index, (key, name, colour) in enumerate(quantities, start=1):
        values = [units[key].of(v) if pd.notna(v) else None for v in frame[key]]
        figure.add_trace(go.Bar(x=frame[label].astype(str), y=values, name=name, marker_color=colour,
                                hovertemplate=f"%{{x}}<br>%{{y:.3g}} {units[key].symbol}<extra></extra>"),
                         row=1, col=index)
    figure.update_xaxes(type="category", automargin=True)
    return figure.update_layout(height=340, margin={**MARGINS, "t": 50, "b": 30}, showlegend=False,
                                bargap=0.3)


def cumulative(frame: pd.DataFrame, unit: Unit) -> go.Figure:
    figure = go.Figure(go.Scatter(
        x=frame["timestamp"], y=[unit.of(v) for v in frame["cumulative_kg"]], mode="lines+markers",
        line={"shape": "hv", "color": NEUTRAL}, customdata=frame["run"],
        hovertemplate=f"%{{customdata}}<br>%{{y:.3g}} {unit.symbol} CO₂eq so far<extra></extra>"))
    return figure.update_layout(height=320, margin=MARGINS, title="Cumulative emissions of training",
                                yaxis={"title": f"CO₂eq ({unit.symbol})", "rangemode": "tozero"},
                                showlegend=False)


def cost_of_gain(frame: pd.DataFrame, unit: Unit, metric: str) -> go.Figure:
    """Each retrain's emissions against what it gained on the primary metric over the best earlier run."""
    gained = frame.dropna(subset=["metric_gain", "emissions_kg_co2eq"])
    colours = [CALM if g > 0 else ALERT if g < 0 else "#888" for g in gained["metric_gain"]]
    figure = go.Figure(go.Scatter(
        x=[unit.of(v) for v in gained["emissions_kg_co2eq"]], y=gained["metric_gain"], mode="markers+text",
        text=gained["version"], textposition="top center", marker={"color": colours, "size": 11},
        customdata=gained["run"],
        hovertemplate=f"%{{customdata}}<br>%{{x:.3g}} {unit.symbol}<br>{metric} %{{y:+.4f}}<extra></extra>"))
    figure.add_hline(y=0, line_color="#bbb")
    return figure.update_layout(height=320, margin=MARGINS, showlegend=False,
                                title=f"Emissions against {metric} gained over the best earlier run",
                                xaxis={"title": f"CO₂eq of the run ({unit.symbol})",
                                       "rangemode": "tozero"},
                                yaxis={"title": f"{metric} gained"})
