"""What training cost: CodeCarbon's row of every training run, with the model version it produced."""

from __future__ import annotations

import math
from datetime import datetime

from flask_openapi3 import Tag

from control_api.identity.routing import SecuredBlueprint
from control_api.models import EmissionsOut, ErrorBody
from ml import emissions, registry

TAG = Tag(name="emissions", description="Energy and CO2 of every training run")


def _number(value, kind=float):
    try:
        number = kind(float(value))
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mode(detail: str) -> str:
    word = (detail or "").split(" ", 1)[0]
    return word if word in ("measured", "estimated") else "unknown"


def _versions_by_run(model_names: set[str]) -> dict[str, str]:
    found = {}
    for name in model_names:
        for version in registry.versions(name):
            found.setdefault(version.run_id, str(version.version))
    return found


def _metrics_by_run(experiment: str, metric: str) -> dict[str, float]:
    client = registry.client()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    runs = client.search_runs([found.experiment_id], max_results=50_000)
    return {r.info.run_id: r.data.metrics[metric] for r in runs if metric in r.data.metrics}


def describe(rows: list[dict], versions: dict[str, str], scores: dict[str, float], metric: str) -> list:
    items = []
    for row in rows:
        run_id = row.get("run_id") or ""
        try:
            stamp = datetime.fromisoformat(row.get("timestamp") or "")
        except ValueError:  # a row cut short by a crash while it was written
            continue
        items.append({
            "timestamp": stamp, "run_id": run_id,
            "model_name": row.get("model_name") or "", "model_version": versions.get(run_id),
            "estimator": row.get("estimator") or None, "rows": _number(row.get("rows"), int),
            "duration_s": _number(row.get("duration_s")), "energy_kwh": _number(row.get("energy_kwh")),
            "emissions_kg_co2eq": _number(row.get("emissions_kg")),
            "cpu_power_w": _number(row.get("cpu_power_w")), "ram_power_w": _number(row.get("ram_power_w")),
            "tracking_mode": _mode(row.get("mode")), "tracking_detail": row.get("mode") or "",
            "country_iso_code": row.get("country_iso_code") or None,
            "primary_metric": metric, "primary_metric_value": scores.get(run_id)})
    return items


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("emissions", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    params = services.params

    @bp.get("/emissions", permission="read", responses={200: EmissionsOut})
    def list_emissions():
        """Every training run, oldest first: duration, kWh, kg CO2eq, CPU and RAM power, whether
        power was measured or estimated, the model version it produced and its test score on the
        primary metric."""
        rows = emissions.read_table()
        metric = params.evaluate.primary_metric
        versions = _versions_by_run({r.get("model_name") or params.registry.model_name for r in rows})
        scores = _metrics_by_run(params.registry.experiment, f"test_{metric}") if rows else {}
        items = describe(rows, versions, scores, metric)
        return {"items": items, "primary_metric": metric,
                "total_emissions_kg_co2eq": sum(i["emissions_kg_co2eq"] or 0.0 for i in items),
                "total_energy_kwh": sum(i["energy_kwh"] or 0.0 for i in items)}

    return bp
