"""Prometheus metrics of the service beyond the per-request ones of prometheus-flask-exporter.

Built per app against a registry: the process-wide one under gunicorn (multiprocess mode, one
value file per worker, summed at scrape), a fresh one per app in tests.
"""

from __future__ import annotations

import collections
import dataclasses

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

SMALL = 64  # rows counted in Python
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclasses.dataclass
class ServiceMetrics:
    predictions: Counter
    prediction_latency: Histogram
    shadow_rows: Counter
    shadow_failures: Counter
    shadow_cpu: Counter

    def observe(self, version: str, served_by: str, labels, seconds: float) -> None:
        self.prediction_latency.labels(served_by=served_by).observe(seconds)
        values, counts = _count(labels)
        for label, count in zip(values, counts, strict=True):
            self.predictions.labels(model_version=version, served_by=served_by,
                                    label=str(label)).inc(count)


def _count(labels) -> tuple[list, list]:
    """Each label and how often it occurs: numpy for batches, plain Python for a few rows (np.unique
    on text costs a single-row prediction more than the model call)."""
    import numpy as np

    if len(labels) <= SMALL:
        values = labels.tolist() if hasattr(labels, "tolist") else labels
        counted = collections.Counter(map(str, values))
        return list(counted), list(counted.values())
    return np.unique(np.asarray(labels, dtype=str), return_counts=True)


def build(registry: CollectorRegistry | None = None) -> ServiceMetrics:
    registry = REGISTRY if registry is None else registry
    return ServiceMetrics(
        predictions=Counter("opcon_predictions", "Rows predicted, by model version, path and label",
                            ["model_version", "served_by", "label"], registry=registry),
        prediction_latency=Histogram("opcon_prediction_latency_seconds",
                                     "Model time per predict request (validation excluded)",
                                     ["served_by"], buckets=LATENCY_BUCKETS, registry=registry),
        shadow_rows=Counter("opcon_shadow_rows", "Live rows the challenger also scored (not served)",
                            ["model_version"], registry=registry),
        shadow_failures=Counter("opcon_shadow_failures", "Requests the challenger failed to score "
                                "(the served answer is unaffected)", registry=registry),
        shadow_cpu=Counter("opcon_shadow_cpu_seconds", "CPU time of the thread that scores live "
                           "requests with the challenger and logs them", registry=registry),
    )
