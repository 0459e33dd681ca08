"""What the service predicted lately, per minute and per class, from the prediction log."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
from flask_openapi3 import Tag

from control_api.identity.routing import SecuredBlueprint
from control_api.models import ErrorBody, PredictionsQuery, PredictionsSummary

TAG = Tag(name="predictions", description="Recent predictions, for the service dashboard")


def _counts(series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.astype(str).value_counts().sort_index().items()}


def summarise(frame, minutes: int, until: float, positive) -> dict:
    start_minute = int(until // 60) - minutes + 1  # the current minute is the last one
    since = start_minute * 60.0
    frame = frame[frame["ts"] >= since]
    labels = frame["label"].astype(str)
    slots = (frame["ts"].to_numpy(dtype="float64") // 60).astype(np.int64) - start_minute
    per_minute = []
    for slot in range(minutes):
        in_slot = labels[slots == slot]
        per_minute.append({"minute": datetime.fromtimestamp((start_minute + slot) * 60, UTC),
                           "total": len(in_slot), "labels": _counts(in_slot)})
    rate = None
    if positive is not None and len(frame):
        rate = float((labels == str(positive)).mean())
    return {"minutes": minutes, "since": datetime.fromtimestamp(since, UTC),
            "until": datetime.fromtimestamp(until, UTC), "total": len(frame), "labels": _counts(labels),
            "positive_class": None if positive is None else str(positive), "positive_rate": rate,
            "model_versions": _counts(frame["model_version"]), "served_by": _counts(frame["served_by"]),
            "per_minute": per_minute}


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("predictions", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    target = services.params.schema.target
    positive = target.positive if target.is_binary else None

    @bp.get("/predictions/summary", permission="read", responses={200: PredictionsSummary})
    def predictions_summary(query: PredictionsQuery):
        """Rows predicted over the last `minutes` (1 to 1440, whole minutes ending with the current
        one): per minute and class, in total, the positive-class rate, model versions, paths."""
        until = time.time()
        since = (int(until // 60) - query.minutes + 1) * 60.0
        frame = services.predictions.read(["label", "model_version", "served_by"], since=since)
        return summarise(frame, query.minutes, until, positive)

    return bp
