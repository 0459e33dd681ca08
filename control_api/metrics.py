"""GET /metrics: prometheus-flask-exporter's request metrics plus ours (monitoring.metrics)."""

from __future__ import annotations

import os

from flask import Flask

from monitoring import metrics as service_metrics


def register(app: Flask, testing: bool) -> service_metrics.ServiceMetrics:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not testing:
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        exporter = GunicornInternalPrometheusMetrics(app, group_by="url_rule")
        ours = service_metrics.build()
    else:
        from prometheus_client import CollectorRegistry
        from prometheus_flask_exporter import PrometheusMetrics

        registry = CollectorRegistry()  # a fresh one per app: tests build many apps
        exporter = PrometheusMetrics(app, registry=registry, group_by="url_rule")
        ours = service_metrics.build(registry)
    exporter.info("opcon_api_info", "Operator Console control API", version="1")
    return ours
