"""Predict: one record in a form made from the schema; the champion's answer; the true outcome later."""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiRejectedError
from ui.components import charts, explanation_view, forms
from ui.components.access import can
from ui.components.errors import guarded, show_api_error
from ui.components.formatting import class_label, positive_class
from ui.components.session import api, schema

RESULT = "prediction"


def prediction_form(features: list[dict]) -> tuple[bool, dict, dict]:
    """(submitted, record, error slot per feature): each slot sits right under its input."""
    record, slots = {}, {}
    with st.form("predict_form", border=True):
        columns = st.columns(2)
        for index, feature in enumerate(features):
            with columns[index % 2]:
                record[feature["name"]] = forms.feature_input(feature)
                slots[feature["name"]] = st.empty()
        explain = st.checkbox("Explain the answer", key="explain",
                              help="which values pushed the model towards its answer, and how much")
        submitted = st.form_submit_button("Predict", type="primary", icon=":material/bolt:", width="stretch")
    return submitted, record, slots, explain


def send(record: dict, current_schema: dict, slots: dict, explain: bool) -> None:
    """The inputs' bounds keep values in range; what the API still refuses goes under its field."""
    try:
        answer = api().predict([record], explain=explain)
    except ApiRejectedError as error:
        st.session_state.pop(RESULT, None)
        named, others = forms.problems_by_feature(error.details, current_schema)
        for name, problem in named.items():
            slots[name].error(problem, icon=":material/error:")
        if others or not named:
            show_api_error(error)
        else:
            st.error(f"Not scored: the model's API refused {len(named)} value(s), marked above.")
    else:
        st.session_state[RESULT] = {**answer, "record": record}


def show_result(result: dict, current_schema: dict) -> None:
    prediction = result["predictions"][0]
    labels = current_schema["target"]["labels"]
    positive = positive_class(current_schema)
    with st.container(border=True):
        st.metric("Predicted outcome", prediction["label_text"])
        if prediction.get("probability") is not None:
            threshold, positive_label = prediction.get("threshold"), class_label(current_schema, positive)
            st.plotly_chart(charts.probability_gauge(prediction["probability"], threshold, positive_label),
                            config={"displayModeBar": False})
            if threshold is not None:
                st.markdown(f"Decision threshold **{threshold * 100:.1f} %** — at or above it the answer "
                            f"is “{positive_label}”.")
        else:
            st.plotly_chart(charts.class_probabilities(prediction["probabilities"], labels),
                            config={"displayModeBar": False})
        if prediction.get("explanation"):
            explanation_view.show(prediction, result["explained_by"])
        model = result["model"]
        st.caption(f"Model **{model['name']}** version **{model['version']}** ({model['alias']}), "
                   f"scored by {result['served_by']}  \nRequest id `{result['request_id']}`")


@guarded
def feedback_form(result: dict, current_schema: dict) -> None:
    classes = current_schema["target"]["classes"]
    with st.form("feedback_form", border=True):
        st.markdown("**What actually happened?** Recording the true outcome lets us measure the model.")
        truth = st.selectbox("True outcome", classes, format_func=lambda c: class_label(current_schema, c),
                             key="true_outcome")
        if st.form_submit_button("Send feedback", icon=":material/fact_check:"):
            api().feedback(result["request_id"], truth)
            st.success(f"Recorded “{class_label(current_schema, truth)}” for request "
                       f"`{result['request_id'][:8]}…`.", icon=":material/check_circle:")


st.title("Predict")
st.caption("Enter one record's values and ask the champion model for its answer. "
           "Ranges come from the data schema: the ? next to a field gives its allowed values.")
current_schema = schema()
form_column, result_column = st.columns([3, 2], gap="large")
with form_column:
    submitted, record, slots, explain = prediction_form(current_schema["features"])
    if submitted:
        send(record, current_schema, slots, explain)
with result_column:
    result = st.session_state.get(RESULT)
    if result is None:
        against = (" against the decision threshold" if len(current_schema["target"]["classes"]) == 2
                   else " for each class")
        st.info(f"The answer appears here: the outcome in words, its probability{against}, and the "
                "model version that gave it.", icon=":material/info:")
    else:
        show_result(result, current_schema)
        if can("feedback:write"):
            feedback_form(result, current_schema)
