"""Per-browser-session state: who is signed in, the client that calls the API as them, and what is
fetched once (the schema, the job kinds).

The console holds no credentials of its own. Signing in exchanges a username and password for a
session token (the password is not kept); the token lives in this session's state and in the
browser's `opcon_session` cookie (ui/components/session_cookie.py), so a reload finds it again. A
token from the cookie is checked with GET /me before anything is shown; a 401 at any time ends the
session and brings back the sign-in screen.
"""

from __future__ import annotations

import os

import streamlit as st

from ui.api_client import ApiClient, ApiError, ApiUnauthorizedError, ApiUnavailableError, api_url
from ui.components import formatting, session_cookie

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"
TOKEN = "session_token"  # tests sign in by putting a token from POST /auth/login here
USER = "signed_in_user"  # GET /me of TOKEN once checked: {"token", "me"}
ENDED = "session_ended"  # why the last session ended, said once on the sign-in screen
REFUSED = "refused_tokens"  # tokens this tab saw end: the cookie sent when it opened may hold one
FORGET_COOKIE = "forget_session_cookie"


def api() -> ApiClient:
    """This session's client, as the signed-in user; rebuilt when the address or the token changes."""
    url, token = api_url(), st.session_state.get(TOKEN)
    client = st.session_state.get("api_client")
    if client is None or (client.base_url, client.token) != (url, token):
        client = st.session_state["api_client"] = ApiClient(url, token)
        st.session_state.pop("schema", None)  # another API may serve another data set
    return client


def token() -> str | None:
    return st.session_state.get(TOKEN)


def signed_in_user() -> dict | None:
    """GET /me of the signed-in user, as last checked (no request)."""
    kept = st.session_state.get(USER)
    token = st.session_state.get(TOKEN)
    return kept["me"] if kept and token and kept["token"] == token else None


def current_user() -> dict | None:
    """The signed-in user, or None: the sign-in screen. A token met for the first time in this session
    (put there by sign-in, or read from the cookie after a reload) is checked with GET /me; a 401
    drops it. Raises ApiUnavailableError when the API cannot say."""
    if (user := signed_in_user()) is not None:
        return user
    token = st.session_state.get(TOKEN) or session_cookie.token_from_browser()
    if not token or token in st.session_state.get(REFUSED, ()):
        return None
    try:
        me = ApiClient(api_url(), token).me()
    except ApiUnauthorizedError:
        end("Your session has ended (it expired, or you signed out elsewhere): sign in again.", token)
        return None
    remember(token, me)
    return me


def remember(token: str, me: dict) -> None:
    st.session_state[TOKEN] = token
    st.session_state[USER] = {"token": token, "me": me}
    st.session_state.pop(FORGET_COOKIE, None)


def sign_in(username: str, password: str) -> dict:
    """POST /auth/login, then the session is this user's. Raises the API's typed errors (401 wrong
    username or password, 403 disabled, 429 locked) and keeps nothing of the password."""
    answer = ApiClient(api_url()).login(username, password)
    user = answer["user"]
    me = {"username": user["username"], "display_name": user["display_name"], "role": user["role"],
          "kind": user["kind"], "auth": "session", "permissions": answer["permissions"],
          "expires_at": answer["expires_at"]}
    remember(answer["token"], me)
    return me


def end(reason: str, token: str | None = None) -> None:
    """Forget everything of this session (another user may sign in next in this tab); the cookie is
    cleared by the sign-in screen."""
    token = token or st.session_state.get(TOKEN)
    refused = {*st.session_state.get(REFUSED, ()), *([token] if token else [])}
    st.session_state.clear()
    st.session_state[REFUSED] = refused
    st.session_state[FORGET_COOKIE] = True
    st.session_state[ENDED] = reason


def sign_out() -> None:
    """POST /auth/logout (the token is refused from then on), then back to the sign-in screen."""
    reason = "You signed out."
    try:
        api().logout()
    except ApiUnavailableError:
        expires = formatting.when((signed_in_user() or {}).get("expires_at"))
        reason = (f"You signed out of this browser. The API did not answer, so the session itself stays "
                  f"valid until it expires ({expires}).")
    except ApiError:  # 401: it had already ended; anything else: this browser forgets it all the same
        pass
    end(reason)


def schema() -> dict:
    """GET /schema, once per session: the features and the target every page is built from."""
    client = api()
    if "schema" not in st.session_state:
        st.session_state["schema"] = client.schema()
    return st.session_state["schema"]


def job_kinds() -> list[str]:
    """Once per session; the kinds the spec lists (new ones appear without a console change)."""
    if "job_kinds" not in st.session_state:
        st.session_state["job_kinds"] = api().job_kinds()
    return st.session_state["job_kinds"]


def mlflow_ui_url() -> str:
    return (os.environ.get("OPCON_MLFLOW_UI_URL") or DEFAULT_MLFLOW_UI).rstrip("/")
