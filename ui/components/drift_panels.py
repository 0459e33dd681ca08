"""Parts of the Drift page: the verdict up front, the "run a report now" bar with the job's
progress, and Evidently's own page of a report."""

from __future__ import annotations

import streamlit as st

from ui.components import drift_view, formatting
from ui.components.access import can
from ui.components.errors import sentence
from ui.components.job_progress import follow_job, is_active, remembered_job
from ui.components.session import api, schema

FOLLOWED = "drift_job_id"
HTML_CACHE = "drift_report_html"
WINDOWS = {None: "the API's default window", 1_000: "the last 1,000 predictions",
           10_000: "the last 10,000 predictions", 100_000: "the last 100,000 predictions",
           1_000_000: "the last 1,000,000 predictions"}
REPORT_HEIGHT = 900


def start_report(rows: int | None) -> None:
    params = {"last_rows": rows} if rows else None
    job, created = api().start_job("drift_report", "drift report requested from the console", params)
    st.session_state[FOLLOWED] = job["id"]
    if not created:
        st.toast(f"A drift report is already {job['status']}: following it.", icon=":material/info:")


def followed_job() -> dict | None:
    """The report job this browser tab started, else one queued or running (the schedule's, say)."""
    followed = remembered_job(FOLLOWED)
    if is_active(followed):
        return followed
    for status in ("running", "queued"):
        if found := api().jobs(kind="drift_report", status=status, limit=1)["items"]:
            st.session_state[FOLLOWED] = found[0]["id"]
            return found[0]
    return followed


def run_now() -> None:
    """The button for those who may start jobs; the progress of a report in the making for everyone."""
    if can("jobs:start"):
        button, window = st.columns([1, 3], vertical_alignment="bottom")
        rows = window.selectbox("Window", list(WINDOWS), format_func=WINDOWS.get, key="drift_window",
                                help="the predictions compared with the training data")
        if button.button("Run drift report now", type="primary", icon=":material/query_stats:",
                         width="stretch"):
            start_report(rows)
    job = followed_job()
    if is_active(job):
        with st.container(border=True):
            follow_job(FOLLOWED)
    elif job is not None and job["status"] != "succeeded":
        st.error(f"The drift report of {formatting.when(job['created_at'])} {job['status']}: "
                 f"{job.get('error') or 'no reason given'}", icon=":material/error:")


def drifted_lines(latest: dict, reports: list[dict]) -> str:
    """A line per drifted column, most drifted first; when they all drift since the same report,
    that is said once."""
    drifted = sorted((c for c in latest["columns"] if c["drifted"]),
                     key=lambda c: drift_view.drift_ratio(c) or 0.0, reverse=True)
    since = {c["name"]: drift_view.column_since(reports, c["name"]) for c in drifted}
    shared = len(set(since.values())) == 1
    lines = [f"- **{c['name']}**: {drift_view.how_much(c)}" + ("" if shared else f", {since[c['name']]}")
             for c in drifted]
    if drifted and shared:
        lines.append(f"\n{sentence(next(iter(since.values())))}.")
    return "\n".join(lines)


def estimate_line(latest: dict, metric: str = "f1") -> str | None:
    """`Estimated F1 0.71 (band 0.66–0.76) against 0.78 at training`, from the report's window."""
    found = latest.get("estimated_performance") or {}
    figure = (found.get("estimated") or {}).get(metric)
    if not figure or figure.get("value") is None:
        return None
    low, high = figure["band"]
    trained = (found.get("at_training") or {}).get(metric)
    against = f" against {trained:.2f} at training" if trained is not None else ""
    return (f"Estimated {formatting.metric_name(metric)} of v{found['model_version']} on these rows, "
            f"without labels: **{figure['value']:.2f}** (band {low:.2f}–{high:.2f}){against}.")


def prediction_line(latest: dict) -> str:
    predictions = latest.get("prediction_drift") or {}
    rate = predictions.get("positive_rate") or {}
    moved = "moved" if predictions.get("drifted") else "did not move"
    text = f"The model's outputs {moved}"
    if rate.get("current") is not None and rate.get("reference") is not None:
        label = formatting.class_label(schema(), predictions.get("positive_class"))
        text += (f": “{label}” predicted for {formatting.percent(rate['current'])} "
                 f"of the window, {formatting.percent(rate['reference'])} of the training data")
    return text + "."


def banner(latest: dict, reports: list[dict]) -> None:
    drifted, total = len(latest["drifted_columns"]), len(latest["columns"])
    made = drift_view.moment(latest["created"])
    if latest["dataset_drift"]:
        st.warning(f"**Dataset drift**: {drifted} of {total} features drifted in the report of {made}, "
                   f"{drift_view.dataset_since(reports)}.", icon=":material/warning:")
    else:
        some = f"; {drifted} feature(s) drifted, fewer than the dataset rule needs" if drifted else ""
        st.success(f"**No dataset drift** in the report of {made}{some}.", icon=":material/check_circle:")


def verdict(latest: dict, reports: list[dict]) -> None:
    """Which columns drifted, how much, since when; what the model's outputs did; what to do."""
    drifted, total = len(latest["drifted_columns"]), len(latest["columns"])
    share, window = st.columns(2)
    share.metric("Drifted features", f"{drifted} of {total}",
                 help=f"dataset drift from {formatting.percent(latest.get('drift_share_threshold'), 0)} "
                      "of the features")
    window.metric("Rows compared", f"{latest['window'].get('rows', 0):,}",
                  help=drift_view.window_text(latest["window"]))
    if lines := drifted_lines(latest, reports):
        st.markdown(lines)
    st.markdown(prediction_line(latest))
    if line := estimate_line(latest):
        st.markdown(line)
    if drifted and can("jobs:start"):
        st.page_link("app_pages/retrain.py", label="Retrain the model", icon=":material/model_training:")
    if drifted and can("datasets:upload"):
        st.page_link("app_pages/data.py", label="Add recent labelled data before retraining",
                     icon=":material/library_add:")


def report_html(report_id: str) -> str | None:
    """The page of one report, kept for this browser tab (4 MB: fetched once, not on every rerun)."""
    cached = st.session_state.get(HTML_CACHE)
    if cached is None or cached[0] != report_id:
        cached = st.session_state[HTML_CACHE] = (report_id, api().report_html(report_id))
    return cached[1]


def report_page(reports: list[dict]) -> None:
    """A chosen report (the newest first) as Evidently draws it, in a sandboxed, scrolling frame."""
    labels = {drift_view.report_label(r): r for r in reports}
    # keyed by the newest report: when one arrives, it is the one shown
    report = labels[st.selectbox("Report", list(labels), key=f"drift_report_shown_{reports[0]['id']}")]
    sampled = report.get("html") or {}
    note = ""
    if sampled.get("current_rows", 0) < report["window"].get("rows", 0):
        note = f" The page is drawn from {sampled['current_rows']:,} of them; the verdicts use every row."
    reference = report["reference"].get("rows", 0)
    st.caption(f"Compared {drift_view.window_text(report['window'])} with the {reference:,} training rows "
               f"of v{report['model_version']}.{note} Requested: {report.get('reason') or '—'}.")
    page = report_html(report["id"])
    if page is None:
        st.info("This report's page was not kept (only the newest reports keep one); its verdicts are "
                "in the table above.", icon=":material/description:")
        return
    st.iframe(drift_view.sandboxed(page), height=REPORT_HEIGHT)
