"""Operator Console: `streamlit run ui/streamlit_app.py`. The frame around every page: navigation,
the API's status and the champion in the sidebar, and one line instead of a traceback when a page fails.

A new page is one `st.Page` line in PAGES (a file in ui/app_pages/).
"""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiError, api_url
from ui.components.errors import RETRY_SECONDS, guarded
from ui.components.session import api, mlflow_ui_url

st.set_page_config(page_title="Operator Console", page_icon=":material/precision_manufacturing:",
                   layout="wide")

PAGES = {
    "Operate": [
        st.Page("app_pages/predict.py", title="Predict", icon=":material/online_prediction:", default=True),
        st.Page("app_pages/batch.py", title="Batch", icon=":material/table_view:"),
        st.Page("app_pages/retrain.py", title="Retrain", icon=":material/model_training:"),
        st.Page("app_pages/models.py", title="Models", icon=":material/inventory_2:"),
        st.Page("app_pages/data.py", title="Data", icon=":material/database:"),
    ],
    "Monitor": [
        st.Page("app_pages/drift.py", title="Drift", icon=":material/query_stats:"),
        st.Page("app_pages/emissions.py", title="Emissions", icon=":material/co2:"),
        st.Page("app_pages/service.py", title="Service", icon=":material/monitor_heart:"),
        st.Page("app_pages/jobs.py", title="Jobs", icon=":material/work_history:"),
    ],
}


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


page = st.navigation(PAGES)
with st.sidebar:
    api_status()
    st.caption(f"[MLflow UI]({mlflow_ui_url()}) · [API docs]({api_url()}/docs)")
guarded(page.run)()
