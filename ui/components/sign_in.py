"""The sign-in screen: what every page shows until someone signs in, at that page's own URL (so the
page asked for opens once signed in)."""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiError, ApiForbiddenError, ApiUnauthorizedError, ApiUnavailableError
from ui.components import formatting, fresh_fields, session, session_cookie
from ui.components.errors import RETRY_SECONDS, sentence, show_api_error

PASSWORD = "sign_in_password"
FAILED = "sign_in_failed"  # the line to show after a refused attempt
ARRIVED = "just_signed_in"


def refusal_line(error: ApiError) -> str:
    if error.status == 429:
        wait = error.body.get("retry_after")
        when = f"in {formatting.duration(float(wait))}" if wait is not None else "later"
        return f"Too many failed sign-ins for this account: it is locked, try again {when}."
    if isinstance(error, ApiUnauthorizedError):
        return "Wrong username or password."
    if isinstance(error, ApiForbiddenError):
        return "This account is disabled: ask an administrator to enable it."
    if isinstance(error, ApiUnavailableError):
        return f"{sentence(error.message)}: try again when it answers (checked every {RETRY_SECONDS} s)."
    return f"Not signed in: {error.message}."


def attempt(username: str, password: str) -> None:
    """One sign-in call; whatever happens, the password field is replaced by an empty one."""
    fresh_fields.retire(PASSWORD)
    if not username or not password:
        st.session_state[FAILED] = "Enter your username and your password."
    else:
        try:
            session.sign_in(username, password)
        except ApiError as error:
            st.session_state[FAILED] = refusal_line(error)
        else:
            st.session_state[ARRIVED] = True
    st.rerun()


def screen(problem: ApiError | None = None) -> None:
    """`problem`: why a token the browser still had could not be checked (the API did not answer)."""
    if st.session_state.get(session.FORGET_COOKIE):
        session_cookie.forget()
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("Sign in")
        st.caption("Operator Console: sign in with the account an administrator made for you. This "
                   "browser keeps you signed in until the session expires or you sign out.")
        if reason := st.session_state.pop(session.ENDED, None):
            st.info(reason, icon=":material/info:")
        if problem is not None:
            show_api_error(problem)
        with st.form("sign_in", border=True):
            username = st.text_input("Username", key="sign_in_username", autocomplete="username")
            password = st.text_input("Password", type="password", key=fresh_fields.key(PASSWORD),
                                     autocomplete="current-password")
            submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:",
                                              width="stretch")
        if failed := st.session_state.pop(FAILED, None):
            st.error(failed, icon=":material/error:")
        if submitted:
            attempt(username.strip(), password)
