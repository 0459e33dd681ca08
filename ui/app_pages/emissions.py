"""Emissions: what every training run cost in CO₂eq, energy and time, per run and per model version,
over time, and against what it gained; how it was measured; a comparison for scale."""

from __future__ import annotations

import streamlit as st

from ui.components import emissions_charts, emissions_view, formatting
from ui.components.emissions_view import ENERGY, MASS, unit_for
from ui.components.session import api

CHART_CONFIG = {"displayModeBar": False}
GROUPS = {"run": "per training run", "version": "per model version"}

st.title("Emissions")
st.caption("CodeCarbon measures every training run: the energy the machine drew while the model was "
           "fitted, and the CO₂-equivalent of that energy where the training ran.")
answer = api().emissions()
runs = answer["items"]
if not runs:
    st.info("No training run has been recorded yet: the first retrain adds one.", icon=":material/info:")
    st.stop()

frame = emissions_view.runs_frame(runs)
metric = formatting.metric_name(answer["primary_metric"])
total_kg, total_kwh = answer["total_emissions_kg_co2eq"], answer["total_energy_kwh"]
units = emissions_view.units(frame)
mass = units["emissions_kg_co2eq"]
mode, detail = emissions_view.tracking_mode(runs)

emitted, energy, count, tracked = st.columns(4)
emitted.metric("CO₂eq emitted, all training", unit_for([total_kg], MASS).text(total_kg))
energy.metric("Energy, all training", unit_for([total_kwh], ENERGY).text(total_kwh))
count.metric("Training runs", f"{len(runs)}")
tracked.metric("Power readings", mode, help=f"newest run: {detail}. Measured: read from the hardware's "
               "counters (RAPL); estimated: from CPU load and a power model.")
newest = runs[-1]
st.markdown(emissions_view.comparison(total_kg, newest["emissions_kg_co2eq"], len(runs)))
st.caption(f"Assumption for the comparison: {emissions_view.CAR_FACTOR_SOURCE}. Electricity's carbon "
           f"intensity: {newest.get('country_iso_code') or 'the default'} grid (CodeCarbon).")

heading, choice = st.columns([3, 2], vertical_alignment="bottom")
heading.subheader("What each training cost")
group = choice.segmented_control("Show", list(GROUPS), format_func=GROUPS.get, default="run",
                                 key="emissions_group", label_visibility="collapsed") or "run"
costs = frame if group == "run" else emissions_view.by_version(frame)
st.plotly_chart(emissions_charts.costs(costs, group, units), config=CHART_CONFIG)
over_time, gain = st.columns(2, gap="large")
over_time.plotly_chart(emissions_charts.cumulative(frame, mass), config=CHART_CONFIG)
if frame["metric_gain"].notna().any():
    gain.plotly_chart(emissions_charts.cost_of_gain(frame, mass, metric), config=CHART_CONFIG)
else:
    gain.info(f"Emissions against {metric} gained appear from the second training run.",
              icon=":material/scatter_plot:")

st.subheader("Every run")
table = frame[["timestamp", "version", "estimator", "rows", "duration_s", "energy_kwh",
               "emissions_kg_co2eq", "primary_metric_value", "tracking_mode"]].iloc[::-1]
st.dataframe(table.assign(energy_kwh=table["energy_kwh"].map(units["energy_kwh"].of),
                          emissions_kg_co2eq=table["emissions_kg_co2eq"].map(mass.of)),
             hide_index=True, width="stretch", column_config={
                 "timestamp": st.column_config.DatetimeColumn("trained", format="YYYY-MM-DD HH:mm",
                                                              timezone="UTC"),
                 "rows": st.column_config.NumberColumn("training rows", format="%d"),
                 "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
                 "energy_kwh": st.column_config.NumberColumn(f"energy ({units['energy_kwh'].symbol})",
                                                             format="%.3g"),
                 "emissions_kg_co2eq": st.column_config.NumberColumn(f"CO₂eq ({mass.symbol})",
                                                                     format="%.3g"),
                 "primary_metric_value": st.column_config.NumberColumn(f"test {metric}", format="%.4f"),
                 "tracking_mode": st.column_config.TextColumn("power")})
