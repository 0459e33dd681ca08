"""The feature schema, so clients can build forms."""

from __future__ import annotations

from flask_openapi3 import Tag

from control_api.identity.routing import SecuredBlueprint
from control_api.models import ErrorBody, SchemaOut

TAG = Tag(name="schema", description="What a record must contain")


def describe(schema) -> dict:
    target = schema.target
    return {
        "features": [f.model_dump(exclude_none=True) for f in schema.features],
        "target": {"name": target.name, "classes": target.classes, "positive": target.positive,
                   "labels": {str(k): v for k, v in target.labels.items()}},
    }


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("schema", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    body = describe(services.params.schema)

    @bp.get("/schema", permission="read", responses={200: SchemaOut})
    def schema():
        """Features with type, unit, allowed range or categories and a typical value; the target."""
        return body

    return bp
