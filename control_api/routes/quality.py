"""The served model's quality over time: estimated from its own probabilities on every window
(no labels needed), and realised where feedback gives the true outcome."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
from flask_openapi3 import Tag

from control_api.identity.routing import SecuredBlueprint
from control_api.model_facts import ModelFacts
from control_api.models import ErrorBody, QualityOut, QualityQuery
from control_api.routes.feedback import labels as feedback_labels
from monitoring import estimated_quality

TAG = Tag(name="quality", description="Estimated and realised quality of the served model")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("quality", __name__, abp_tags=[TAG],
                          abp_responses={401: ErrorBody, 422: ErrorBody})
    schema, params = services.params.schema, services.params
    facts = ModelFacts(params.registry.model_name)
    columns = [*estimated_quality.KEY, *estimated_quality.logged_columns(schema)]

    @bp.get("/quality", permission="read", responses={200: QualityOut})
    def quality(query: QualityQuery):
        """Per window (`windows` of `window_minutes`, the last ending now): rows served, the
        estimated ROC AUC, F1 and accuracy with a 95 % band (confidence-based performance
        estimation on calibrated probabilities), and the realised figures on the rows with
        feedback with the number of labels behind them (none below 10). `champion` gives its
        figures at training, on its test split."""
        seconds = query.window_minutes * 60.0
        now = time.time()
        start = now - seconds * query.windows
        frame = services.predictions.read(columns, since=start)
        labels = pd.DataFrame(feedback_labels(services.engine), columns=["request_id", "row", "label"])
        labels = labels.rename(columns={"label": "true_label"})
        windows = estimated_quality.timeline(frame, labels, schema, facts.calibration, start=start,
                                             seconds=seconds, count=query.windows)
        served = services.champion.current
        champion = None if served is None else {
            "version": served.version, "at_training": facts.at_training(served.version)}
        return {"champion": champion, "performance_floor": params.monitoring.performance_floor,
                "windows": [{**w, "start": _iso(w["start"]), "end": _iso(w["end"])} for w in windows]}

    return bp
