"""Tokens: API tokens for scripts and services — make one (shown once), see them all, revoke one."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from ui.api_client import ApiRejectedError
from ui.components import notices
from ui.components.admin_tables import roles_up_to, tokens_frame, user_label
from ui.components.errors import sentence
from ui.components.session import api

NOTICE = "tokens_notice"
PENDING_REVOKE = "token_to_revoke"
DATES = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", timezone="UTC")


def make_token(users: list[dict]) -> None:
    """Not a form: the roles offered follow the owner chosen (never above the owner's own role)."""
    active = [u for u in users if not u["disabled"]]
    by_label = {user_label(u): u for u in active}
    owner = by_label[st.selectbox("Owner", list(by_label), key="token_owner",
                                  help="the user or service account the token acts as")]
    name = st.text_input("Name", key="token_name", placeholder="e.g. nightly batch scoring",
                         help="what the token is for, to recognise it in the list and the audit trail")
    roles = roles_up_to(owner["role"])
    role_column, days_column = st.columns(2)
    role = role_column.selectbox("Role", roles, index=len(roles) - 1, key=f"token_role_{owner['username']}",
                                 help=f"at most the owner's role ({owner['role']})")
    days = days_column.number_input("Expires after (days)", min_value=1, max_value=365, value=90, step=1,
                                    key="token_days")
    if st.button("Create token", type="primary", icon=":material/key:", key="create_token"):
        if not name.strip():
            st.error("Give the token a name.", icon=":material/error:")
            return
        try:
            made = api().create_token(owner["username"], name.strip(), role, int(days))
        except ApiRejectedError as error:
            st.error(sentence(error.message) + ".", icon=":material/error:")
            return
        # drawn in this run only: the API never shows the token again, and the console does not keep it
        st.success(f"Token “{made['name']}” for `{made['owner']}` ({made['role']}), valid until "
                   f"{made['expires_at'][:10]}. Copy it now: it is shown this once.", icon=":material/key:")
        st.code(made["token"], language=None)


def revoke(frame: pd.DataFrame) -> None:
    usable = frame[frame["state"] == "active"]
    if usable.empty:
        st.caption("No active token to revoke.")
        return
    labels = {f"{row['name']} · {row['owner']} · {row['prefix']}": row["id"] for _, row in usable.iterrows()}
    chosen = st.selectbox("Token", list(labels), key="token_to_revoke_choice")
    if st.button("Revoke…", icon=":material/block:", key="revoke_token"):
        st.session_state[PENDING_REVOKE] = (labels[chosen], chosen)
    if pending := st.session_state.get(PENDING_REVOKE):
        token_id, label = pending
        with st.container(border=True):
            st.warning(f"Revoke **{label}**? Whatever uses it is refused from its next request.",
                       icon=":material/help:")
            confirm, cancel = st.columns(2)
            if confirm.button("Yes, revoke it", type="primary", key="confirm_revoke", width="stretch"):
                st.session_state.pop(PENDING_REVOKE, None)
                try:
                    api().revoke_token(token_id)
                    notices.later(NOTICE, "success", f"Revoked {label}.")
                except ApiRejectedError as error:
                    notices.later(NOTICE, "error", sentence(error.message) + ".")
                st.rerun()
            if cancel.button("Cancel", key="cancel_revoke", width="stretch"):
                st.session_state.pop(PENDING_REVOKE, None)
                st.rerun()


st.title("Tokens")
st.caption("API tokens for scripts and services (`Authorization: Bearer oct_…`): each acts as its owner, "
           "with a role no higher than the owner's, until it expires or is revoked.")
notices.show(NOTICE)
users = api().users()
st.subheader("Create a token")
make_token(users)
st.subheader("Every token")
owners = ["", *sorted(u["username"] for u in users)]
owner = st.selectbox("Owner", owners, format_func=lambda o: o or "everyone", key="tokens_owner_filter")
tokens = api().tokens(owner or None)
if not tokens:
    st.info("No token yet." if not owner else f"`{owner}` has no token.", icon=":material/info:")
    st.stop()
frame = tokens_frame(tokens, pd.Timestamp(datetime.now(UTC)))
st.dataframe(frame, hide_index=True, width="stretch", column_config={
    "created": DATES, "expires": DATES, "last used": DATES, "revoked": DATES,
    "prefix": st.column_config.TextColumn(help="the token's first characters, to recognise it")})
revoke(frame)
