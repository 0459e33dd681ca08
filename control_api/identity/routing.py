"""Routes that name the permission they need, and the request hooks that enforce it and audit it.

    bp = SecuredBlueprint("models", __name__, abp_tags=[TAG])

    @bp.post("/models/<int:version>/promote", permission="models:promote", responses=...)
    def promote(...): ...

Every operation under /api/v1 carries its permission in the OpenAPI spec (`x-permission`); the
app refuses to start when one has none. Every request that is not a GET is written to the audit
trail, allowed or refused, except where a route says `audited=False` (scoring: each prediction is
in the prediction log instead; refusals are still audited).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import typing
import uuid

import sqlalchemy as sa
from flask import Flask, g, request
from flask_openapi3 import APIBlueprint

from control_api.errors import APIError
from control_api.identity import permissions
from control_api.identity.store import Identity
from control_api.models import ErrorBody
from control_api.parameters import Parameters

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
SECURITY = [{"bearer": []}]
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class RouteRule:
    permission: str
    audited: bool = True


class SecuredBlueprint(APIBlueprint):
    def __init__(self, name: str, import_name: str, **kwargs):
        kwargs.setdefault("url_prefix", PREFIX)
        # each route carries its own security: flask-openapi3 would add a blueprint's to every
        # route, the open sign-in route included
        kwargs["abp_security"] = []
        kwargs["abp_responses"] = {401: ErrorBody, 403: ErrorBody, **(kwargs.get("abp_responses") or {})}
        super().__init__(name, import_name, **kwargs)
        self.rules: dict[str, RouteRule] = {}

    def _secured(self, register, rule: str, permission: str, audited: bool, options: dict):
        if permission not in permissions.ALL | {permissions.PUBLIC, permissions.SIGNED_IN}:
            raise ValueError(f"unknown permission `{permission}` on {rule}")
        extensions = {**(options.pop("openapi_extensions", None) or {}), "x-permission": permission}
        options.setdefault("security", [] if permission == permissions.PUBLIC else SECURITY)

        def decorator(func):
            register(rule, openapi_extensions=extensions, **options)(func)
            _parameters_are_cached(rule, func)
            self.rules[f"{self.name}.{func.__name__}"] = RouteRule(permission, audited)
            return func

        return decorator

    def get(self, rule: str, *, permission: str, **options):
        return self._secured(super().get, rule, permission, False, options)

    def post(self, rule: str, *, permission: str, audited: bool = True, **options):
        return self._secured(super().post, rule, permission, audited, options)

    def patch(self, rule: str, *, permission: str, audited: bool = True, **options):
        return self._secured(super().patch, rule, permission, audited, options)

    def delete(self, rule: str, *, permission: str, audited: bool = True, **options):
        return self._secured(super().delete, rule, permission, audited, options)


def _parameters_are_cached(rule: str, func) -> None:
    """A route's query, form and header models are Parameters (their JSON schema is read per request)."""
    hints = typing.get_type_hints(func)
    for part in ("query", "form", "header"):
        model = hints.get(part)
        if model is not None and not issubclass(model, Parameters):
            raise TypeError(f"{rule}: the {part} model {model.__name__} must derive from "
                            "control_api.parameters.Parameters")


def outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return {401: "denied", 403: "forbidden", 429: "locked"}.get(
        status, "rejected" if status < 500 else "error")


def _credentials() -> str:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def _unauthenticated(permission: str | None) -> APIError:
    return APIError(401, "missing, wrong, expired or revoked credentials",
                    [{"field": "Authorization", "problem": "expected `Bearer <token>`: a session "
                      "token (POST /api/v1/auth/login) or an API token"}],
                    headers={"WWW-Authenticate": 'Bearer realm="opcon"'}, permission=permission)


def _forbidden(identity: Identity, permission: str) -> APIError:
    return APIError(403, f"role `{identity.role}` may not do this: it needs `{permission}`",
                    [{"field": "Authorization", "problem": f"`{identity.name}` lacks `{permission}`"}],
                    permission=permission, role=identity.role)


def _request_params() -> dict:
    params = dict(request.view_args or {})
    params.update(request.args.to_dict())
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
    elif request.content_length:
        params["body"] = f"({request.mimetype or 'data'}, {request.content_length} bytes)"
    return params


def install(app: Flask, blueprints: list, resolver, audit) -> None:
    rules: dict[str, RouteRule] = {}
    for bp in blueprints:
        rules.update(getattr(bp, "rules", {}))
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PREFIX + "/") and rule.endpoint not in rules:
            raise RuntimeError(f"route {rule.rule} ({rule.endpoint}) declares no permission")

    @app.before_request
    def authorise():
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex
        if not request.path.startswith(PREFIX + "/"):
            return None
        route = rules.get(request.endpoint)
        g.route = route
        if route is not None and route.permission == permissions.PUBLIC:
            return None
        identity = resolver.resolve(_credentials())
        g.identity = identity
        needed = route.permission if route else None
        if identity is None:
            raise _unauthenticated(needed)
        if needed is not None and not permissions.allows(identity.role, needed):
            raise _forbidden(identity, needed)
        return None

    @app.after_request
    def audit_request(response):
        response.headers.setdefault("X-Request-ID", g.get("request_id", ""))
        if request.method in ("GET", "HEAD", "OPTIONS") or not request.path.startswith(PREFIX + "/"):
            return response
        route = g.get("route")
        if route is not None and not route.audited and response.status_code not in (401, 403):
            return response
        identity: Identity | None = g.get("identity")
        params = _request_params()
        actor = identity.name if identity else str(g.get("audit_actor") or "anonymous")
        action = request.endpoint or f"{request.method} (no such route)"
        try:
            audit.record(actor=actor, role=identity.role if identity else None, action=action,
                         target=g.get("audit_target") or request.path,
                         outcome=outcome(response.status_code), status=response.status_code,
                         request_id=response.headers["X-Request-ID"], client=request.remote_addr,
                         params=params)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
            # the database went away: the answer stands (a 503 when the route needed the database,
            # so nothing changed), and this log line is the only trace of the request
            level = logging.WARNING if response.status_code >= 500 else logging.ERROR
            log.log(level, "audit event not written (the database is unavailable: %s): %s by %s, "
                    "status %d, request %s", type(error.orig).__name__, action, actor,
                    response.status_code, response.headers["X-Request-ID"])
        return response
