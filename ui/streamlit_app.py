"""Operator Console: `streamlit run ui/streamlit_app.py`. The frame around every page: sign-in first,
a menu of the pages the user's role may use, who is signed in, the API's status and the champion in
the sidebar, and one line instead of a traceback when a page fails.

A new page is one `Screen` line in ui/components/access.py (a file in ui/app_pages/ and the
permission it needs).
"""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiError, api_url
from ui.components import access, session, session_cookie, sign_in
from ui.components.errors import RETRY_SECONDS, guarded
from ui.components.session import api, mlflow_ui_url

st.set_page_config(page_title="Operator Console", page_icon=":material/precision_manufacturing:",
                   layout="wide")


@st.fragment(run_every=RETRY_SECONDS)
def api_status() -> None:
    """The API's readiness; when it changes (e.g. the API is back), the whole page reruns by itself."""
    try:
        ready = api().ready()
        state = "ready" if ready["ready"] else "not ready"
    except ApiError:
        ready, state = {}, "unreachable"
    if state == "ready":
        st.success(f"API ready  \n**Champion:** {ready.get('champion') or '—'}",
                   icon=":material/check_circle:")
    elif state == "not ready":
        st.warning("API up, not ready: " + "; ".join(ready.get("reasons") or ["no reason given"]),
                   icon=":material/pending:")
    else:
        st.error(f"API unreachable at {api_url()}", icon=":material/cloud_off:")
    previous = st.session_state.get("api_state")
    st.session_state["api_state"] = state
    if previous is not None and previous != state:
        st.rerun()


def who_is_signed_in(user: dict) -> None:
    with st.container(border=True):
        st.markdown(f":material/account_circle: **{user['display_name']}**  \n"
                    f"`{user['username']}` · role **{user['role']}**")
        if st.button("Sign out", icon=":material/logout:", key="sign_out", width="stretch"):
            session.sign_out()
            st.rerun()


try:
    user, problem = session.current_user(), None
except ApiError as error:  # a token from the cookie, and no API to check it with
    user, problem = None, error
built = access.pages(user)
page = st.navigation(access.menu(built), position="sidebar" if user else "hidden", expanded=True)
screen = access.screen_of(built, page)
if user is not None and st.session_state.pop(sign_in.ARRIVED, False) and not access.can(screen.permission):
    st.switch_page(built[access.home(user)])  # signed in at a page the role does not have: its own home
with st.sidebar:
    if user is not None:
        who_is_signed_in(user)
    api_status()
    st.caption(f"[MLflow UI]({mlflow_ui_url()}) · [API docs]({api_url()}/docs)")
    if user is not None:
        session_cookie.keep(session.token(), user.get("expires_at"))  # last: it draws nothing
if user is None:
    sign_in.screen(problem)
elif not access.can(screen.permission):
    access.refusal(screen, user)
else:
    guarded(page.run)()
