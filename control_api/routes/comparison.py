"""Champion against challenger on live traffic: the served answers beside the challenger's shadow
answers to the same requests, and both models' quality where feedback exists."""

from __future__ import annotations

import io

import pandas as pd
from flask import Response
from flask_openapi3 import Tag

from control_api.identity.routing import SecuredBlueprint
from control_api.models import CompareOut, CompareQuery, ErrorBody
from control_api.routes.feedback import labels as feedback_labels
from monitoring import comparison

TAG = Tag(name="models", description="Registered model versions and the champion alias")
SLACK_SECONDS = 600  # a shadow row is written shortly after its served row


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("comparison", __name__, abp_tags=[TAG],
                          abp_responses={401: ErrorBody, 422: ErrorBody})
    schema = services.params.schema
    outputs = comparison.output_columns(schema, schema.target.classes)
    columns = [*comparison.KEY, "model_version", *schema.feature_names, *outputs]

    def compared(query: CompareQuery) -> comparison.Comparison:
        since = query.since.timestamp() if query.since else None
        until = query.until.timestamp() if query.until else None
        shadow = services.shadow.log.read(columns, since=since, until=until,
                                          last=None if since else query.last)
        if len(shadow):
            served = services.predictions.read(columns, since=float(shadow["ts"].min()) - SLACK_SECONDS,
                                               until=float(shadow["ts"].max()) + SLACK_SECONDS)
        else:
            served = shadow
        labels = pd.DataFrame(feedback_labels(services.engine), columns=["request_id", "row", "label"])
        return comparison.compare(served, shadow, labels, schema, classes=schema.target.classes,
                                  top=query.top)

    @bp.get("/models/compare", permission="read", responses={200: CompareOut})
    def compare(query: CompareQuery):
        """The champion and the challenger on the same live requests (the newest `last` shadowed rows,
        or `since`/`until`): agreement, both probability distributions, the rows they disagree on most,
        which features set those rows apart, and, on the rows with feedback, both models' accuracy and
        F1 with 95 % intervals, McNemar's test and a verdict in words."""
        return {"shadow": services.shadow.status(), **compared(query).summary}

    @bp.get("/models/compare/disagreements", permission="read",
            responses={200: {"content": {"text/csv": {}}}})
    def disagreements(query: CompareQuery):
        """Every row of the window the two models label differently, most different first, with its
        inputs and both answers, as CSV."""
        buffer = io.StringIO()
        compared(query).disagreements.to_csv(buffer, index=False)
        return Response(buffer.getvalue(), mimetype="text/csv", headers={
            "Content-Disposition": 'attachment; filename="disagreements.csv"'})

    return bp
