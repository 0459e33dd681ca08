"""Ground truth for logged predictions, by request id and row."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask_openapi3 import Tag

from control_api.db import feedback
from control_api.errors import invalid
from control_api.identity.routing import SecuredBlueprint
from control_api.models import ErrorBody, FeedbackBody, FeedbackOut

TAG = Tag(name="feedback", description="The true outcome of predictions")


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("feedback", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    target = services.params.schema.target
    classes = {str(c): c for c in target.classes}

    @bp.post("/feedback", permission="feedback:write", responses={200: FeedbackOut})
    def give_feedback(body: FeedbackBody):
        """Record true labels; a later label for the same row replaces the earlier one."""
        problems = [{"field": f"items[{i}].label", "problem": f"not a class of `{target.name}`; "
                     f"allowed: {', '.join(classes)}", "value": item.label}
                    for i, item in enumerate(body.items) if str(item.label) not in classes]
        logged = services.predictions.logged_rows(item.request_id for item in body.items)
        problems += [{"field": f"items[{i}].request_id", "problem": "no logged prediction with "
                      f"this request id and row {item.row}", "value": item.request_id}
                     for i, item in enumerate(body.items) if item.row >= logged.get(item.request_id, 0)]
        if problems:
            raise invalid(problems)
        stamp = datetime.now(UTC)
        with services.engine.begin() as conn:
            for item in body.items:
                key = (feedback.c.request_id == item.request_id) & (feedback.c.row == item.row)
                conn.execute(feedback.delete().where(key))
                conn.execute(feedback.insert().values(request_id=item.request_id, row=item.row,
                                                      label=classes[str(item.label)], created_at=stamp))
        return {"accepted": len(body.items)}

    return bp


def labels(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(feedback))]
