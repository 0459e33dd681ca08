"""The Data page's panels: the versions table, adding a labelled batch, pulling from the remote."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.api_client import ApiRejectedError
from ui.components import csv_files, formatting
from ui.components.errors import problems_table, show_api_error
from ui.components.job_progress import job_outcome
from ui.components.session import api

PULL_JOB = "data_pull_job_id"
UPLOAD_JOB = "dataset_upload_job_id"


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
    sendable = upload is not None and not csv_files.refused_header(upload.getvalue())
    if sendable and st.button("Validate and add as a new version", type="primary",
                              icon=":material/library_add:"):
        try:
            with st.spinner("Validating the batch, then the data with it…", show_time=True):
                job, created = api().upload_dataset(upload.getvalue(), upload.name)
        except ApiRejectedError as error:
            show_api_error(error)
            if error.details:
                st.markdown("**Failed expectations** — nothing was changed:")
                problems_table(error.details)
        else:
            st.session_state[UPLOAD_JOB] = job["id"]
            if not created:
                st.info(f"An upload is already {job['status']} (job `{job['id'][:8]}`): following it. This "
                        "file was not added; add it again once that one is done.", icon=":material/info:")
    upload_progress()


def added(job: dict) -> str:
    result = job["result"] or {}
    return (f"Added: data version `{formatting.short_hash(result.get('data_version'))}` with "
            f"{result.get('rows', 0):,} rows. Retrain to use it.")


def upload_progress() -> None:
    """The upload job this session started: followed while it runs, then its outcome."""
    job_outcome(UPLOAD_JOB, "upload", added, " The data and its DVC pointer are as they were.")


def add_a_batch() -> None:
    st.subheader("Add a labelled batch")
    st.caption("Checked against the schema (Great Expectations) on its own and together with the data; "
               "only then a job adds it as the next data version and pushes it to the DVC remote.")
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
    job_outcome(PULL_JOB, "pull", pulled)


def pulled(job: dict) -> str:
    version = formatting.short_hash((job["result"] or {}).get("data_version"))
    return f"Pulled data version `{version}` at {formatting.when(job['finished_at'])}."
