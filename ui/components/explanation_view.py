"""An answer's reasons: the strongest feature contributions as a bar chart and in words."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from ui.components.charts import ALERT, CALM, MARGINS

SHOWN = 8


def contributions_chart(explanation: dict, label_text: str) -> go.Figure:
    ranked = sorted(explanation["contributions"].items(), key=lambda item: abs(item[1]), reverse=True)
    ranked = list(reversed(ranked[:SHOWN]))  # the strongest at the top of a horizontal bar chart
    scale = 100 if explanation["output"] == "probability" else 1
    figure = go.Figure(go.Bar(
        x=[value * scale for _, value in ranked], y=[name for name, _ in ranked], orientation="h",
        marker_color=[ALERT if value > 0 else CALM for _, value in ranked],
        texttemplate="%{x:+.1f} pts" if scale == 100 else "%{x:+.2f}"))
    unit = "percentage points of probability" if scale == 100 else "log-odds"
    return figure.update_layout(height=80 + 32 * len(ranked), margin=MARGINS,
                                title=f"What moved the answer towards “{label_text}”",
                                xaxis={"title": unit, "zeroline": True})


def show(prediction: dict, explained_by: dict) -> None:
    explanation = prediction["explanation"]
    reasons = explanation["reasons"]
    if reasons:
        st.markdown(f"**Why:** {reasons[0]['text']}.")
    st.plotly_chart(contributions_chart(explanation, prediction["label_text"]),
                    config={"displayModeBar": False})
    base, value = explanation["base_value"], explanation["value"]
    if explanation["output"] == "probability":
        summary = (f"The model starts from {base * 100:.1f} % for this class on average; these "
                   f"contributions take it to {value * 100:.1f} %.")
    else:
        summary = f"From an average of {base:+.2f} log-odds to {value:+.2f} for this record."
    st.caption(f"{summary} Explained by version **{explained_by['version']}** itself "
               f"({explained_by['method']}).")
