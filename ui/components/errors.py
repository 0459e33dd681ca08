"""Errors on screen: one clear line, never a traceback (those go to the server's log)."""

from __future__ import annotations

import functools
import logging

import pandas as pd
import streamlit as st

from ui.api_client import ApiError, ApiUnavailableError, Problem

log = logging.getLogger("opcon.ui")
RETRY_SECONDS = 5  # the sidebar's status check; the page reruns by itself when the API is back


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def show_api_error(error: ApiError) -> None:
    if isinstance(error, ApiUnavailableError):
        st.error(f"{sentence(error.message)}; this page reloads by itself when it answers again "
                 f"(checked every {RETRY_SECONDS} s).", icon=":material/cloud_off:")
    else:
        st.error(sentence(error.message), icon=":material/error:")


def show_unexpected(error: Exception) -> None:
    log.exception("page failed")
    st.error(f"Something went wrong on this page ({type(error).__name__}: {error}); "
             "the details are in the console's log.", icon=":material/bug_report:")


def guarded(render):
    """For fragments and pages: API errors and surprises become one line instead of a traceback."""

    @functools.wraps(render)
    def wrapper(*args, **kwargs):
        try:
            return render(*args, **kwargs)
        except ApiError as error:
            show_api_error(error)
        except Exception as error:  # st.rerun/st.stop are BaseExceptions and pass through
            show_unexpected(error)
        return None

    return wrapper


def problems_table(details: list[Problem], field_title: str = "column") -> None:
    """The API's error details as a table: where, what, how many rows, the first of them."""
    rows = [{field_title: p.field, "problem": p.problem, "rows affected": p.count,
             "first rows": ", ".join(str(r) for r in (p.rows or []))} for p in details]
    frame = pd.DataFrame(rows)
    if frame["rows affected"].isna().all():
        frame = frame.drop(columns=["rows affected", "first rows"])
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "rows affected": st.column_config.NumberColumn(format="%d"),
        "first rows": st.column_config.TextColumn(help="data row numbers, 1 = the row after the header")})
