"""Classification quality estimated without labels: confidence-based performance estimation (CBPE,
as NannyML publishes it), from the served model's calibrated probabilities.

With calibrated probabilities p, each row is right with probability p of the class it was given.
The expected confusion matrix (TP = Σ p·[ŷ = 1], FP = Σ (1 − p)·[ŷ = 1], ...) gives accuracy and F1;
ROC AUC comes from the expected true and false positive rates over the score's thresholds. Multi-
class figures are one-vs-rest, macro-averaged. The band is the 2.5–97.5 % range of the realised
figure when labels are drawn from those same probabilities (sampling error of a window this size).
A shift in the inputs is covered; a change in how outcomes follow from inputs (concept drift) is
not: only labels see that, which is why the realised figure is shown beside the estimate.
"""

from __future__ import annotations

import warnings

import numpy as np

METRICS = ("roc_auc", "f1", "accuracy")
DRAWS = 300
MIN_ROWS = 30


def _binary_expected(p: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """p: probability that each row is positive; predicted: 0/1 given; score: what ranks the rows."""
    tp, fp = float(np.sum(p * predicted)), float(np.sum((1 - p) * predicted))
    fn = float(np.sum(p * (1 - predicted)))
    tn = len(p) - tp - fp - fn
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0
    return {"roc_auc": _expected_auc(p, score), "f1": f1, "accuracy": (tp + tn) / len(p)}


def _expected_auc(p: np.ndarray, score: np.ndarray) -> float:
    if p.sum() < 0.5 or (1 - p).sum() < 0.5:  # not even one expected row of each side
        return float("nan")
    order = np.argsort(-score, kind="stable")
    s, positives, negatives = score[order], p[order], 1 - p[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # thresholds between distinct scores only
    tpr = np.r_[0.0, np.cumsum(positives)[last_of_tie] / max(positives.sum(), 1e-12)]
    fpr = np.r_[0.0, np.cumsum(negatives)[last_of_tie] / max(negatives.sum(), 1e-12)]
    return float(np.trapezoid(tpr, fpr))


def _realised(labels: np.ndarray, predicted: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised over draws: labels (draws × n) 0/1; predicted, ranks (n,)."""
    n = labels.shape[1]
    positives = labels.sum(axis=1)
    negatives = n - positives
    tp = labels @ predicted
    fp = predicted.sum() - tp
    fn = positives - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (labels @ ranks - positives * (positives + 1) / 2) / (positives * negatives)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    accuracy = (tp + (negatives - fp)) / n
    return {"roc_auc": auc, "f1": f1, "accuracy": accuracy}


def _ranks(score: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(score)  # ties share their mean rank, as the Mann-Whitney AUC wants


def _one_vs_rest(calibrated: np.ndarray, scores: np.ndarray, predicted_index: np.ndarray,
                 rng: np.random.Generator) -> tuple[dict, dict]:
    """Expected figures and the draws of the realised ones, for each class against the rest."""
    n, k = calibrated.shape
    cumulative = np.cumsum(calibrated, axis=1)
    drawn = (rng.random((DRAWS, n, 1)) > cumulative[None, :, :]).sum(axis=2)  # a class per row and draw
    expected, draws = [], []
    for c in range(k):
        given = (predicted_index == c).astype(float)
        expected.append(_binary_expected(calibrated[:, c], given, scores[:, c]))
        draws.append(_realised((drawn == c).astype(float), given, _ranks(scores[:, c])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = {m: float(np.nanmean([e[m] for e in expected])) for m in METRICS if m != "accuracy"}
    mean["accuracy"] = float(np.sum(calibrated[np.arange(n), predicted_index]) / n)
    with warnings.catch_warnings():  # a class no draw holds (or all do) has no AUC: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        per_draw = {m: np.nanmean([d[m] for d in draws], axis=0) for m in METRICS if m != "accuracy"}
    per_draw["accuracy"] = (drawn == predicted_index[None, :]).mean(axis=1)
    return mean, per_draw


def estimate(calibrated: np.ndarray, scores: np.ndarray, predicted_index: np.ndarray, *,
             positive_index: int | None, seed: int = 0) -> dict:
    """Estimated ROC AUC, F1 and accuracy of one window, each {"value", "band": [low, high]}.

    calibrated: (n, k) calibrated class probabilities; scores: (n, k) the model's own probabilities
    (they rank the rows, as in the realised ROC AUC); predicted_index: the class each row was given;
    positive_index: the positive class of a binary target, else None (macro one-vs-rest)."""
    n = len(calibrated)
    if n < MIN_ROWS:
        return {"rows": n, "estimated": None, "reason": f"fewer than {MIN_ROWS} rows"}
    rng = np.random.default_rng(seed)
    if positive_index is not None:
        p = calibrated[:, positive_index]
        given = (predicted_index == positive_index).astype(float)
        point = _binary_expected(p, given, scores[:, positive_index])
        labels = (rng.random((DRAWS, n)) < p[None, :]).astype(float)
        draws = _realised(labels, given, _ranks(scores[:, positive_index]))
    else:
        point, draws = _one_vs_rest(calibrated, scores, predicted_index, rng)
    return {"rows": n, "estimated": {m: _figure(point[m], draws[m]) for m in METRICS}}


def _figure(value: float, draws: np.ndarray) -> dict:
    """{"value", "band"}; both None where the figure is undefined (ROC AUC of a window whose rows
    all belong to one class, in every draw)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if not len(draws) or not np.isfinite(value):
        return {"value": None, "band": None}
    band = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
    return {"value": float(value), "band": band}


def realised(truth: np.ndarray, scores: np.ndarray, predicted_index: np.ndarray, classes: list, *,
             positive_index: int | None) -> dict[str, float | None]:
    """The same figures on rows whose true class is known (truth: class indices)."""
    from sklearn.metrics import f1_score, roc_auc_score

    out: dict[str, float | None] = {"accuracy": float(np.mean(truth == predicted_index))}
    if positive_index is not None:
        positive = (truth == positive_index).astype(int)
        out["f1"] = float(f1_score(positive, (predicted_index == positive_index).astype(int),
                                   zero_division=0))
        both = 0 < positive.sum() < len(positive)
        out["roc_auc"] = float(roc_auc_score(positive, scores[:, positive_index])) if both else None
        return out
    out["f1"] = float(f1_score(truth, predicted_index, labels=range(len(classes)), average="macro",
                               zero_division=0))
    present = np.unique(truth)
    if len(present) == len(classes):
        out["roc_auc"] = float(roc_auc_score(truth, scores, multi_class="ovr", average="macro"))
    else:
        out["roc_auc"] = None
    return out
