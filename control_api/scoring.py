"""One /predict request's records scored by the champion: the answer, the log rows, the shadow's
share. The route and its fast path (control_api.predict_fast_path) both answer with this."""

from __future__ import annotations

import dataclasses
import time
import uuid

import numpy as np


@dataclasses.dataclass
class Scored:
    answer: dict  # the response body
    columns: dict[str, np.ndarray]  # the records' features, one array each
    outputs: dict[str, np.ndarray]  # label, label_text, probability (or one per class)


def score_records(services, served, records: list) -> Scored:
    """Score validated records with `served`, count them, log them and hand them to the shadow."""
    names = services.params.schema.feature_names
    columns = {name: np.array([getattr(r, name) for r in records]) for name in names}
    started = time.perf_counter()
    proba, path = served.predict_proba(columns, len(records))
    outputs = served.outputs(proba)
    services.metrics.observe(served.version, path, outputs["label"], time.perf_counter() - started)
    predictions = _prediction_dicts(served, outputs)
    request_id = str(uuid.uuid4())
    services.predictions.append(request_id, served.version, path, _logged_rows(records, outputs))
    services.shadow.submit(request_id, served.version, columns, len(records))
    answer = {"model": {"name": served.name, "version": served.version, "alias": "champion"},
              "request_id": request_id, "served_by": path, "predictions": predictions}
    return Scored(answer, columns, outputs)


def _prediction_dicts(served, outputs: dict[str, np.ndarray]) -> list[dict]:
    labels = outputs["label"].tolist()
    texts = outputs["label_text"].tolist()
    if served.positive_index is not None:
        return [{"label": label, "label_text": text, "probability": p, "threshold": served.threshold}
                for label, text, p in zip(labels, texts, outputs["probability"].tolist(), strict=True)]
    per_class = {str(c): outputs[f"probability_{c}"].tolist() for c in served.classes}
    return [{"label": label, "label_text": text,
             "probabilities": {c: values[i] for c, values in per_class.items()}}
            for i, (label, text) in enumerate(zip(labels, texts, strict=True))]


def _logged_rows(records, outputs: dict[str, np.ndarray]) -> list[dict]:
    """Each record's features and outputs, in the columns a batch logs (`label`, `label_text`,
    `probability` or one `probability_<class>` per class): one layout for every reader of the log."""
    columns = {name: values.tolist() for name, values in outputs.items()}
    return [{**record.__dict__, **{name: values[i] for name, values in columns.items()}}
            for i, record in enumerate(records)]
