"""Every error is JSON: {"error": what went wrong, "details": [{"field", "problem", ...}]}.

An error repeats at most `redaction.SHORT` characters of anything a client sent (a bad value, a
field or column name), and never the value of a secret field.
"""

from __future__ import annotations

import inspect
import math

import sqlalchemy as sa
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from control_api.redaction import is_secret, short


class APIError(Exception):
    def __init__(self, status: int, error: str, details: list[dict] | None = None,
                 headers: dict | None = None, **extra):
        super().__init__(error)
        self.status, self.error, self.details, self.extra = status, error, details or [], extra
        self.headers = headers or {}

    def response(self):
        return error_response(self.status, self.error, self.details, self.headers, **self.extra)


def invalid(details: list[dict], error: str = "invalid input") -> APIError:
    return APIError(422, error, details)


def bounded(detail: dict) -> dict:
    """One problem as an error body shows it: texts cut short, a secret field's value left out."""
    field = str(detail.get("field") or "")
    shown = {key: short(value) for key, value in detail.items() if key != "value"}
    if "value" in detail and not is_secret(field):
        value = detail["value"]
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # NaN and infinities are not JSON: quote them
        if isinstance(value, str | int | float | bool) or value is None:
            shown["value"] = short(value)
    return shown


def error_response(status: int, error: str, details: list[dict] | None = None,
                   headers: dict | None = None, **extra):
    body = {"error": short(error), "details": [bounded(d) for d in details or []], **extra}
    return jsonify(body), status, headers or {}


def pydantic_details(errors: list[dict], prefix: str = "") -> list[dict]:
    """pydantic's errors as {"field": "records[0].torque", "problem": "...", "value": ...}."""
    details = []
    for item in errors:
        field = prefix
        for part in item["loc"]:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        entry = {"field": field or "body", "problem": item["msg"]}
        if "input" in item and not isinstance(item["input"], dict | list):
            entry["value"] = item["input"]
        details.append(entry)
    return details


JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
              type(None): "null"}


def _not_a_json_object() -> APIError | None:
    """Why this request's body is not the JSON object the route takes (None: it is one)."""
    if isinstance(request.get_json(silent=True), dict):  # parsed once, kept for the route
        return None
    error, problem = "request body is not valid JSON", None
    if not request.is_json:
        problem = f"Content-Type is `{request.mimetype or 'missing'}`: send a JSON object as application/json"
    elif not (data := request.get_data(cache=True)).strip():
        problem = "the body is empty: send a JSON object"
    else:
        try:
            parsed = request.json_module.loads(data)
        except UnicodeDecodeError:
            problem = "not UTF-8 text"
        except ValueError as parse_error:  # the message says where, never what
            problem = f"not valid JSON: {getattr(parse_error, 'msg', parse_error)}" + (
                f" at line {parse_error.lineno} column {parse_error.colno}"
                if hasattr(parse_error, "lineno") else "")
        else:
            error, problem = "request body must be a JSON object", f"got {JSON_TYPES[type(parsed)]}"
    return APIError(422, error, [{"field": "body", "problem": problem}])


def refuse_bodies_that_are_not_json(app: Flask) -> None:
    """Routes that take a JSON body (a `body` argument) refuse anything but a JSON object, before
    the body is validated against their model. Register after the authentication hook."""
    endpoints = {endpoint for endpoint, view in app.view_functions.items()
                 if "body" in inspect.signature(view).parameters}

    @app.before_request
    def require_a_json_object():
        if request.endpoint in endpoints and (error := _not_a_json_object()) is not None:
            raise error


def register(app: Flask) -> None:
    app.register_error_handler(APIError, lambda error: error.response())

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # werkzeug's own headers stay (Allow on a 405, Retry-After on a 429); its HTML goes
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        details = []
        if error.code == 405:
            allowed = getattr(error, "valid_methods", None) or []
            message = "this method is not allowed here"
            details = [{"field": "method", "problem": f"allowed: {', '.join(allowed)}"}]
        elif error.code == 413:
            message = f"upload too large: the limit is {app.config.get('MAX_CONTENT_LENGTH')} bytes"
        else:
            message = error.description or error.name
        return error_response(error.code or 500, message, details, headers)

    @app.errorhandler(sa.exc.OperationalError)
    @app.errorhandler(sa.exc.InterfaceError)
    def database_unavailable(error: sa.exc.DBAPIError):
        app.logger.warning("database unavailable: %s", type(error.orig).__name__)
        return error_response(503, "the database is unavailable: try again shortly", [],
                              {"Retry-After": "5"}, reason="database unavailable")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return jsonify({"error": "internal error", "details": []}), 500
