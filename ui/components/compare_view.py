"""The champion against the challenger on live traffic (GET /models/compare), for the Compare page."""

from __future__ import annotations

import itertools

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ui.components.charts import ALERT, MARGINS, NEUTRAL

VERDICT_STYLE = {"challenger better": st.success, "challenger worse": st.error,
                 "no detectable difference": st.info, "no labels": st.info, "no data": st.info}


def verdict(body: dict) -> None:
    said = body["verdict"]
    VERDICT_STYLE.get(said["outcome"], st.info)(f"**{said['text']}**", icon=":material/balance:")


def headline(body: dict) -> None:
    agreement, labelled, compared = st.columns(3)
    agreement.metric("Agree on the label", "—" if body["agreement"] is None else f"{body['agreement']:.1%}",
                     help="share of the compared live rows both models gave the same class")
    compared.metric("Live rows compared", f"{body['compared_rows']:,}",
                    help="rows the champion served and the challenger scored in the shadow")
    labelled.metric("With feedback", f"{body['quality'].get('labelled_rows', 0):,}",
                    help="compared rows whose true outcome is known: the verdict rests on them")


def quality_table(quality: dict) -> pd.DataFrame:
    rows = []
    for side in ("champion", "challenger"):
        for metric, figure in quality[side].items():
            low, high = figure["ci95"]
            rows.append({"model": side, "metric": metric, "value": figure["value"],
                         "95 % interval": f"{low:.3f} – {high:.3f}"})
    return pd.DataFrame(rows)


def mcnemar_text(quality: dict) -> str:
    test = quality["mcnemar"]
    return (f"Only the champion was right on **{test['only_champion_right']}** row(s), only the "
            f"challenger on **{test['only_challenger_right']}** (McNemar's exact test: p = "
            f"{test['p_value']:.3g}).")


def probability_chart(probabilities: dict) -> go.Figure:
    edges = probabilities["bins"]
    centres = [(a + b) / 2 * 100 for a, b in itertools.pairwise(edges)]
    figure = go.Figure()
    for side, colour in (("champion", NEUTRAL), ("challenger", ALERT)):
        figure.add_trace(go.Bar(x=centres, y=probabilities[side], name=side, marker_color=colour,
                                opacity=0.7))
    return figure.update_layout(barmode="overlay", height=300, margin=MARGINS, bargap=0.05,
                                title=f"Probability of the {probabilities['of']}, per row",
                                xaxis={"title": "probability (%)", "range": [0, 100]},
                                yaxis={"title": "rows"})


def features_table(found: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"feature": f["feature"], "sets the disagreements apart": f["drifted"],
                          "test": f["test"], "p-value": f["p_value"]} for f in found])
