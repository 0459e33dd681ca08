"""Quality: is the champion still as good as it was, before the true outcomes come back? Per window,
its quality estimated from its own probabilities, and the realised figure where feedback exists."""

from __future__ import annotations

import streamlit as st

from ui.components import quality_charts
from ui.components.session import api

WINDOWS = {"24 hours by the hour": (60, 24), "7 days by the day": (1_440, 7),
           "the last hour by 5 minutes": (5, 12)}

st.title("Quality")
st.caption("Estimated without labels by confidence-based performance estimation on the champion's "
           "calibrated probabilities; realised on the rows whose true outcome was sent as feedback. "
           "Late feedback fills in the window its prediction belongs to.")
span, metric_column = st.columns(2)
minutes, count = WINDOWS[span.selectbox("Windows", list(WINDOWS), key="quality_windows")]
metric = metric_column.selectbox("Metric", list(quality_charts.METRIC_NAMES), key="quality_metric",
                                 format_func=quality_charts.METRIC_NAMES.get)
body = api().quality(window_minutes=minutes, windows=count)
champion = body.get("champion") or {}
at_training = (champion.get("at_training") or {}).get(metric)
frame = quality_charts.timeline(body, metric)
if line := quality_charts.latest_line(frame, metric, at_training):
    st.markdown(line)
else:
    st.info("No window has enough predictions for an estimate yet (30 rows at least).",
            icon=":material/info:")
floor = body["performance_floor"].get(metric)
st.plotly_chart(quality_charts.quality_chart(frame, metric, at_training, floor),
                config={"displayModeBar": False})
st.dataframe(frame.rename(columns={"start": "window start", "low": "band low", "high": "band high"}),
             hide_index=True, width="stretch")
