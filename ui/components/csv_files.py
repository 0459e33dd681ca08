"""What the console checks in an uploaded CSV before sending it: the header, read as the API reads it."""

from __future__ import annotations

import csv
import io

import streamlit as st

from ui.components.errors import sentence

HEADER_BYTES = 1 << 20  # the API reads no further for a header either


def header(content: bytes) -> list[str]:
    """The column names of the first non-empty row (an empty list when there is none)."""
    text = content[:HEADER_BYTES].decode("utf-8-sig", errors="replace")
    try:
        return next((row for row in csv.reader(io.StringIO(text, newline="")) if row), [])
    except csv.Error:
        return []  # the API says what is wrong with it


def duplicate_columns(content: bytes) -> list[str]:
    """Names the header gives to more than one column, in the order they first repeat."""
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for name in header(content):
        if name in seen:
            repeated[name] = None
        seen.add(name)
    return list(repeated)


def header_problem(content: bytes) -> str | None:
    """Why the API would refuse this file's header, in its words; None when the header is fine."""
    repeated = duplicate_columns(content)
    return "; ".join(f"duplicate column `{name}`" for name in repeated) or None


def refused_header(content: bytes) -> bool:
    """Shows why the API would refuse this file's header, if it would: such a file is never sent."""
    problem = header_problem(content)
    if problem:
        st.error(f"{sentence(problem)}: rename or remove the extra column; the file was not sent.",
                 icon=":material/error:")
    return problem is not None
