"""Data: the training data's versions, uploading a labelled batch, pulling the data from the remote."""

from __future__ import annotations

import streamlit as st

from ui.components.access import can
from ui.components.data_panels import add_a_batch, pull_from_the_remote, show_versions
from ui.components.session import api, schema

st.title("Data")
st.caption("The versions of the training data (tracked by DVC), their size, class balance and validation. "
           "Add a labelled batch, or bring the data in from the remote.")
current_schema = schema()
listing = api().datasets()
show_versions(listing, current_schema)
may_add, may_pull = can("datasets:upload"), can("jobs:start")  # operators and viewers only look
upload_column, pull_column = (st.columns([3, 2], gap="large") if may_add and may_pull
                              else (st.container(), st.container()))
if may_add:
    with upload_column:
        add_a_batch()
if may_pull:
    with pull_column:
        pull_from_the_remote()
