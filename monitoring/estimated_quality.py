"""Estimated and realised quality of the served model over windows of the prediction log.

Estimated: performance_estimation on each window's rows, with the calibration of the version that
served them (rows of a version without one are counted, not estimated). Realised: the same
figures on the window's rows that have feedback, with how many labels they rest on; a label that
arrives late fills in its window the next time this is asked.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ml import calibration as calibration_module
from ml.schema import Schema
from monitoring import performance_estimation

KEY = ["request_id", "row"]
MIN_LABELS = 10  # fewer labels than this give no realised figure


def logged_columns(schema: Schema) -> list[str]:
    classes = schema.target.classes
    probability = ["probability"] if schema.target.is_binary else [f"probability_{c}" for c in classes]
    return ["model_version", "label", *probability]


def _scores(frame: pd.DataFrame, schema: Schema, positive_index: int | None) -> np.ndarray:
    """The logged probabilities as an (n, classes) matrix in the schema's class order."""
    classes = schema.target.classes
    if positive_index is not None:
        p = frame["probability"].to_numpy(float)
        scores = np.empty((len(p), 2))
        scores[:, positive_index], scores[:, 1 - positive_index] = p, 1 - p
        return scores
    return frame[[f"probability_{c}" for c in classes]].to_numpy(float)


def _indices(values: pd.Series, classes: list) -> np.ndarray:
    lookup = {str(c): i for i, c in enumerate(classes)}
    return values.astype(str).map(lookup).fillna(-1).to_numpy(int)


def window(frame: pd.DataFrame, labels: pd.DataFrame, schema: Schema,
           calibration_of: Callable[[str], dict | None]) -> dict:
    """One window: rows, estimated figures (with bands) and realised ones on its labelled rows."""
    classes = schema.target.classes
    positive_index = classes.index(schema.target.positive) if schema.target.is_binary else None
    out: dict = {"rows": len(frame), "model_versions": {
        str(k): int(v) for k, v in frame["model_version"].astype(str).value_counts().items()}}
    if not len(frame):
        return {**out, "estimated": None, "realised": None, "labels": 0}
    scores = _scores(frame, schema, positive_index)
    predicted = _indices(frame["label"], classes)
    calibrated, uncalibrated = np.empty_like(scores), np.zeros(len(frame), bool)
    for version in frame["model_version"].astype(str).unique():
        rows = (frame["model_version"].astype(str) == version).to_numpy()
        found = calibration_of(version)
        if found is None:
            uncalibrated |= rows
        else:
            calibrated[rows] = calibration_module.apply(found, scores[rows])
    keep = ~uncalibrated & (predicted >= 0)
    estimate = performance_estimation.estimate(calibrated[keep], scores[keep], predicted[keep],
                                               positive_index=positive_index)
    out.update(estimated=estimate.get("estimated"), estimated_rows=int(keep.sum()),
               not_estimated=estimate.get("reason") or (
                   f"{int(uncalibrated.sum())} row(s) of a version without calibration"
                   if uncalibrated.any() else None))
    if not len(labels) or any(k not in frame.columns for k in KEY):
        return {**out, "labels": 0, "realised": None}
    joined = frame.reset_index(drop=True).reset_index().merge(labels, on=KEY)
    truth = _indices(joined["true_label"], classes)
    known = joined["index"].to_numpy()[truth >= 0]
    out["labels"] = len(known)
    out["realised"] = None if len(known) < MIN_LABELS else performance_estimation.realised(
        truth[truth >= 0], scores[known], predicted[known], classes, positive_index=positive_index)
    return out


def timeline(frame: pd.DataFrame, labels: pd.DataFrame, schema: Schema,
             calibration_of: Callable[[str], dict | None], *, start: float, seconds: float,
             count: int) -> list[dict]:
    """`count` consecutive windows of `seconds` from `start` (epoch seconds), oldest first."""
    stamps = frame["ts"].to_numpy(float)
    slots = np.floor((stamps - start) / seconds).astype(int)
    return [{"start": start + i * seconds, "end": start + (i + 1) * seconds,
             **window(frame[slots == i], labels, schema, calibration_of)} for i in range(count)]
