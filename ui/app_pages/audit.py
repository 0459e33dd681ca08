"""Audit: who did what and when — every change, sign-in and job — filtered, newest first, page by page;
the selection as CSV; whether the chain of events is intact."""

from __future__ import annotations

import streamlit as st

from ui.components.admin_tables import audit_frame
from ui.components.audit_trail import KNOWN_ACTIONS, PAGE_SIZE, chain_status, csv_of, utc_text
from ui.components.session import api

st.title("Audit")
st.caption("Every request that changed something, every sign-in and sign-out, and what the job workers "
           "did, newest first. Each event is chained to the one before by its hash, so an edited or "
           "removed row shows.")
chain_status()

actor_column, action_column, target_column = st.columns(3)
actor = actor_column.text_input("Actor", key="audit_actor", placeholder="anyone",
                                help="the exact username (or service account) that acted")
action = action_column.selectbox("Action", KNOWN_ACTIONS, index=None, key="audit_action", placeholder="any",
                                 accept_new_options=True, help="pick one, or type another action name")
target = target_column.text_input("Target contains", key="audit_target", placeholder="e.g. model:, user:")
since_column, until_column, page_column = st.columns([2, 2, 1])
since = since_column.datetime_input("From (UTC)", value=None, key="audit_since")
until = until_column.datetime_input("Until (UTC)", value=None, key="audit_until")
page = int(page_column.number_input("Page", min_value=1, value=1, step=1, key="audit_page"))

filters = {"actor": actor.strip() or None, "action": action or None, "target": target.strip() or None,
           "since": utc_text(since), "until": utc_text(until)}
answer = api().audit(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, **filters)
if not answer["items"]:
    st.info("No event matches these filters." if answer["total"] else "No event is recorded yet.",
            icon=":material/info:")
    st.stop()
first = answer["offset"] + 1
caption, download = st.columns([3, 1], vertical_alignment="center")
caption.caption(f"Events {first}–{first + len(answer['items']) - 1} of {answer['total']}, newest first; "
                "times in UTC.")
download.download_button(f"Download all {answer['total']} as CSV", csv_of(api(), filters),
                         file_name="audit.csv", mime="text/csv", icon=":material/download:",
                         on_click="ignore", width="stretch",
                         help="every event these filters select, not only this page")
st.dataframe(audit_frame(answer["items"]), hide_index=True, width="stretch", column_config={
    "at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC"),
    "status": st.column_config.NumberColumn(format="%d"),
    "params": st.column_config.TextColumn(width="large", help="secrets are redacted by the API")})
