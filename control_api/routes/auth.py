"""Signing in and out, and who am I."""

from __future__ import annotations

from flask import g, request
from flask_openapi3 import Tag

from control_api.errors import APIError
from control_api.identity import bodies
from control_api.identity.permissions import PUBLIC, SIGNED_IN
from control_api.identity.routing import SecuredBlueprint
from control_api.identity.store import IdentityError, present_user
from control_api.models import ErrorBody

TAG = Tag(name="auth", description="Sign in for a session token, sign out, who am I")


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("auth", __name__, abp_tags=[TAG], abp_responses={401: ErrorBody, 422: ErrorBody})
    settings, limits = services.settings, services.login_limits

    @bp.post("/auth/login", permission=PUBLIC, responses={200: bodies.LoginOut, 403: ErrorBody,
                                                          429: ErrorBody})
    def login(body: bodies.LoginBody):
        """Exchange a username and password for a session token (`Authorization: Bearer <token>`).

        Failed attempts are limited per username and per client address: past the limit, 429
        with `retry_after` seconds (also in `Retry-After`), whatever the password.
        """
        username, address = body.username.strip().lower(), request.remote_addr or ""
        g.audit_actor, g.audit_target = username[:64], f"user:{username[:64]}"
        wait = limits.wait_seconds(username, address)
        if wait:
            raise APIError(429, f"too many failed sign-ins; try again in {wait} s",
                           [{"field": "username", "problem": "locked for now"}],
                           headers={"Retry-After": str(wait)}, retry_after=wait)
        try:
            signed_in = services.identities.sign_in(username, body.password, settings.session_hours)
        except IdentityError as error:
            raise APIError(error.status, error.message,
                           [{"field": error.field, "problem": "disabled"}]) from None
        if signed_in is None:
            limits.failed(username, address)
            raise APIError(401, "wrong username or password",
                           [{"field": "password", "problem": "does not match this username"}])
        token, user = signed_in
        identity = services.identities.lookup(token)
        g.identity = identity
        return {"token": token, "expires_at": identity.expires_at, "user": present_user(user),
                "permissions": sorted(identity.permissions)}

    @bp.post("/auth/logout", permission=SIGNED_IN, responses={200: bodies.LogoutOut, 409: ErrorBody})
    def logout():
        """End the session this request was made with; the token is refused from the next request."""
        identity = g.identity
        if identity.auth != "session":
            raise APIError(409, "only a session can sign out; revoke an API token instead",
                           [{"field": "Authorization", "problem": f"this is a {identity.auth}"}])
        services.identities.sign_out(identity.credential)
        services.resolver.forget()
        return {"signed_out": True}

    @bp.get("/me", permission=SIGNED_IN, responses={200: bodies.MeOut})
    def me():
        """Who you are, your role and every permission it gives (the console renders from this)."""
        identity = g.identity
        return {"username": identity.name, "display_name": identity.display_name, "role": identity.role,
                "kind": identity.kind, "auth": identity.auth,
                "permissions": sorted(identity.permissions), "expires_at": identity.expires_at}

    return bp
