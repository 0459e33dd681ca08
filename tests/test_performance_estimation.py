"""Performance estimated without labels (CBPE on the training's calibration) against the realised
performance on held-out generated data whose labels are known, on plain and on shifted traffic."""

from __future__ import annotations

import numpy as np
import pytest

from ml import calibration
from ml import params as params_module
from ml.config import REPO_ROOT
from ml.generate import Shift, generate
from ml.splits import split
from ml.tables import feature_frame, labels
from ml.training import fit_and_score
from monitoring import performance_estimation as pe

PARAMS = params_module.load(REPO_ROOT)
SCHEMA = PARAMS.schema
# slower spindles: more power failures, in a region the training data saw little of
SLOWER = Shift(rotational_speed_rpm=-80.0)


@pytest.fixture(scope="module")
def trained():
    return fit_and_score(split(generate(4000, 7), SCHEMA, PARAMS.split), PARAMS)


def window_figures(trained, rows: int, seed: int, shift: Shift) -> tuple[dict, dict]:
    frame = generate(rows, seed, shift, first_id=10_000_000)
    classes = trained.pipeline.classes_.tolist()
    positive = classes.index(SCHEMA.target.positive)
    proba = trained.pipeline.predict_proba(feature_frame(frame, SCHEMA))
    given = np.where(proba[:, positive] >= trained.threshold, positive, 1 - positive)
    truth = np.array([classes.index(v) for v in labels(frame, SCHEMA)])
    estimate = pe.estimate(calibration.apply(trained.calibration, proba), proba, given,
                           positive_index=positive)["estimated"]
    return estimate, pe.realised(truth, proba, given, classes, positive_index=positive)


@pytest.fixture(scope="module")
def windows(trained):
    return {name: [window_figures(trained, 3000, seed, shift) for seed in range(101, 109)]
            for name, shift in (("plain", Shift()), ("shifted", SLOWER))}


def test_training_keeps_a_calibration_fitted_on_the_validation_split(trained):
    kept = trained.calibration
    assert kept["method"] == "sigmoid" and kept["fitted_on"] == "validation"
    assert kept["positive"] == str(SCHEMA.target.positive) and set(kept["maps"]) == {kept["positive"]}
    raw = np.array([[0.9, 0.1], [0.5, 0.5], [0.05, 0.95]])
    calibrated = calibration.apply(kept, raw)
    assert np.allclose(calibrated.sum(axis=1), 1) and np.all(np.diff(calibrated[:, 1]) > 0)


def mean(figures: list[tuple[dict, dict]], metric: str) -> tuple[float, float]:
    """(mean estimate, mean realised figure) over windows."""
    return (float(np.mean([e[metric]["value"] for e, _ in figures])),
            float(np.mean([r[metric] for _, r in figures])))


@pytest.mark.parametrize("metric", ["roc_auc", "f1"])
def test_on_traffic_like_the_training_data_the_realised_figure_falls_in_the_band(windows, metric):
    figures = windows["plain"]
    inside = [e[metric]["band"][0] <= r[metric] <= e[metric]["band"][1] for e, r in figures]
    assert sum(inside) >= 6, [(round(e[metric]["value"], 3), round(r[metric], 3)) for e, r in figures]
    estimated, realised = mean(figures, metric)
    assert abs(estimated - realised) < 0.04, (estimated, realised)


@pytest.mark.parametrize("metric", ["roc_auc", "f1"])
def test_on_shifted_traffic_estimate_and_realised_figure_drop_together(windows, metric):
    """The shift moves inputs where the training data had few rows: the estimate follows the drop,
    a few hundredths optimistic (the calibration extrapolates there)."""
    plain, shifted = mean(windows["plain"], metric), mean(windows["shifted"], metric)
    assert shifted[0] < plain[0] - 0.03 and shifted[1] < plain[1] - 0.03, (plain, shifted)
    assert abs(shifted[0] - shifted[1]) < 0.06, shifted


@pytest.mark.parametrize("classes", [2, 3])
def test_with_calibrated_probabilities_the_band_covers_the_truth(classes):
    """Labels drawn from the probabilities themselves: the band is a 95 % range, so about 19 of 20
    windows hold the realised figure, and the estimate is unbiased."""
    rng = np.random.default_rng(classes)
    inside, gaps = [], []
    for _ in range(20):
        proba = rng.dirichlet(np.full(classes, 0.6), size=1500)
        truth = (rng.random((1500, 1)) > np.cumsum(proba, axis=1)).sum(axis=1)
        given = proba.argmax(axis=1)
        positive = 1 if classes == 2 else None
        estimate = pe.estimate(proba, proba, given, positive_index=positive)["estimated"]
        real = pe.realised(truth, proba, given, list(range(classes)), positive_index=positive)
        for metric in pe.METRICS:
            low, high = estimate[metric]["band"]
            inside.append(low <= real[metric] <= high)
            gaps.append(estimate[metric]["value"] - real[metric])
    assert np.mean(inside) >= 0.85 and abs(np.mean(gaps)) < 0.01


def test_a_window_too_small_is_not_estimated():
    proba = np.full((5, 2), 0.5)
    found = pe.estimate(proba, proba, np.zeros(5, int), positive_index=1)
    assert found["estimated"] is None and "fewer than" in found["reason"]
