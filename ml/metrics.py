"""Classification metrics, the decision threshold, and the constant-predictor baseline."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from ml.params import Threshold
from ml.schema import Target


def predict_labels(proba: np.ndarray, classes: list, threshold: float | None, target: Target):
    """Labels from class probabilities: the threshold for a binary target, else the argmax."""
    classes = np.asarray(classes)
    if threshold is None or not target.is_binary:
        return classes[np.argmax(proba, axis=1)]
    positive = list(classes).index(target.positive)
    negative = 1 - positive
    return np.where(proba[:, positive] >= threshold, classes[positive], classes[negative])


def classification_metrics(y_true, proba: np.ndarray, classes: list, threshold: float | None,
                           target: Target) -> dict[str, float]:
    y_pred = predict_labels(proba, classes, threshold, target)
    if target.is_binary:
        positive = list(classes).index(target.positive)
        truth = (np.asarray(y_true) == target.positive).astype(int)
        scores = proba[:, positive]
        result = {
            "roc_auc": skm.roc_auc_score(truth, scores),
            "pr_auc": skm.average_precision_score(truth, scores),
        }
        averaged = {"average": "binary", "pos_label": target.positive}
    else:
        onehot = label_binarize(y_true, classes=classes)
        result = {
            "roc_auc": skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro",
                                         labels=classes),
            "pr_auc": skm.average_precision_score(onehot, proba, average="macro"),
        }
        averaged = {"average": "macro", "labels": classes}
    result.update(
        f1=skm.f1_score(y_true, y_pred, zero_division=0, **averaged),
        precision=skm.precision_score(y_true, y_pred, zero_division=0, **averaged),
        recall=skm.recall_score(y_true, y_pred, zero_division=0, **averaged),
        accuracy=skm.accuracy_score(y_true, y_pred),
    )
    return {name: float(value) for name, value in result.items()}


def choose_threshold(y_true, positive_scores: np.ndarray, target: Target, rule: Threshold) -> float:
    """The positive-class threshold on validation data, by the rule in params."""
    if rule.rule == "fixed":
        return float(rule.value)
    truth = (np.asarray(y_true) == target.positive).astype(int)
    precision, recall, thresholds = skm.precision_recall_curve(truth, positive_scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    if rule.rule == "max_f1":
        f1 = np.divide(2 * precision * recall, precision + recall,
                       out=np.zeros_like(precision), where=(precision + recall) > 0)
        return float(thresholds[int(np.argmax(f1))])
    if rule.rule == "min_recall":
        ok = np.flatnonzero(recall >= rule.target)
        return float(thresholds[ok[-1]]) if ok.size else float(thresholds[0])
    ok = np.flatnonzero(precision >= rule.target)  # min_precision: the lowest such threshold
    return float(thresholds[ok[0]]) if ok.size else float(thresholds[-1])


def baseline_metrics(y_train, y_test, classes: list, target: Target) -> dict[str, float]:
    """What a constant predictor (training class priors for every row) scores on the test set."""
    priors = np.array([np.mean(np.asarray(y_train) == c) for c in classes])
    proba = np.tile(priors, (len(y_test), 1))
    threshold = 0.5 if target.is_binary else None
    return classification_metrics(y_test, proba, classes, threshold, target)
