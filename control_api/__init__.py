"""The control API: `create_app(config)` builds a Flask app; nothing happens at import.

    gunicorn -c control_api/gunicorn_conf.py 'control_api:create_app()'
"""

from __future__ import annotations

from datetime import date, datetime

from flask import redirect
from flask.json.provider import DefaultJSONProvider


class IsoJSONProvider(DefaultJSONProvider):
    """Dates as ISO 8601 (what the OpenAPI spec says), not Flask's HTTP-date default."""

    sort_keys = False

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:  # absurdly nested JSON: a bad request, not a crash
            raise ValueError("JSON nested too deeply") from None

    @staticmethod
    def default(value):
        if isinstance(value, date | datetime):
            return value.isoformat()
        return DefaultJSONProvider.default(value)


def create_app(config: dict | None = None):
    """config: Settings overrides (state_dir, project_dir, api_token, ...) and `testing`."""
    from flask_openapi3 import Info, OpenAPI

    from control_api import errors, metrics
    from control_api import settings as settings_module
    from control_api.errors import pydantic_details
    from control_api.identity import routing
    from control_api.predict_fast_path import PredictFastPath
    from control_api.routes import (
        approvals,
        audit,
        auth,
        comparison,
        datasets,
        emissions,
        feedback,
        health,
        jobs,
        models,
        predict,
        predictions,
        quality,
        reports,
        schema,
        tokens,
        users,
    )
    from control_api.services import Services
    from ml import config as ml_config

    settings = settings_module.from_env(**dict(config or {}))
    with ml_config.bound(settings.ml):
        services = Services.build(settings)

    def validation_error(error):
        from flask import make_response

        return make_response(errors.error_response(422, "invalid input", pydantic_details(error.errors())))

    app = OpenAPI(
        __name__,
        info=Info(title="Operator Console control API", version="1"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        validation_error_callback=validation_error,
        doc_prefix="/docs", doc_url="/openapi.json",
    )
    app.json = IsoJSONProvider(app)
    _bind_ml_settings(app, settings.ml)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_upload_bytes, TESTING=settings.testing)
    app.extensions["opcon"] = services
    errors.register(app)
    services.metrics, http_metrics = metrics.register(app, services)
    services.shadow.metrics = services.metrics
    blueprints = [module.blueprint(services) for module in (
        health, auth, users, tokens, audit, schema, predict, predictions, comparison, models, approvals,
        datasets, feedback, jobs, reports, emissions, quality)]
    for bp in blueprints:
        app.register_api(bp)
    routing.install(app, blueprints, services.resolver, services.audit)
    errors.refuse_bodies_that_are_not_json(app)  # after the credentials are checked
    scoring_route = next(bp for bp in blueprints if bp.name == "predict")
    app.wsgi_app = PredictFastPath(app.wsgi_app, services, scoring_route, http_metrics,
                                   settings.max_upload_bytes)

    @app.get("/openapi.json", doc_ui=False)
    def openapi_json():
        return app.api_doc

    @app.get("/docs", doc_ui=False)
    def docs():
        return redirect("/docs/swagger")

    if not settings.testing:
        ml_config.use(settings.ml)  # the app runs for real: its process, threads included, is its own
        services.champion.start()
        services.shadow.start()
    return app


def _bind_ml_settings(app, ml_settings) -> None:
    """Each request sees this app's ml settings (MLflow store, DVC project), whatever other app
    the process built (tests build several)."""
    from flask import g

    from ml import config as ml_config

    @app.before_request
    def bind_ml_settings():
        g.ml_settings_token = ml_config.bind(ml_settings)

    @app.teardown_request
    def unbind_ml_settings(_error):
        if (token := g.pop("ml_settings_token", None)) is not None:
            ml_config.unbind(token)
