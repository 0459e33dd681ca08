"""Promote a chosen version or roll back, each behind a confirmation step."""

from __future__ import annotations

import streamlit as st

from ui.components import formatting
from ui.components.access import can
from ui.components.errors import guarded
from ui.components.session import api

PENDING = "pending_registry_action"
DONE = "registry_action_done"


def version_label(version: dict, primary: str | None) -> str:
    parts = [f"v{version['version']}"]
    if version["aliases"]:
        parts.append(" + ".join(version["aliases"]))
    score = version["metrics"].get(f"test_{primary}") if primary else None
    if score is not None:
        parts.append(f"{formatting.metric_name(primary)} {score:.4f}")
    parts.append(formatting.when(version["created"])[:16])
    return " · ".join(parts)


def primary_metric(versions: list[dict]) -> str | None:
    return next((v["promotion"]["metric"] for v in versions if v["promotion"].get("metric")), None)


def ask(action: str, version: str | None = None, reason: str = "") -> None:
    st.session_state[PENDING] = {"action": action, "version": version, "reason": reason}


@guarded
def _carry_out(pending: dict) -> None:
    if pending["action"] == "promote":
        answer = api().promote(pending["version"], pending["reason"] or "promoted from the console")
        st.session_state[DONE] = f"Version {answer['champion']} is the champion now."
    else:
        answer = api().rollback()
        st.session_state[DONE] = f"Rolled back: version {answer['champion']} is the champion again."
    st.session_state.pop(PENDING, None)
    st.rerun()


def confirmation(pending: dict, champion: str | None) -> None:
    if pending["action"] == "promote":
        question = (f"Make **v{pending['version']}** the champion instead of v{champion}? "
                    "Every API worker serves it within seconds.")
    else:
        question = f"Roll back from **v{champion}** to the previous champion?"
    with st.container(border=True):
        st.warning(question, icon=":material/help:")
        confirm, cancel = st.columns(2)
        if confirm.button("Yes, do it", type="primary", key="confirm_registry_action", width="stretch"):
            _carry_out(pending)
        if cancel.button("Cancel", key="cancel_registry_action", width="stretch"):
            st.session_state.pop(PENDING, None)
            st.rerun()


def promotion_controls(listing: dict) -> None:
    versions, champion = listing["versions"], listing["champion"]
    if message := st.session_state.pop(DONE, None):
        st.success(message, icon=":material/check_circle:")
    if not versions:
        st.info("No model version is registered yet.")
        return
    may_promote = can("models:promote")
    if may_promote:
        primary = primary_metric(versions)
        by_label = {version_label(v, primary): v["version"] for v in versions}
        choice, reason = st.columns([3, 2])
        # keyed by the newest version: after a retrain the new version is the one offered first
        chosen = by_label[choice.selectbox("Version to promote", list(by_label),
                                           key=f"version_to_promote_{versions[0]['version']}")]
        why = reason.text_input("Reason (kept in the registry)", key="promotion_reason",
                                placeholder="e.g. approved by the shift lead")
    promote, rollback = st.columns(2)
    if may_promote and promote.button(f"Promote v{chosen}…", key="promote", width="stretch",
                                      disabled=chosen == champion,
                                      help="already the champion" if chosen == champion else None):
        ask("promote", chosen, why)
    if can("models:rollback") and rollback.button("Roll back to the previous champion…", key="rollback",
                                                  width="stretch"):
        ask("rollback")
    if pending := st.session_state.get(PENDING):
        confirmation(pending, champion)
