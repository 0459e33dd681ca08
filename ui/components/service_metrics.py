"""The API's own /metrics read without Prometheus: counters parsed from the exposition text, and rates
and latency percentiles between two readings (or since the API started, from one).

Counters only grow while the API runs; a smaller value means it restarted, and older readings no
longer compare with newer ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

PREDICT_RULE = "/api/v1/predict"  # the single-record endpoint: its latency is the serving goal's
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


@dataclasses.dataclass
class Reading:
    at: float  # Unix time of the reading
    requests: float = 0.0
    errors: float = 0.0  # answered 5xx
    latency: dict[float, float] = dataclasses.field(default_factory=dict)  # le → requests (cumulative)

    def minus(self, earlier: Reading) -> Reading:
        return Reading(at=self.at - earlier.at, requests=self.requests - earlier.requests,
                       errors=self.errors - earlier.errors,
                       latency={le: n - earlier.latency.get(le, 0.0) for le, n in self.latency.items()})

    def restarted_since(self, earlier: Reading) -> bool:
        return self.requests < earlier.requests


def utc(seconds):
    """Unix time(s) as UTC timestamps, to the millisecond (plotly refuses nanoseconds)."""
    stamps = pd.to_datetime(seconds, unit="s", utc=True)
    return stamps.dt.round("ms") if isinstance(stamps, pd.Series) else stamps.round("ms")


def parse(text: str, at: float) -> Reading:
    reading = Reading(at=at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "flask_http_request_total":
                reading.requests += sample.value
                if labels.get("status", "").startswith("5"):
                    reading.errors += sample.value
            elif (sample.name == "flask_http_request_duration_seconds_bucket"
                  and labels.get("url_rule") == PREDICT_RULE and labels.get("method") == "POST"):
                bound = float(labels["le"])
                reading.latency[bound] = reading.latency.get(bound, 0.0) + sample.value
    return reading


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile on cumulative buckets: linear within the bucket that holds the
    q-th observation; the highest finite bound when it falls in +Inf."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return None


def percentiles(buckets: dict[float, float]) -> dict[str, float | None]:
    return {name: quantile(q, buckets) for name, q in PERCENTILES.items()}


def keep(readings: list[Reading], new: Reading, seconds: float) -> list[Reading]:
    """The readings of the last `seconds` with the new one; all of them again after a restart."""
    if readings and new.restarted_since(readings[-1]):
        readings = []
    return [r for r in readings if new.at - r.at <= seconds] + [new]


def intervals(readings: list[Reading]) -> list[dict]:
    """Per pair of successive readings: when, requests per second, share of errors."""
    rows = []
    for earlier, later in itertools.pairwise(readings):
        change = later.minus(earlier)
        if change.at <= 0:
            continue
        rows.append({"time": later.at, "requests_per_s": change.requests / change.at,
                     "error_ratio": change.errors / change.requests if change.requests else None,
                     **percentiles(change.latency)})
    return rows
