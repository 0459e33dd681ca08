"""Retrain: one button, live progress, the outcome against the champion; promote or roll back."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.components import formatting
from ui.components.access import can
from ui.components.approvals import pending_approvals
from ui.components.job_progress import follow_job, is_active, log_tail, remembered_job, step_tracker, steps_of
from ui.components.promotion import promotion_controls
from ui.components.session import api

FOLLOWED = "retrain_job_id"
NOTICE = "retrain_notice"


def start_retrain() -> None:
    job, created = api().start_job("retrain", "retrain requested from the console")
    st.session_state[FOLLOWED] = job["id"]
    if not created:
        st.session_state[NOTICE] = (f"A retrain is already {job['status']} (job `{job['id'][:8]}`, created "
                                    f"{formatting.when(job['created_at'])}): it is shown below; no second "
                                    "one was started.")


def followed_job() -> dict | None:
    """The job in this session's state if it still runs; else a running or queued retrain (whoever
    started it, so reopening the page finds it); else the one followed before, or the newest."""
    client = api()
    followed = remembered_job(FOLLOWED)
    if is_active(followed):
        return followed
    for status in ("running", "queued"):
        if found := client.jobs(kind="retrain", status=status, limit=1)["items"]:
            followed = found[0]
            break
    else:
        followed = followed or next(iter(client.jobs(kind="retrain", limit=1)["items"]), None)
    if followed:
        st.session_state[FOLLOWED] = followed["id"]
    return followed


def comparison(challenger: dict, reference: dict | None, reference_role: str) -> None:
    keys = sorted(k for k in challenger["metrics"] if k.startswith("test_"))
    rows = []
    for key in keys:
        row = {"metric (test split)": formatting.metric_name(key), "challenger": challenger["metrics"][key]}
        if reference is not None:
            theirs = row[reference_role] = reference["metrics"].get(key)
            row["difference"] = None if theirs is None else row["challenger"] - theirs
        rows.append(row)
    columns = {"challenger": st.column_config.NumberColumn(f"v{challenger['version']} (this retrain)",
                                                            format="%.4f"),
               "difference": st.column_config.NumberColumn(format="%+.4f")}
    if reference is not None:
        columns[reference_role] = st.column_config.NumberColumn(f"v{reference['version']} ({reference_role})",
                                                                format="%.4f")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config=columns)


def gate_line(challenger: dict) -> str:
    gate = challenger["promotion"]
    if not gate.get("metric"):
        return ""
    scores = [f"challenger {float(gate['challenger_score']):.4f}"]
    if gate.get("champion_score"):
        scores.append(f"champion {float(gate['champion_score']):.4f}")
    scores.append(f"constant predictor {float(gate['baseline_score']):.4f}")
    return f"Gate on test {formatting.metric_name(gate['metric'])}: " + ", ".join(scores) + "."


def succeeded(job: dict, listing: dict) -> None:
    result = job["result"] or {}
    version = str(result.get("model_version", ""))
    by_version = {v["version"]: v for v in listing["versions"]}
    challenger = by_version.get(version)
    if result.get("promoted"):
        st.success(f"Version {version} was promoted: it is the new champion.", icon=":material/trophy:")
    elif result.get("awaiting_approval"):
        st.info(f"Version {version} passed the gate and waits for an admin's approval; until then the "
                f"champion stays v{listing['champion']}.", icon=":material/pending_actions:")
    else:
        st.warning(f"Version {version} was registered as challenger; the champion stays "
                   f"v{listing['champion']}.", icon=":material/balance:")
    facts, table = st.columns([2, 3], gap="large")
    with facts:
        st.markdown(f"**Why:** {result.get('promotion_reason', 'no reason recorded')}")
        st.metric("CO₂ cost of training", formatting.grams_co2(result.get("emissions_kg")),
                  help="measured by CodeCarbon while the model was fitted")
        data = formatting.short_hash(result.get("data_version") or (challenger or {}).get("data_version"))
        st.markdown(f"Took **{formatting.job_duration(job)}** on data version `{data}`.")
        if challenger is not None and (line := gate_line(challenger)):
            st.caption(line)
    if challenger is None:
        return
    with table:
        if not result.get("promoted") and listing["champion"] in by_version:
            comparison(challenger, by_version[listing["champion"]], "champion")
        else:
            older = [v for v in listing["versions"] if int(v["version"]) < int(version)]
            comparison(challenger, older[0] if older else None, "previous version")


def outcome(job: dict, listing: dict) -> None:
    st.markdown(f"**Last retrain** — job `{job['id'][:8]}`, finished "
                f"{formatting.when(job['finished_at'])}  \n{step_tracker(job)}")
    if job["status"] == "succeeded":
        succeeded(job, listing)
    else:
        st.error(f"The retrain {job['status']} at step “{job.get('step') or 'start'}”: "
                 f"{job.get('error') or 'no reason given'}. Nothing was promoted.", icon=":material/error:")
    with st.expander("Log (last lines)"):
        st.code(log_tail(job, 60), language="text")


st.title("Retrain")
st.caption(f"Retrain on the current data in one click: {' → '.join(steps_of('retrain'))}. The new version "
           "replaces the champion only when it is measurably better.")
listing = api().models()
button, status = st.columns([1, 3], vertical_alignment="center")
if button.button("Retrain now", type="primary", icon=":material/model_training:", width="stretch"):
    start_retrain()
status.caption(f"Champion: **v{listing['champion']}** of {listing['name']}" if listing["champion"]
               else "No champion yet.")
if notice := st.session_state.pop(NOTICE, None):
    st.info(notice, icon=":material/info:")

job = followed_job()
with st.container(border=True):
    if job is None:
        st.info("No retrain has run yet. The button above starts one; it takes a minute or so.")
    elif is_active(job):
        follow_job(FOLLOWED)
    else:
        outcome(job, listing)

pending_approvals()

if can("models:promote") or can("models:rollback"):
    st.subheader("Promote or roll back")
    st.caption("Choose the version that serves predictions. Both actions ask for confirmation first.")
    promotion_controls(listing)
