"""One line kept across a rerun: an action's outcome, said on the page drawn after it."""

from __future__ import annotations

import streamlit as st

ICONS = {"success": ":material/check_circle:", "error": ":material/error:", "info": ":material/info:"}


def later(key: str, kind: str, text: str) -> None:
    st.session_state[key] = (kind, text)


def show(key: str) -> None:
    if found := st.session_state.pop(key, None):
        kind, text = found
        getattr(st, kind)(text, icon=ICONS[kind])
