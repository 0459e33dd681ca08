"""Drift: the latest verdict, drift over time, one column in detail, Evidently's full report, and a
report on demand with its progress."""

from __future__ import annotations

import streamlit as st

from ui.components import drift_charts, drift_view, formatting
from ui.components.drift_panels import banner, report_page, run_now, verdict
from ui.components.session import api, schema

REPORTS_SHOWN = 100
CHART_CONFIG = {"displayModeBar": False}


def every_column(latest: dict, reports: list[dict]) -> None:
    st.dataframe(drift_view.columns_table(latest, reports), hide_index=True, width="stretch", column_config={
        "drifted": st.column_config.CheckboxColumn(width="small"),
        "how much": st.column_config.TextColumn(help="the test's score against its threshold"),
        "drifting": st.column_config.TextColumn("drifting", width="medium"),
        "score": st.column_config.NumberColumn(format="%.4g", help="the test's score on every row"),
        "threshold": st.column_config.NumberColumn(format="%g")})


def one_column(latest: dict, reports: list[dict]) -> None:
    """The chosen column's distribution (when the report has it) and its score in every report."""
    chart, side = st.columns([3, 2], gap="large")
    by_drift = sorted(latest["columns"], key=lambda c: drift_view.drift_ratio(c) or 0.0, reverse=True)
    name = side.selectbox("Column", [c["name"] for c in by_drift], key="drift_column",
                          help="the most drifted column of the latest report comes first")
    column = drift_view.column_of(latest, name)
    side.markdown(f"**{name}**: {column['test']} {column.get('statistic') or 0:.4g} against a threshold "
                  f"of {column['threshold']:g} in the latest report, {drift_view.how_much(column)}: "
                  f"{'drifted' if column['drifted'] else 'no drift'}.")
    frame = drift_view.column_history(reports, name)
    score = drift_charts.column_score_over_time(frame, name, drift_view.is_p_value(column["test"]))
    if spread := (latest.get("distributions") or {}).get(name):
        unit = next((f.get("unit") for f in schema()["features"] if f["name"] == name), None)
        chart.plotly_chart(drift_charts.distribution(name, spread, unit), config=CHART_CONFIG)
        side.plotly_chart(score, config=CHART_CONFIG)
        return
    chart.plotly_chart(score, config=CHART_CONFIG)
    side.caption("Evidently's report below draws the column's distribution in the training data and in "
                 "the window side by side.")


st.title("Drift")
st.caption("The predictions the service made, compared with the training data of the model that made "
           "them (Evidently): which columns moved, how far, and since when. Reports run on a schedule "
           "and on demand.")
run_now()
reports = api().reports(limit=REPORTS_SHOWN)["items"]
if not reports:
    st.info("No drift report yet: run one above once the service has made some predictions.",
            icon=":material/info:")
    st.stop()
latest = reports[0]
banner(latest, reports)
facts, over_time = st.columns([2, 3], gap="large")
with facts:
    verdict(latest, reports)
with over_time:
    st.plotly_chart(drift_charts.drift_share_over_time(drift_view.history(reports)), config=CHART_CONFIG)
st.subheader("Every column of the latest report")
every_column(latest, reports)
one_column(latest, reports)
st.subheader("Evidently's report")
report_page(reports)
st.caption(f"The newest {len(reports)} report(s); times in UTC; the latest made "
           f"{formatting.when(latest['created'])}.")
