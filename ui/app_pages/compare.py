"""Compare: would the challenger have done better on what the line actually sent? The verdict first,
then the evidence: agreement, the two probability distributions, the rows they disagree on most."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.components import compare_view, promotion
from ui.components.access import can
from ui.components.approvals import decision_controls
from ui.components.session import api

CHART_CONFIG = {"displayModeBar": False}


def promote_controls(challenger: str, champion: str | None) -> None:
    """An admin's way to act on the verdict, by the approval rule when the challenger waits for it."""
    waiting = [a for a in api().approvals("pending") if str(a["version"]) == challenger]
    if waiting and can("models:approve"):
        st.markdown(f"v{challenger} passed the gate and waits for an admin's approval:")
        decision_controls(challenger)
    elif not waiting and can("models:promote"):
        if st.button(f"Promote v{challenger}…", key="compare_promote", type="primary"):
            promotion.ask("promote", challenger, "promoted from the Compare page (shadowed live traffic)")
        if pending := st.session_state.get(promotion.PENDING):
            promotion.confirmation(pending, champion)
    if message := st.session_state.pop(promotion.DONE, None):
        st.success(message, icon=":material/check_circle:")


st.title("Compare")
st.caption("The challenger scores every live request in the shadow: its answers are logged, never "
           "served. Here the two models meet on the same requests.")
last = st.select_slider("Live rows", options=[500, 1_000, 5_000, 20_000, 100_000], value=5_000,
                        key="compare_last", help="the newest rows the challenger scored")
body = api().compare(last=last)
shadow = body["shadow"]
if not shadow["enabled"]:
    st.info("Shadow scoring is off in this deployment (OPCON_SHADOW=false).", icon=":material/info:")
elif shadow["challenger_version"] is None and not body["compared_rows"]:
    st.info("No challenger yet: a retrain whose model does not replace the champion leaves one, and "
            "it then shadows live traffic.", icon=":material/info:")
compare_view.verdict(body)
compare_view.headline(body)
champion = (body["champion_versions"] or [None])[-1]
challenger = (body["challenger_versions"] or [shadow["challenger_version"]])[-1]
if shadow["failures"]:
    st.warning(f"The challenger failed on {shadow['failures']} request(s) in this API worker "
               f"({shadow['last_error']}); the served answers were not affected.", icon=":material/warning:")
quality = body["quality"]
if quality.get("labelled_rows"):
    st.subheader("On the rows with feedback")
    st.markdown(compare_view.mcnemar_text(quality))
    st.dataframe(compare_view.quality_table(quality), hide_index=True, width="stretch",
                 column_config={"value": st.column_config.NumberColumn(format="%.3f")})
if challenger and body["compared_rows"]:
    promote_controls(str(challenger), champion)
if body["compared_rows"]:
    st.subheader("The evidence")
    chart, features = st.columns([3, 2], gap="large")
    chart.plotly_chart(compare_view.probability_chart(body["probabilities"]), config=CHART_CONFIG)
    with features:
        st.markdown("**What sets the disagreements apart**")
        if body["disagreement_features"]:
            st.dataframe(compare_view.features_table(body["disagreement_features"]), hide_index=True,
                         width="stretch", column_config={
                             "p-value": st.column_config.NumberColumn(format="%.3g")})
        else:
            st.caption("Too few disagreements (or agreements) to test.")
    st.markdown(f"**Where they disagree most** ({body['disagreeing_rows']:,} row(s) in all)")
    if body["top_disagreements"]:
        st.dataframe(pd.DataFrame(body["top_disagreements"]), hide_index=True, width="stretch")
        st.download_button("Download every disagreement (CSV)", api().disagreements_csv(last=last),
                           file_name="disagreements.csv", mime="text/csv", key="disagreements_csv",
                           icon=":material/download:")
