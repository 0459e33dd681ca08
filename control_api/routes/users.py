"""Accounts (admin): list, create, change role, disable, reset a password."""

from __future__ import annotations

from flask import g, jsonify
from flask_openapi3 import Tag

from control_api.errors import APIError
from control_api.identity import bodies
from control_api.identity.routing import SecuredBlueprint
from control_api.identity.store import IdentityError, present_user
from control_api.models import ErrorBody

TAG = Tag(name="users", description="Accounts and their roles (admin)")


def refused(error: IdentityError) -> APIError:
    return APIError(error.status, error.message, [{"field": error.field, "problem": error.message}])


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("users", __name__, abp_tags=[TAG],
                          abp_responses={401: ErrorBody, 403: ErrorBody, 422: ErrorBody})
    identities = services.identities

    @bp.get("/users", permission="users:manage", responses={200: bodies.UserList})
    def list_users():
        """Every account, people and service accounts."""
        return {"items": [present_user(u) for u in identities.users()]}

    @bp.post("/users", permission="users:manage", responses={201: bodies.UserOut, 409: ErrorBody})
    def create_user(body: bodies.UserCreate):
        """Create a person (signs in with a password) or a service account (API tokens only)."""
        g.audit_target = f"user:{body.username}"
        try:
            user = identities.create_user(body.username, body.role, display_name=body.display_name,
                                          password=body.password, kind=body.kind,
                                          created_by=g.identity.name)
        except IdentityError as error:
            raise refused(error) from None
        return jsonify(present_user(user)), 201

    @bp.patch("/users/<username>", permission="users:manage",
              responses={200: bodies.UserOut, 404: ErrorBody, 409: ErrorBody})
    def change_user(path: bodies.UserPath, body: bodies.UserChange):
        """Change a display name or role, disable or enable, or set a new password. A new role, a
        disabled account or a new password ends the user's sessions at once."""
        g.audit_target = f"user:{path.username}"
        try:
            user, revoked = identities.update_user(path.username, display_name=body.display_name,
                                                   role=body.role, disabled=body.disabled,
                                                   password=body.password)
        except IdentityError as error:
            raise refused(error) from None
        if revoked:
            services.resolver.forget()
        return present_user(user)

    return bp
