"""Prometheus' HTTP API (`/api/v1/query`, `/api/v1/query_range`) and the PromQL of the Service page:
the API's request metrics (prometheus-flask-exporter) and its predictions counter, over the last hour."""

from __future__ import annotations

import math

import pandas as pd
import requests

from ui.api_client import QUICK, ApiFailedError, ApiUnavailableError
from ui.components.service_metrics import PERCENTILES, PREDICT_RULE, utc

HOUR = 3600
STEP = 60  # seconds between points of the charts
RATE_WINDOW = "5m"
REQUESTS = "sum(rate(flask_http_request_total[{w}]))"
ERROR_RATIO = ('(sum(rate(flask_http_request_total{{status=~"5.."}}[{w}])) or vector(0))'
               " / sum(rate(flask_http_request_total[{w}]))")
LATENCY = ("histogram_quantile({q}, sum by (le) (rate(flask_http_request_duration_seconds_bucket"
           f'{{{{method="POST", url_rule="{PREDICT_RULE}"}}}}[{{w}}])))')
PREDICTIONS = "sum by (label) (increase(opcon_predictions_total[{w}]))"


class PrometheusClient:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def _get(self, path: str, params: dict) -> list[dict]:
        try:
            response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=QUICK)
        except requests.RequestException:
            raise ApiUnavailableError(f"Prometheus at {self.url} is not reachable") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            raise ApiFailedError(f"Prometheus refused a query: {body.get('error') or response.status_code}",
                                 response.status_code)
        return body["data"]["result"]

    def query(self, promql: str, at: float) -> list[dict]:
        return self._get("query", {"query": promql, "time": at})

    def query_range(self, promql: str, start: float, end: float, step: int = STEP) -> list[dict]:
        return self._get("query_range", {"query": promql, "start": start, "end": end, "step": step})


def number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def scalar(result: list[dict]) -> float | None:
    return number(result[0]["value"][1]) if result else None


def series(result: list[dict]) -> pd.Series:
    """The first series of a range query, indexed by time (UTC)."""
    if not result:
        return pd.Series(dtype="float64")
    times, values = zip(*((t, number(v)) for t, v in result[0]["values"]), strict=True)
    return pd.Series(values, index=utc(list(times)), dtype="float64")


def prometheus_dashboard_parts(client: PrometheusClient, now: float) -> dict:
    """The Dashboard fields Prometheus answers: the hour's totals and its per-minute series."""
    start = now - HOUR
    hour, window = f"{HOUR}s", RATE_WINDOW
    curves = {"requests_per_s": REQUESTS.format(w=window), "error_ratio": ERROR_RATIO.format(w=window),
              **{name: LATENCY.format(q=q, w=window) for name, q in PERCENTILES.items()}}
    over_time = pd.DataFrame({name: series(client.query_range(promql, start, now))
                              for name, promql in curves.items()})
    over_time = over_time.rename_axis("time").reset_index()
    per_minute = client.query_range(PREDICTIONS.format(w=f"{STEP}s"), start, now)
    predictions = pd.DataFrame(
        # each point counts the minute before it: labelled, like the prediction log's, by its start
        [{"minute": utc(t - STEP), "label": s["metric"].get("label", ""),
          "rows": number(v) or 0.0} for s in per_minute for t, v in s["values"]],
        columns=["minute", "label", "rows"])
    return {"request_rate": scalar(client.query(REQUESTS.format(w=hour), now)),
            "error_ratio": scalar(client.query(ERROR_RATIO.format(w=hour), now)),
            "latency": {name: scalar(client.query(LATENCY.format(q=q, w=hour), now))
                        for name, q in PERCENTILES.items()},
            "over_time": over_time, "predictions": predictions}
