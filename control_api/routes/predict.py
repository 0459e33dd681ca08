"""Predictions from the champion, for JSON records and for CSV batches; every row is logged."""
# (no `from __future__ import annotations`: flask-openapi3 reads the body model, made per schema, at runtime)


import numpy as np
from flask import Response, jsonify, request
from flask_openapi3 import Tag
from pydantic import ConfigDict, Field
from werkzeug.wsgi import wrap_file

from control_api import batch_scoring
from control_api.errors import invalid
from control_api.identity.routing import SecuredBlueprint
from control_api.models import BatchForm, ErrorBody, PredictQuery, PredictResponse
from control_api.parameters import Parameters
from control_api.scoring import score_records
from control_api.validation import predict_request_model
from ml.splits import read_split

TAG = Tag(name="predict", description="Predictions from the champion model")
SEND_BYTES = 1 << 20


class BatchQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    raw: bool = Field(False, description="CSV cells exactly as they are: no `'` in front of cells "
                                         "that start like a spreadsheet formula (for programs, "
                                         "not spreadsheets)")
    explain: int = Field(0, ge=0, le=10, description="add each row's N strongest reasons (SHAP) as "
                                                     "columns prediction_reason_1..N (files of up to "
                                                     "100,000 rows)")


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("predict", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody, 503: ErrorBody})
    schema, settings, log = services.params.schema, services.settings, services.predictions
    names = schema.feature_names
    request_model = bp.request_model = predict_request_model(schema, settings.max_records)

    @bp.post("/predict", permission="predict", audited=False, responses={200: PredictResponse})
    def predict(body: request_model, query: PredictQuery):
        """Score 1 to 10,000 records with the champion. `explain=true` adds each record's feature
        contributions towards the class it was given (SHAP, from the serving version's own model;
        they add up to its output for that class) and the five strongest in words."""
        served = services.champion.get()  # one model for the whole request
        scored = score_records(services, served, body.records)
        answer = scored.answer
        if query.explain:
            answer["explained_by"] = explain(served, scored.columns, scored.outputs,
                                             answer["predictions"])
        return jsonify(answer)

    def explain(served, columns: dict, outputs: dict, predictions: list[dict]) -> dict:
        import pandas as pd

        from ml.explanations import reasons

        explainer = served.explainer(lambda: read_split(settings.project_dir, "train").sample(
            n=100, replace=True, random_state=0))
        frame = pd.DataFrame({name: columns[name] for name in names})
        index = {c: i for i, c in enumerate(served.classes)}
        given = np.array([index[label] for label in outputs["label"].tolist()])
        explained = explainer.explain(frame, given)
        words = reasons(explained, frame, schema, outputs["label_text"].tolist(), top=5)
        for i, prediction in enumerate(predictions):
            prediction["explanation"] = {
                "explained_class": prediction["label"], "output": explained.output,
                "base_value": float(explained.base_values[i]), "value": float(explained.outputs[i]),
                "contributions": dict(zip(names, explained.contributions[i].tolist(), strict=True)),
                "reasons": words[i]}
        return {"name": served.name, "version": served.version, "method": explainer.method}

    @bp.post("/predict/batch", permission="predict", audited=False,
             responses={200: {"content": {"text/csv": {}, "application/json": {}}}, 413: ErrorBody})
    def predict_batch(form: BatchForm, query: BatchQuery):
        """Score a CSV (up to 1,000,000 rows): the input columns as they came, plus the predictions.

        Columns other than the features are passed through untouched, except that a text cell
        starting like a spreadsheet formula (`=`, `+`, `-`, `@`, tab, CR; not a number such as
        `-2.5`) gets a leading `'`; `raw=true` leaves every cell as it came. A 422 lists every
        problem of the file, and then nothing is logged.
        `Accept: application/json` returns the same as JSON records (never altered).
        """
        upload = request.files.get("file")
        if upload is None or not getattr(upload, "filename", None):
            raise invalid([{"field": "file", "problem": "no file uploaded (multipart field `file`)"}])
        served = services.champion.get()  # one model for the whole request
        as_json = request.accept_mimetypes.best == "application/json"
        scored = batch_scoring.score_upload(upload.stream, served, log, services.metrics,
                                            max_rows=settings.max_batch_rows,
                                            onnx_max_rows=settings.onnx_max_rows,
                                            as_json=as_json, raw=query.raw, explain=query.explain)
        services.shadow.submit_batch(scored.request_id, served.version, scored.logged)
        headers = {"X-Request-Id": scored.request_id, "X-Model-Version": served.version,
                   "X-Served-By": scored.served_by, "Content-Length": str(scored.size)}
        if not as_json:
            headers["Content-Disposition"] = f'attachment; filename="scored-{scored.request_id}.csv"'
        return Response(wrap_file(request.environ, scored.body, SEND_BYTES), headers=headers,
                        mimetype="application/json" if as_json else "text/csv",
                        direct_passthrough=True)

    return bp
