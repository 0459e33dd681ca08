"""Bearer-token authentication for everything under /api/v1."""

from __future__ import annotations

import hmac

from flask import Flask, request

from control_api.errors import APIError

PROTECTED_PREFIX = "/api/v1/"


def register(app: Flask, token: str) -> None:
    expected = token.encode()

    @app.before_request
    def require_token():
        if not request.path.startswith(PROTECTED_PREFIX):
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise APIError(401, "missing or wrong bearer token",
                           [{"field": "Authorization", "problem": "expected `Bearer <token>`"}],
                           headers={"WWW-Authenticate": 'Bearer realm="opcon"'})
        return None
