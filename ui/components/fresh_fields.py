"""Fields drawn anew once used, so a password does not linger: Streamlit keeps a widget's value in the
session (and the browser sends it back on every rerun) for as long as the widget exists. Retiring a
field drops its value and gives it a new key, so the next rerun draws a new, empty one."""

from __future__ import annotations

import streamlit as st


def key(name: str) -> str:
    return f"{name}_{st.session_state.get(f'{name}_uses', 0)}"


def retire(name: str) -> None:
    """Drop the value now; the caller reruns so the page shows the new field."""
    st.session_state.pop(key(name), None)
    st.session_state[f"{name}_uses"] = st.session_state.get(f"{name}_uses", 0) + 1
