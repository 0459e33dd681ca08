"""Challengers waiting for an admin's approval (registry.require_approval): the gate's comparison for
everyone, Approve / Reject with a comment for those with models:approve."""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiRejectedError
from ui.components import formatting
from ui.components.access import can
from ui.components.errors import show_api_error
from ui.components.session import api

DECIDED = "approval_decided"


def comparison(item: dict) -> None:
    gate = item.get("comparison") or {}
    metric = formatting.metric_name(gate.get("metric") or "score")
    challenger, champion = gate.get("challenger_score"), gate.get("champion_score")
    mine, theirs = st.columns(2)
    mine.metric(f"v{item['version']} (challenger), test {metric}", score(challenger),
                delta=None if challenger is None or champion is None else f"{challenger - champion:+.4f}",
                help="the difference is against the champion, on the same test split")
    champion_version = gate.get("champion_version")
    theirs.metric(f"v{champion_version} (champion), test {metric}" if champion_version
                  else f"champion, test {metric}", score(champion))


def score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def decide(action: str, version: str, comment: str) -> None:
    if not comment.strip():
        st.error("Write a comment first: it is kept with the decision.", icon=":material/error:")
        return
    try:
        if action == "approve":
            answer = api().approve(version, comment.strip())
            st.session_state[DECIDED] = f"Approved: version {answer['champion']} is the champion now."
        else:
            api().reject(version, comment.strip())
            st.session_state[DECIDED] = f"Rejected: version {version} stays a challenger."
    except ApiRejectedError as error:  # 403: the approver started the retrain; 409: decided meanwhile
        show_api_error(error)
        return
    st.rerun()


def decision_controls(version: str) -> None:
    comment = st.text_input("Comment (kept with the decision)", key=f"approval_comment_{version}",
                            placeholder="e.g. checked the confusion matrix with the shift lead")
    approve, reject = st.columns(2)
    if approve.button(f"Approve v{version}", type="primary", icon=":material/verified:",
                      key=f"approve_{version}", width="stretch"):
        decide("approve", version, comment)
    if reject.button(f"Reject v{version}", icon=":material/thumb_down:", key=f"reject_{version}",
                     width="stretch"):
        decide("reject", version, comment)


def pending_approvals() -> None:
    """Nothing at all when nothing waits (approval is off, or all is decided)."""
    if message := st.session_state.pop(DECIDED, None):
        st.success(message, icon=":material/check_circle:")
    waiting = api().approvals("pending")
    if waiting:
        st.subheader("Waiting for approval")
    for item in waiting:
        with st.container(border=True):
            job = f" (job `{item['job_id'][:8]}`)" if item.get("job_id") else ""
            st.markdown(f":orange[:material/pending_actions:] **v{item['version']} waits for approval** — "
                        f"retrain started by `{item.get('requested_by') or 'unknown'}`{job}, "
                        f"{formatting.when(item.get('created_at'))}")
            comparison(item)
            if reason := (item.get("comparison") or {}).get("reason"):
                st.caption(f"Gate: {reason}.")
            if can("models:approve"):
                decision_controls(item["version"])
            else:
                st.caption("An admin approves or rejects it (models:approve).")
