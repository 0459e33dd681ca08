"""Predictions from the champion, for JSON records and for CSV batches; every row is logged."""
# (no `from __future__ import annotations`: flask-openapi3 reads the body model, made per schema, at runtime)


import io
import time
import uuid

import numpy as np
import pandas as pd
from flask import Response, jsonify, request
from flask_openapi3 import Tag

from control_api.errors import APIError, invalid
from control_api.identity.routing import SecuredBlueprint
from control_api.models import BatchForm, ErrorBody, PredictResponse
from control_api.validation import check_frame, predict_request_model

TAG = Tag(name="predict", description="Predictions from the champion model")
CSV_CHUNK_ROWS = 50_000


def _outputs(served, proba: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row outputs as columns: label, text, and the probability (or one per class)."""
    labels = served.labels(proba)
    target = served.schema.target
    names = {c: target.label(c) for c in served.classes}  # a few classes, many rows
    out = {"label": labels,
           "label_text": np.array([names[v] for v in labels.tolist()], dtype=object)}
    if served.positive_index is not None:
        out["probability"] = proba[:, served.positive_index]
    else:
        for index, klass in enumerate(served.classes):
            out[f"probability_{klass}"] = proba[:, index]
    return out


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


def _read_csv(upload, schema) -> pd.DataFrame:
    if upload is None or not getattr(upload, "filename", None):
        raise invalid([{"field": "file", "problem": "no file uploaded (multipart field `file`)"}])
    try:
        return pd.read_csv(upload.stream, dtype={name: str for name in schema.categorical},
                           encoding="utf-8")
    except UnicodeDecodeError:
        raise invalid([{"field": "file", "problem": "not UTF-8 text: upload a CSV file"}]) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise invalid([{"field": "file", "problem": f"not a readable CSV: {error}"}]) from None


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("predict", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody, 503: ErrorBody})
    schema, settings, log = services.params.schema, services.settings, services.predictions
    names = schema.feature_names
    request_model = predict_request_model(schema, settings.max_records)

    @bp.post("/predict", permission="predict", audited=False, responses={200: PredictResponse})
    def predict(body: request_model):
        """Score 1 to 10,000 records with the champion."""
        served = services.champion.get()  # one model for the whole request
        records = body.records
        columns = {name: np.array([getattr(r, name) for r in records]) for name in names}
        started = time.perf_counter()
        proba, path = served.predict_proba(columns, len(records))
        outputs = _outputs(served, proba)
        services.metrics.observe(served.version, path, outputs["label"], time.perf_counter() - started)
        predictions = _prediction_dicts(served, outputs)
        request_id = str(uuid.uuid4())
        log.append(request_id, served.version, path,
                   [{**r.__dict__, **p} for r, p in zip(records, predictions, strict=True)])
        return jsonify({"model": {"name": served.name, "version": served.version, "alias": "champion"},
                        "request_id": request_id, "served_by": path, "predictions": predictions})

    @bp.post("/predict/batch", permission="predict", audited=False,
             responses={200: {"content": {"text/csv": {}}}, 413: ErrorBody})
    def predict_batch(form: BatchForm):
        """Score a CSV (up to 1,000,000 rows): the input columns plus the predictions, streamed.

        Columns other than the features are passed through untouched. `Accept: application/json`
        returns the same as JSON records.
        """
        frame = _read_csv(request.files.get("file"), schema)
        if len(frame) > settings.max_batch_rows:
            raise APIError(413, f"{len(frame)} rows: the limit is {settings.max_batch_rows}")
        columns, problems = check_frame(frame, schema)
        if problems:
            raise invalid(problems, "the CSV has invalid rows or columns")
        served = services.champion.get()
        started = time.perf_counter()
        proba, path = served.predict_proba(columns, len(frame))
        outputs = _outputs(served, proba)
        added = {f"prediction_{k}": v for k, v in outputs.items()}
        clashes = sorted(set(added) & set(frame.columns))
        if clashes:  # refused: not counted as scored
            raise invalid([{"field": c, "problem": "the output would overwrite this input column; "
                            "rename it"} for c in clashes])
        services.metrics.observe(served.version, path, outputs["label"], time.perf_counter() - started)
        request_id = str(uuid.uuid4())
        scored = frame.assign(**added)
        log.append_frame(request_id, served.version, path,
                         pd.DataFrame({**{n: columns[n] for n in names}, **outputs}))
        headers = {"X-Request-Id": request_id, "X-Model-Version": served.version,
                   "X-Served-By": path}
        if request.accept_mimetypes.best == "application/json":
            return Response(scored.to_json(orient="records"), mimetype="application/json",
                            headers=headers)

        def chunks():
            for start in range(0, len(scored), CSV_CHUNK_ROWS):
                buffer = io.StringIO()
                scored.iloc[start:start + CSV_CHUNK_ROWS].to_csv(buffer, index=False,
                                                                  header=start == 0)
                yield buffer.getvalue()

        headers["Content-Disposition"] = f'attachment; filename="scored-{request_id}.csv"'
        return Response(chunks(), mimetype="text/csv", headers=headers)

    return bp
