"""Classification quality (Evidently's ClassificationPreset) of predictions whose true label is known."""

from __future__ import annotations

import pandas as pd

from ml.schema import Target
from monitoring.reference import LABEL, PROBABILITY

TRUTH = "true_label"
METRICS = {"Accuracy": "accuracy", "Precision": "precision", "Recall": "recall", "F1Score": "f1",
           "RocAuc": "roc_auc", "LogLoss": "log_loss"}


def _definition(target: Target, probabilities: list[str]):
    from monitoring.evidently_lib import BinaryClassification, DataDefinition, MulticlassClassification

    if target.is_binary:
        task = BinaryClassification(target=TRUTH, prediction_labels=LABEL, prediction_probas=PROBABILITY,
                                    pos_label=str(target.positive))
    else:
        task = MulticlassClassification(target=TRUTH, prediction_labels=LABEL,
                                        prediction_probas=probabilities or None)
    return DataDefinition(classification=[task], categorical_columns=[TRUTH, LABEL],
                          numerical_columns=probabilities)


def _as_evidently(frame: pd.DataFrame, target: Target,
                  probabilities: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Labels as text; multi-class probability columns named by their class, as Evidently wants."""
    out = pd.DataFrame({TRUTH: frame[TRUTH].astype(str), LABEL: frame[LABEL].astype(str)})
    names = []
    for column in probabilities:
        name = column if target.is_binary else column.removeprefix(f"{PROBABILITY}_")
        out[name] = frame[column].astype("float64")
        names.append(name)
    return out, names


def scores(frame: pd.DataFrame, target: Target, probabilities: list[str],
           threshold: float | None) -> dict[str, float]:
    """Accuracy, precision, recall, F1, ROC AUC, log loss of `frame` (columns TRUTH, LABEL and the
    probability columns); the binary threshold is the model's, not 0.5."""
    from monitoring.evidently_lib import ClassificationPreset, Dataset, Report

    data, columns = _as_evidently(frame, target, probabilities)
    dataset = Dataset.from_pandas(data, data_definition=_definition(target, columns))
    preset = ClassificationPreset(probas_threshold=threshold if target.is_binary else None)
    snapshot = Report([preset]).run(dataset, None)
    found = {}
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"].split("(", 1)[0]
        if name in METRICS and isinstance(metric["value"], int | float):
            found[METRICS[name]] = float(metric["value"])
    return found


def quality(labelled: pd.DataFrame, reference: pd.DataFrame, target: Target, probabilities: list[str],
            threshold: float | None) -> dict:
    """The window's labelled rows against the reference split (true labels, champion predictions)."""
    result = {"rows": len(labelled), "threshold": threshold}
    try:
        result["current"] = scores(labelled, target, probabilities, threshold)
        result["reference"] = scores(reference, target, probabilities, threshold)
    except (ValueError, KeyError, IndexError) as error:  # e.g. one class only among the labels
        result.update(current=None, reference=None, error=f"Evidently could not score them: {error}")
    return result
