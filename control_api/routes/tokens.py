"""API tokens for scripts (admin): created for a user or a service account, shown once, revocable."""

from __future__ import annotations

from flask import g, jsonify
from flask_openapi3 import Tag

from control_api.identity import bodies
from control_api.identity.routing import SecuredBlueprint
from control_api.identity.store import IdentityError, present_token
from control_api.models import ErrorBody
from control_api.routes.users import refused

TAG = Tag(name="tokens", description="Personal and service API tokens (admin)")


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("tokens", __name__, abp_tags=[TAG],
                          abp_responses={401: ErrorBody, 403: ErrorBody, 422: ErrorBody})
    identities = services.identities

    @bp.get("/tokens", permission="tokens:manage", responses={200: bodies.TokenList})
    def list_tokens(query: bodies.TokenQuery):
        """Tokens, newest first (never the token itself: its prefix, owner, role, expiry, last use)."""
        return {"items": [present_token(t) for t in identities.tokens(query.owner)]}

    @bp.post("/tokens", permission="tokens:manage",
             responses={201: bodies.TokenCreated, 404: ErrorBody, 409: ErrorBody})
    def create_token(body: bodies.TokenCreate):
        """A new token for `owner`, with a role no higher than the owner's. The token is in this
        response only; the API keeps its SHA-256."""
        g.audit_target = f"user:{body.owner}"
        try:
            token, row = identities.create_token(body.owner, body.name, body.role, body.expires_days,
                                                 g.identity.name)
        except IdentityError as error:
            raise refused(error) from None
        g.audit_target = f"token:{row['id']}"
        return jsonify({**present_token(row), "token": token}), 201

    @bp.delete("/tokens/<token_id>", permission="tokens:manage",
               responses={200: bodies.TokenOut, 404: ErrorBody})
    def revoke_token(path: bodies.TokenPath):
        """Revoke a token: refused from the next request, in every API process."""
        g.audit_target = f"token:{path.token_id}"
        try:
            row = identities.revoke_token(path.token_id)
        except IdentityError as error:
            raise refused(error) from None
        services.resolver.forget()
        return present_token(row)

    return bp
