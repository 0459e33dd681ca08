"""Errors on screen: one clear line, never a traceback (those go to the server's log). A 401 means the
session ended: the sign-in screen comes back."""

from __future__ import annotations

import functools
import logging

import pandas as pd
import streamlit as st

from ui.api_client import ApiError, ApiForbiddenError, ApiUnauthorizedError, ApiUnavailableError, Problem
from ui.components import session

log = logging.getLogger("opcon.ui")
RETRY_SECONDS = 5  # the sidebar's status check; the page reruns by itself when the API is back


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def refused_line(error: ApiForbiddenError) -> str:
    """The role's missing permission, or, when the role has it, the API's own reason."""
    user, permission = session.signed_in_user() or {}, error.permission
    if permission and permission not in user.get("permissions", ()):
        return f"Not allowed: your role ({error.body.get('role') or user.get('role')}) lacks {permission}."
    return sentence(error.message) + "."


def show_api_error(error: ApiError) -> None:
    if isinstance(error, ApiUnauthorizedError):
        session_ended()
    if isinstance(error, ApiUnavailableError):
        st.error(f"{sentence(error.message)}; this page reloads by itself when it answers again "
                 f"(checked every {RETRY_SECONDS} s).", icon=":material/cloud_off:")
    elif isinstance(error, ApiForbiddenError):
        st.error(refused_line(error), icon=":material/block:")
    else:
        st.error(sentence(error.message), icon=":material/error:")


def session_ended() -> None:
    session.end("Your session has ended (it expired, was revoked, or your account changed): sign in again.")
    st.rerun()


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
        except ApiUnauthorizedError:
            session_ended()
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
