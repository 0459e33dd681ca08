"""GET /metrics: prometheus-flask-exporter's request metrics plus ours (monitoring.metrics), and the
metrics of durable state (control_api.state_metrics).

Under gunicorn (PROMETHEUS_MULTIPROC_DIR) each scrape builds a fresh registry from the workers'
value files; the exporter's own `generate_metrics` would leave a custom collector out, so ours adds
the state collector to that registry.
"""

from __future__ import annotations

import os

from flask import Flask
from prometheus_client import CollectorRegistry
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

    return Exporter(app, group_by="url_rule")


def register(app: Flask, services) -> service_metrics.ServiceMetrics:
    settings = services.settings
    state = StateCollector(services.engine, ReportStore(settings.reports_dir, settings.reports_keep_html),
                           services.params.registry.model_name, settings.metrics_cache_seconds,
                           services.params.monitoring.performance_floor)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not settings.testing:
        exporter = _multiprocess_exporter(app, state)
        ours = service_metrics.build()
    else:
        from prometheus_flask_exporter import PrometheusMetrics

        registry = CollectorRegistry()  # a fresh one per app: tests build many apps
        registry.register(state)
        exporter = PrometheusMetrics(app, registry=registry, group_by="url_rule")
        ours = service_metrics.build(registry)
    exporter.info("opcon_api_info", "Operator Console control API", version="1")
    return ours
