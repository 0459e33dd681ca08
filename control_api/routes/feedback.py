"""Ground truth for logged predictions, by request id and row."""
# (no `from __future__ import annotations`: flask-openapi3 reads the body model, made per target, at runtime)

from datetime import UTC, datetime

import sqlalchemy as sa
from flask_openapi3 import Tag

from control_api.db import feedback
from control_api.errors import APIError
from control_api.identity.routing import SecuredBlueprint
from control_api.models import ErrorBody, FeedbackOut, feedback_body

TAG = Tag(name="feedback", description="The true outcome of predictions")


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("feedback", __name__, abp_tags=[TAG],
                          abp_responses={401: ErrorBody, 422: ErrorBody})
    body_model = feedback_body(services.params.schema.target)

    @bp.post("/feedback", permission="feedback:write", responses={200: FeedbackOut, 404: ErrorBody})
    def give_feedback(body: body_model):
        """Record true labels; a later label for the same row replaces the earlier one. 404 when an
        item names no logged prediction (unknown request id, or a row past the request's last)."""
        logged = services.predictions.logged_rows(item.request_id for item in body.items)
        unknown = [{"field": f"items[{i}].request_id", "value": item.request_id,
                    "problem": f"no logged prediction with this request id and row {item.row}"}
                   for i, item in enumerate(body.items) if item.row >= logged.get(item.request_id, 0)]
        if unknown:
            raise APIError(404, "no logged prediction for some items; nothing was recorded", unknown)
        stamp = datetime.now(UTC)
        with services.engine.begin() as conn:
            for item in body.items:
                key = (feedback.c.request_id == item.request_id) & (feedback.c.row == item.row)
                conn.execute(feedback.delete().where(key))
                conn.execute(feedback.insert().values(request_id=item.request_id, row=item.row,
                                                      label=item.label, created_at=stamp))
        return {"accepted": len(body.items)}

    return bp


def labels(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(feedback))]
