"""Per-browser-session access to the API: one client, the schema fetched once."""

from __future__ import annotations

import os

import streamlit as st

from ui.api_client import ApiClient, api_token, api_url

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


def api() -> ApiClient:
    """This session's client; rebuilt when the address or the token changes (e.g. a new token file)."""
    url, token = api_url(), api_token()
    client = st.session_state.get("api_client")
    if client is None or (client.base_url, client.token) != (url, token):
        client = st.session_state["api_client"] = ApiClient(url, token)
        st.session_state.pop("schema", None)  # another API may serve another data set
    return client


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
