"""GET /metrics: the HTTP request metrics, ours (monitoring.metrics), and the metrics of durable
state (control_api.state_metrics).

The request metrics have prometheus-flask-exporter's names and labels
(`flask_http_request_duration_seconds` by method, url_rule and status; `flask_http_request_total`
and `flask_http_request_exceptions_total` by method and status) but are counted here, by hooks a
tenth of the exporter's cost and by the prediction fast path, which bypasses Flask; the exporter
serves /metrics.

Under gunicorn (PROMETHEUS_MULTIPROC_DIR) each scrape builds a fresh registry from the workers'
value files; the exporter's own `generate_metrics` would leave a custom collector out, so ours adds
the state collector to that registry.
"""

from __future__ import annotations

import dataclasses
import os
import time

from flask import Flask, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

from control_api.state_metrics import StateCollector
from monitoring import metrics as service_metrics
from monitoring.reports import ReportStore


def _multiprocess_exporter(app: Flask, state: StateCollector):
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    class Exporter(GunicornInternalPrometheusMetrics):
        def generate_metrics(self, accept_header=None, names=None):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            registry.register(state)
            if names:
                registry = registry.restricted_registry(names)
            encoder, content_type = choose_encoder(accept_header)
            return encoder(registry).decode("utf-8"), content_type

    return Exporter(app, export_defaults=False)


@dataclasses.dataclass
class HttpMetrics:
    duration: Histogram
    total: Counter
    exceptions: Counter

    def observe(self, method: str, rule: str, status: int, seconds: float) -> None:
        self.duration.labels(method, rule, str(status)).observe(seconds)
        self.total.labels(method, str(status)).inc()


def http_metrics(registry: CollectorRegistry | None = None) -> HttpMetrics:
    registry = REGISTRY if registry is None else registry
    by = ("method", "status")
    return HttpMetrics(
        duration=Histogram("flask_http_request_duration_seconds", "Flask HTTP request duration in seconds",
                           ("method", "url_rule", "status"), registry=registry),
        total=Counter("flask_http_request_total", "Total number of HTTP requests", by, registry=registry),
        exceptions=Counter("flask_http_request_exceptions_total",
                           "Total number of HTTP requests which resulted in an exception", by,
                           registry=registry))


def _count_requests(app: Flask, http: HttpMetrics) -> None:
    @app.before_request
    def started():
        if request.path != "/metrics":  # scrapes are not counted (as the exporter did)
            g.metrics_started = time.perf_counter()

    @app.after_request
    def answered(response):
        started_at = g.get("metrics_started")
        if started_at is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "None"
            http.observe(request.method, rule, response.status_code, time.perf_counter() - started_at)
        return response

    @app.teardown_request
    def failed(error):
        if error is not None and request.path != "/metrics":  # no error handler made a response
            http.exceptions.labels(request.method, "500").inc()


def register(app: Flask, services) -> tuple[service_metrics.ServiceMetrics, HttpMetrics]:
    settings = services.settings
    state = StateCollector(services.engine, ReportStore(settings.reports_dir, settings.reports_keep_html),
                           services.params.registry.model_name, settings.metrics_cache_seconds,
                           services.params.monitoring.performance_floor)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not settings.testing:
        exporter = _multiprocess_exporter(app, state)
        ours, http = service_metrics.build(), http_metrics()
    else:
        from prometheus_flask_exporter import PrometheusMetrics

        registry = CollectorRegistry()  # a fresh one per app: tests build many apps
        registry.register(state)
        exporter = PrometheusMetrics(app, registry=registry, export_defaults=False)
        ours, http = service_metrics.build(registry), http_metrics(registry)
    exporter.info("opcon_api_info", "Operator Console control API", version="1")
    _count_requests(app, http)
    return ours, http
