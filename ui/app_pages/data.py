"""Data: the training data's versions, uploading a labelled batch, pulling the data from the remote."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.api_client import ApiRejectedError
from ui.components import formatting
from ui.components.access import can
from ui.components.errors import problems_table, show_api_error
from ui.components.job_progress import follow_job, is_active, remembered_job
from ui.components.session import api, schema

PULL_JOB = "data_pull_job_id"
UPLOADED = "dataset_uploaded"


def validation_status(validation: dict) -> str:
    if validation.get("success") is True:
        return "passed"
    if validation.get("success") is False:
        return f"failed ({len(validation.get('failures') or [])} expectation(s))"
    return "not validated"


def versions_table(listing: dict, current_schema: dict) -> pd.DataFrame:
    classes = [str(c) for c in current_schema["target"]["classes"]]
    rows = []
    for version in listing["versions"]:
        row = {"data version": formatting.short_hash(version["md5"]),
               "current": "●" if version["md5"] == listing["current"] else "",
               "rows": version["rows"],
               **{formatting.class_label(current_schema, c): version["class_balance"].get(c, 0.0) * 100
                  for c in classes},
               "validation": validation_status(version["validation"]),
               "created": formatting.timestamp(version["created_at"]),
               "source": version["source"]}
        rows.append(row)
    return pd.DataFrame(rows)


def show_versions(listing: dict, current_schema: dict) -> None:
    labels = [formatting.class_label(current_schema, c) for c in current_schema["target"]["classes"]]
    share = {label: st.column_config.ProgressColumn(f"{label} (%)", format="%.1f %%", min_value=0,
                                                    max_value=100, help="share of the rows in this class")
             for label in labels}
    st.dataframe(versions_table(listing, current_schema), hide_index=True, width="stretch", column_config={
        "current": st.column_config.TextColumn(width="small", help="the version in the workspace now"),
        "rows": st.column_config.NumberColumn(format="%d rows"),
        "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", timezone="UTC"),
        **share})


def upload_batch() -> None:
    upload = st.file_uploader("Labelled CSV batch", type=["csv"], key="dataset_file",
                              help="The same columns as the training data, the target included.")
    if upload is not None and st.button("Validate and add as a new version", type="primary",
                                        icon=":material/library_add:"):
        try:
            with st.spinner("Validating the batch, then the data with it…", show_time=True):
                added = api().upload_dataset(upload.getvalue(), upload.name)
        except ApiRejectedError as error:
            show_api_error(error)
            if error.details:
                st.markdown("**Failed expectations** — nothing was changed:")
                problems_table(error.details)
        else:
            st.session_state[UPLOADED] = (f"Added: data version `{formatting.short_hash(added['md5'])}` with "
                                          f"{added['rows']:,} rows. Retrain to use it.")
            st.rerun()


def add_a_batch() -> None:
    st.subheader("Add a labelled batch")
    st.caption("Checked against the schema (Great Expectations) on its own and together with the data; "
               "only then it becomes the next data version.")
    upload_batch()


def pull_from_the_remote() -> None:
    st.subheader("Pull from the remote")
    st.caption("Brings the workspace's data to the version its DVC pointer names.")
    pull_panel()


def pull_panel() -> None:
    if st.button("Pull data (dvc pull)", icon=":material/cloud_download:"):
        job, created = api().start_job("data_pull", "pull requested from the console")
        st.session_state[PULL_JOB] = job["id"]
        if not created:
            st.info("A pull is already running: following it.", icon=":material/info:")
    job = remembered_job(PULL_JOB)
    if job is None:
        return
    if is_active(job):
        follow_job(PULL_JOB)
    elif job["status"] == "succeeded":
        pulled = formatting.short_hash((job["result"] or {}).get("data_version"))
        st.success(f"Pulled data version `{pulled}` at {formatting.when(job['finished_at'])}.",
                   icon=":material/check_circle:")
    else:
        st.error(f"The pull {job['status']}: "
                 f"{job.get('error') or 'no reason given'}", icon=":material/error:")


st.title("Data")
st.caption("The versions of the training data (tracked by DVC), their size, class balance and validation. "
           "Add a labelled batch, or bring the data in from the remote.")
current_schema = schema()
listing = api().datasets()
if message := st.session_state.pop(UPLOADED, None):
    st.success(message, icon=":material/check_circle:")
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
