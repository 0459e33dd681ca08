"""Models: versions waiting for approval, the registry's versions with their evidence, metrics over
versions, a version's model card, and which version was champion when."""

from __future__ import annotations

import re
from urllib.parse import quote

import pandas as pd
import streamlit as st

from ui.api_client import ApiRejectedError
from ui.components import champion_history, charts, formatting
from ui.components.approvals import pending_approvals
from ui.components.promotion import primary_metric, version_label
from ui.components.session import api, mlflow_ui_url

CHART_DEFAULTS = ("test_pr_auc", "test_f1", "test_roc_auc")


def registry_table(versions: list[dict], primary: str | None) -> pd.DataFrame:
    return pd.DataFrame([{
        "version": int(v["version"]),
        "aliases": ", ".join(v["aliases"]),
        "created": formatting.timestamp(v["created"]),
        "primary metric": v["metrics"].get(f"test_{primary}") if primary else None,
        "PR AUC": v["metrics"].get("test_pr_auc"),
        "F1": v["metrics"].get("test_f1"),
        "threshold": v["threshold"],
        "data version": formatting.short_hash(v["data_version"]),
        "training CO₂": formatting.grams_co2(v["emissions_kg_co2eq"]),
        "decision": v["promotion"].get("outcome", ""),
    } for v in versions])


def show_registry(versions: list[dict], primary: str | None) -> None:
    score = st.column_config.NumberColumn(format="%.4f")
    table = registry_table(versions, primary)
    if primary == "pr_auc":  # the primary column already shows it
        table = table.drop(columns=["PR AUC"])
    if table["threshold"].isna().all():  # a multi-class target: the most probable class wins
        table = table.drop(columns=["threshold"])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "version": st.column_config.NumberColumn(format="v%d", width="small"),
        "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", timezone="UTC"),
        "primary metric": st.column_config.NumberColumn(
            f"{formatting.metric_name(primary)} (primary)" if primary else "primary metric", format="%.4f",
            help="the metric the promotion gate compares, on the test split"),
        "PR AUC": score, "F1": score,
        "threshold": st.column_config.NumberColumn(format="%.3f",
                                                   help="decision threshold of the positive class"),
        "training CO₂": st.column_config.TextColumn(help="emissions of the training run (CodeCarbon)"),
        "data version": st.column_config.TextColumn(help="DVC md5 of the training data (first characters)"),
    })


def metric_chart(versions: list[dict], champion: str | None) -> None:
    available = sorted({k for v in versions for k in v["metrics"] if k.startswith("test_")})
    chosen = st.multiselect("Metrics", available, default=[m for m in CHART_DEFAULTS if m in available],
                            format_func=formatting.metric_name, key="chart_metrics")
    frame = pd.DataFrame([{"version": v["version"], **{m: v["metrics"].get(m) for m in available}}
                          for v in versions])
    frame = frame.rename(columns={m: formatting.metric_name(m) for m in available})
    st.plotly_chart(charts.metrics_by_version(frame, [formatting.metric_name(m) for m in chosen], champion),
                    config={"displayModeBar": False})


def smaller_headings(markdown: str) -> str:
    """The card's `#` title becomes a level-4 heading: it sits inside the page, under its subheader."""
    return re.sub(r"^(#{1,3}) ", lambda m: "#" * (len(m.group(1)) + 3) + " ", markdown, flags=re.MULTILINE)


@st.cache_data(show_spinner=False, max_entries=64)
def card_markdown(api_base: str, run_id: str | None, version: str) -> str:
    """A version's card is an artifact of its run and never changes: every session shares one copy."""
    return api().model_card(version)


def champion_periods() -> None:
    history = api().champion_history()
    frame = champion_history.periods_frame(history["periods"])
    if frame.empty:
        st.info("No version has been champion yet.", icon=":material/info:")
        return
    st.plotly_chart(champion_history.timeline(frame), config={"displayModeBar": False})
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "from": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC"),
        "to": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC",
                                              help="empty: still the champion"),
        "reason": st.column_config.TextColumn(width="large")})


def model_card(listing: dict, primary: str | None) -> None:
    versions = listing["versions"]
    labels = {version_label(v, primary): v for v in versions}
    default = next((i for i, v in enumerate(versions) if v["version"] == listing["champion"]), 0)
    chosen = labels[st.selectbox("Version", list(labels), index=default, key="card_version")]
    run_link, version_link = st.columns(2)
    if chosen["run_id"]:
        run_link.link_button("MLflow run", f"{mlflow_ui_url()}/#/runs/{chosen['run_id']}",
                             icon=":material/open_in_new:", width="stretch")
    version_link.link_button("Registry entry in MLflow",
                             f"{mlflow_ui_url()}/#/models/{quote(listing['name'])}/versions/{chosen['version']}",
                             icon=":material/open_in_new:", width="stretch")
    with st.container(border=True, height=520):
        try:
            card = card_markdown(api().base_url, chosen["run_id"], chosen["version"])
            st.markdown(smaller_headings(card))
        except ApiRejectedError as error:
            st.info(f"No model card: {error.message}.", icon=":material/description:")


st.title("Models")
st.caption("Every registered version with its evidence: test metrics, decision threshold (two classes), "
           "training data and CO₂ cost. The champion serves predictions; a challenger waits until it "
           "is better.")
listing = api().models()
if not listing["versions"]:
    st.info("No version is registered yet: run a retrain.", icon=":material/info:")
    st.stop()
primary = primary_metric(listing["versions"])
st.markdown(f"**{listing['name']}** — champion **v{listing['champion']}**, "
            f"{len(listing['versions'])} version(s)")
pending_approvals()
show_registry(listing["versions"], primary)
chart_column, card_column = st.columns([1, 1], gap="large")
with chart_column:
    st.subheader("Metrics by version")
    metric_chart(listing["versions"], listing["champion"])
with card_column:
    st.subheader("Model card")
    model_card(listing, primary)
st.subheader("Champion history")
st.caption("Which version served predictions when, who moved the champion and why (promotions, approvals, "
           "rollbacks).")
champion_periods()
