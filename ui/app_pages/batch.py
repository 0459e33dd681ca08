"""Batch: a CSV in, every row scored by the champion, a summary and the scored CSV to download."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from ui.api_client import ApiRejectedError, ScoredFile
from ui.components import charts, csv_files
from ui.components.errors import problems_table, show_api_error
from ui.components.formatting import class_label, percent, positive_class
from ui.components.session import api, schema

RESULT = "batch_result"
PREVIEW_ROWS = 10


def preview(content: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(content), nrows=PREVIEW_ROWS, dtype=str)


def predictions(scored: ScoredFile) -> pd.DataFrame:
    """Only the columns the API added (prediction_*): the summary needs nothing else."""
    return pd.read_csv(io.BytesIO(scored.content), usecols=lambda c: c.startswith("prediction_"))


def threshold_of(version: str) -> float | None:
    """The decision threshold of the version that scored the file (the CSV does not repeat it per row)."""
    return next((v["threshold"] for v in api().models()["versions"] if v["version"] == version), None)


def score(upload) -> None:
    try:
        with st.spinner(f"Scoring “{upload.name}” with the champion…", show_time=True):
            scored = api().predict_batch(upload.getvalue(), upload.name)
            st.session_state[RESULT] = {"file_id": upload.file_id, "scored": scored,
                                        "predictions": predictions(scored),
                                        "threshold": threshold_of(scored.model_version)}
    except ApiRejectedError as error:
        st.session_state.pop(RESULT, None)
        show_api_error(error)
        if error.details:
            problems_table(error.details)


def summary(result: dict, current_schema: dict) -> None:
    scored, frame = result["scored"], result["predictions"]
    positive = positive_class(current_schema)
    rows, share, version, download = st.columns(4, vertical_alignment="center")
    rows.metric("Rows scored", f"{len(frame):,}")
    version.metric("Model version", f"v{scored.model_version}" if scored.model_version else "—")
    if positive is not None:
        name = class_label(current_schema, positive)
        hits = frame["prediction_label"].astype(str) == str(positive)
        share.metric(f"Predicted “{name}”", percent(hits.mean()),
                     help=f"share of rows predicted as “{name}” ({int(hits.sum()):,} of {len(frame):,})")
        figure = charts.probability_histogram(frame["prediction_probability"], result["threshold"], name)
    else:
        counts = frame["prediction_label_text"].value_counts()
        share.metric("Most frequent prediction", str(counts.index[0]),
                     help=f"{percent(counts.iloc[0] / len(frame))} of the rows")
        figure = charts.class_counts(counts)
    download.download_button("Download scored CSV", scored.content, file_name=scored.file_name,
                             mime="text/csv", type="primary", icon=":material/download:", on_click="ignore")
    st.plotly_chart(figure, config={"displayModeBar": False})
    st.caption(f"Request id `{scored.request_id}`: every row is in the prediction log, so feedback can "
               "be matched to it later.")


st.title("Batch scoring")
st.caption("Upload a CSV with the feature columns (extra columns such as IDs are kept) and download "
           "it back with the champion's prediction for every row.")
current_schema = schema()
upload = st.file_uploader("CSV file", type=["csv"], key="batch_file",
                          help="Drag and drop, or browse. The header row must name the feature columns: "
                               + ", ".join(f["name"] for f in current_schema["features"]))
if upload is None:
    st.session_state.pop(RESULT, None)
    st.info("Drop a CSV above to score it.", icon=":material/upload_file:")
elif not csv_files.refused_header(upload.getvalue()):
    if st.button(f"Score “{upload.name}”", type="primary", icon=":material/play_arrow:"):
        score(upload)
    result = st.session_state.get(RESULT)
    done = result is not None and result["file_id"] == upload.file_id
    if done:
        summary(result, current_schema)
    with st.expander(f"First {PREVIEW_ROWS} rows of “{upload.name}” ({upload.size / 1e6:.2f} MB)",
                     expanded=not done):
        try:
            st.dataframe(preview(upload.getvalue()), hide_index=True, width="stretch")
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
            st.warning(f"This file does not read as a CSV: {error}", icon=":material/warning:")
