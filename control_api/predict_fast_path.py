"""POST /api/v1/predict without Flask's request machinery, for the request that is plainly in order.

Flask, flask-openapi3 and werkzeug cost a single-row prediction several times the model call
(bench/serve.py). This WSGI middleware answers a prediction that needs nothing of them: a JSON
body within the upload limit, no query string, a bearer credential whose role may predict, records
the route's own request model accepts, a champion loaded (none still loading). It checks and
scores with the same objects the route uses (the resolver, the permission table, the model,
control_api.scoring) and counts the request in the same HTTP metrics. Any other request, or one
that fails any of those checks, goes to the Flask app untouched (its body put back), which answers
it as the OpenAPI spec says: refusals, 422s, `explain=true`. The two answer a request alike
(tests/test_predict_fast_path.py).
"""

from __future__ import annotations

import io
import logging
import time
import uuid

import orjson

from control_api.identity import permissions
from control_api.identity.routing import PREFIX, REQUEST_ID
from control_api.scoring import score_records
from ml import config as ml_config

log = logging.getLogger(__name__)

PATH = f"{PREFIX}/predict"


class PredictFastPath:
    def __init__(self, app, services, route, http_metrics, max_bytes: int):
        """`route`: the predict blueprint, whose request model and permission are the rule."""
        self.app, self.services, self.request_model = app, services, route.request_model
        self.permission = route.rules["predict.predict"].permission
        self.http, self.max_bytes = http_metrics, max_bytes

    def __call__(self, environ, start_response):
        if (environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != PATH
                or environ.get("QUERY_STRING") or environ.get("SCRIPT_NAME")):
            return self.app(environ, start_response)
        started = time.perf_counter()
        data = self._body(environ)
        if data is None:
            return self.app(environ, start_response)
        bound = ml_config.bind(self.services.settings.ml)
        try:
            answered = self._answer(environ, data)
        finally:
            ml_config.unbind(bound)
        if answered is None:
            environ["wsgi.input"] = io.BytesIO(data)
            return self.app(environ, start_response)
        status, body = answered
        supplied = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex
        start_response("200 OK" if status == 200 else "500 INTERNAL SERVER ERROR",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                        ("X-Request-ID", request_id)])
        self.http.observe("POST", PATH, status, time.perf_counter() - started)
        return [body]

    def _body(self, environ) -> bytes | None:
        """The whole body of a JSON request of a stated size within the limit (None: not that)."""
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
            return None
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit() or not 0 < int(length) <= self.max_bytes \
                or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        return environ["wsgi.input"].read(int(length))

    def _answer(self, environ, data: bytes) -> tuple[int, bytes] | None:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            identity = self.services.resolver.resolve(token.strip())
            if identity is None or not permissions.allows(identity.role, self.permission):
                return None
            body = orjson.loads(data)
            if not isinstance(body, dict):
                return None
            records = self.request_model.model_validate(body).records
        except Exception:  # bad JSON, a record refused, the database behind the credentials down:
            return None  # the app answers with the error the spec gives
        served = self.services.champion.ready()  # the route waits for a model still loading
        if served is None:
            return None
        try:
            scored = score_records(self.services, served, records)
        except Exception:  # as the app's handler of the unexpected answers
            log.exception("unhandled error")
            return 500, orjson.dumps({"error": "internal error", "details": []})
        return 200, orjson.dumps(scored.answer)
