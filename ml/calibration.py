"""Probability calibration fitted on the validation split: one curve per class (the positive class
alone for a binary target), kept with the model as `calibration.json`.

Served answers use the model's own probabilities (the decision threshold was chosen on them);
performance estimation without labels (monitoring.performance_estimation) needs probabilities that
mean what they say, and applies this map first.
"""

from __future__ import annotations

import numpy as np

ARTIFACT = "calibration.json"
EDGE = 1e-4  # probabilities of 0 and 1 (a forest gives them) stay finite in logit space


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EDGE, 1 - EDGE)
    return np.log(p / (1 - p))


def fit(truth: np.ndarray, proba: np.ndarray, classes: list, positive=None) -> dict:
    """Platt scaling (a logistic curve over the logit of the model's probability) of each class
    against the rest: two numbers a class, steadier than an isotonic map on a validation split with
    few rows of a rare class."""
    from sklearn.linear_model import LogisticRegression

    fitted = {}
    for klass in [positive] if positive is not None else classes:
        outcome = (np.asarray(truth) == klass).astype(int)
        if outcome.min() == outcome.max():  # a class absent from (or alone in) the split: as it is
            fitted[str(klass)] = {"a": 1.0, "b": 0.0}
            continue
        curve = LogisticRegression(C=1e4).fit(_logit(proba[:, classes.index(klass)])[:, None], outcome)
        fitted[str(klass)] = {"a": float(curve.coef_[0, 0]), "b": float(curve.intercept_[0])}
    return {"method": "sigmoid", "fitted_on": "validation", "rows": len(truth),
            "classes": [str(c) for c in classes], "positive": None if positive is None else str(positive),
            "maps": fitted}


def _curve(p: np.ndarray, fitted: dict) -> np.ndarray:
    from scipy.special import expit  # no overflow for a steep curve (a class the model separates)

    return expit(fitted["a"] * _logit(p) + fitted["b"])


def apply(calibration: dict, proba: np.ndarray) -> np.ndarray:
    """Calibrated probabilities, same shape and class order as `proba` (rows sum to 1)."""
    classes, maps = calibration["classes"], calibration["maps"]
    proba = np.asarray(proba, dtype=float)
    if calibration.get("positive") is not None:
        index = classes.index(calibration["positive"])
        out = np.empty_like(proba)
        out[:, index] = _curve(proba[:, index], maps[calibration["positive"]])
        out[:, 1 - index] = 1.0 - out[:, index]
        return out
    out = np.column_stack([_curve(proba[:, i], maps[c]) for i, c in enumerate(classes)])
    return out / out.sum(axis=1, keepdims=True)

