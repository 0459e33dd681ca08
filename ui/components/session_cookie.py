"""The `opcon_session` cookie: the session token, kept by the browser so a reload stays signed in.

Streamlit reads cookies (st.context.cookies, from the request that opened the session) but has no way
to set one, so a two-line script does it: st.html(..., unsafe_allow_javascript=True) runs it in the
console's own page (not in a frame), then the script removes itself so the token does not stay in the
page. Attributes: Path=/, Expires at the session's end, SameSite=Strict (never sent by another site's
request), Secure when the page is served over https. A script cannot set HttpOnly.
"""

from __future__ import annotations

import json
from email.utils import format_datetime
from urllib.parse import quote, unquote

import streamlit as st

from ui.components import formatting

NAME = "opcon_session"
GONE = "Thu, 01 Jan 1970 00:00:00 GMT"


def token_from_browser() -> str | None:
    """The token the browser sent when this session opened (a reload opens a new one)."""
    value = st.context.cookies.get(NAME)
    return unquote(value) if isinstance(value, str) and value else None  # (AppTest has no real cookies)


def http_date(value: str) -> str:
    return format_datetime(formatting.timestamp(value).to_pydatetime(), usegmt=True)


def cookie(value: str, expires: str | None) -> str:
    """`name=value` and its attributes; without an expiry it lasts until the browser closes."""
    return "; ".join([f"{NAME}={value}", "Path=/", *([f"Expires={expires}"] if expires else []),
                      "SameSite=Strict"])


def script(text: str) -> str:
    secure = "(location.protocol === 'https:' ? '; Secure' : '')"
    return (f"<script>document.cookie = {json.dumps(text)} + {secure};"
            " document.currentScript.remove();</script>")


def keep(token: str, expires_at: str | None) -> None:
    """Set the cookie (the same element on every rerun: the browser runs it once)."""
    expires = http_date(expires_at) if expires_at else None
    st.html(script(cookie(quote(token, safe=""), expires)), unsafe_allow_javascript=True)


def forget() -> None:
    st.html(script(cookie("", GONE)), unsafe_allow_javascript=True)
