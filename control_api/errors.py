"""Every error is JSON: {"error": what went wrong, "details": [{"field", "problem", ...}]}."""

from __future__ import annotations

import math

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from control_api.redaction import is_secret, short


class APIError(Exception):
    def __init__(self, status: int, error: str, details: list[dict] | None = None,
                 headers: dict | None = None, **extra):
        super().__init__(error)
        self.status, self.error, self.details, self.extra = status, error, details or [], extra
        self.headers = headers or {}

    def response(self):
        body = {"error": self.error, "details": self.details, **self.extra}
        return jsonify(body), self.status, self.headers


def invalid(details: list[dict], error: str = "invalid input") -> APIError:
    return APIError(422, error, details)


def pydantic_details(errors: list[dict], prefix: str = "") -> list[dict]:
    """pydantic's errors as {"field": "records[0].torque", "problem": "..."}."""
    details = []
    for item in errors:
        field = prefix
        for part in item["loc"]:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        entry = {"field": field or "body", "problem": item["msg"]}
        value = item.get("input")
        if "input" in item and not isinstance(value, dict | list) and not is_secret(field):
            # NaN and infinities are not JSON: quote them
            value = str(value) if isinstance(value, float) and not math.isfinite(value) else value
            entry["value"] = short(value)
        details.append(entry)
    return details


def register(app: Flask) -> None:
    app.register_error_handler(APIError, lambda error: error.response())

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        messages = {413: f"upload too large: the limit is {app.config.get('MAX_CONTENT_LENGTH')} bytes"}
        body = {"error": messages.get(error.code, error.description or error.name), "details": []}
        return jsonify(body), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return jsonify({"error": "internal error", "details": []}), 500
