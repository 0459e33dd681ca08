"""The audit trail (admin): who did what, when, from where, and whether the chain is intact."""

from __future__ import annotations

from flask_openapi3 import Tag

from control_api.identity import bodies
from control_api.identity.routing import SecuredBlueprint
from control_api.models import ErrorBody

TAG = Tag(name="audit", description="The append-only, hash-chained audit trail (admin)")


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("audit", __name__, abp_tags=[TAG],
                          abp_responses={401: ErrorBody, 403: ErrorBody, 422: ErrorBody})

    @bp.get("/audit", permission="audit:read", responses={200: bodies.AuditPage})
    def list_events(query: bodies.AuditQuery):
        """Events, newest first, filtered by actor, action, target (contains) and time range."""
        items, total = services.audit.query(actor=query.actor, action=query.action, target=query.target,
                                            since=query.since, until=query.until, limit=query.limit,
                                            offset=query.offset)
        return {"items": items, "total": total, "limit": query.limit, "offset": query.offset}

    @bp.get("/audit/verify", permission="audit:read", responses={200: bodies.AuditVerifyOut})
    def verify():
        """Recompute the hash chain: intact, or the first row that was edited, removed or forged."""
        return services.audit.verify()

    return bp
