"""The model registry: versions with their evidence, promotion and rollback."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from flask import g, request
from flask_openapi3 import Tag
from pydantic import BaseModel, Field

from control_api import approvals as approval_records
from control_api import champion_history as champion_history_view
from control_api.errors import APIError
from control_api.identity.routing import SecuredBlueprint
from control_api.models import ErrorBody, ModelList, PromoteBody, PromoteOut, VersionPath
from ml import registry
from ml.errors import RegistryError

TAG = Tag(name="models", description="Registered model versions, promotion, rollback")
CARD_ARTIFACT = "model_card"  # the run artifact whose name contains this is the version's model card


class ModelCardOut(BaseModel):
    version: str
    markdown: str


class ChampionPeriod(BaseModel):
    version: str
    from_: datetime = Field(alias="from")
    to: datetime | None
    moved_by: str
    reason: str | None
    job_id: str | None
    recorded: bool = Field(description="false: moved outside the console (read from the registry)")


class ChampionHistory(BaseModel):
    name: str
    periods: list[ChampionPeriod]


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def describe_version(version, runs, aliases: dict[str, str], approval: dict | None = None) -> dict:
    run = runs.get(version.run_id)
    tags = version.tags
    return {
        "version": str(version.version),
        "aliases": sorted(a for a, v in aliases.items() if str(v) == str(version.version)),
        "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC),
        "run_id": version.run_id,
        "data_version": tags.get("data_version"),
        "metrics": dict(run.data.metrics) if run else {},
        "emissions_kg_co2eq": _float(tags.get("emissions_kg_co2eq")),
        "threshold": _float(tags.get("threshold")),
        "promotion": {k.split(".", 1)[1]: v for k, v in tags.items() if k.startswith("promotion.")},
        "onnx": tags.get("onnx"),
        "approval": None if approval is None else approval_records.present(approval),
    }


def model_card(client, run_id: str | None) -> str | None:
    """The Markdown model card logged with the run, or None when the run has none."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        names = [a.path for a in client.list_artifacts(run_id) if not a.is_dir]
        card = next((n for n in sorted(names) if CARD_ARTIFACT in n.rsplit("/", 1)[-1]), None)
        if card is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(run_id, card, tmp)).read_text()
    except MlflowException:  # the run or its artifacts are gone
        return None


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("models", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    name = services.params.registry.model_name

    @bp.get("/models", permission="read", responses={200: ModelList})
    def list_models():
        """Registered versions, newest first, with aliases, metrics, data version and decision."""
        client = registry.client()
        versions = registry.versions(name)
        runs = {}
        for version in versions:
            if version.run_id and version.run_id not in runs:
                runs[version.run_id] = client.get_run(version.run_id)
        aliases = client.get_registered_model(name).aliases if versions else {}
        champion = aliases.get(registry.CHAMPION)
        pending = {a["version"]: a for a in services.approvals.list(name)}
        return {"name": name, "champion": None if champion is None else str(champion),
                "versions": [describe_version(v, runs, aliases, pending.get(str(v.version)))
                             for v in versions]}

    @bp.get("/models/<int:version>/card", permission="read", responses={200: ModelCardOut, 404: ErrorBody})
    def card(path: VersionPath):
        """The model card of a version (Markdown): intended use, data, metrics, threshold, emissions."""
        from mlflow.exceptions import MlflowException

        client = registry.client()
        try:
            version = client.get_model_version(name, str(path.version))
        except MlflowException:
            raise APIError(404, f"model `{name}` has no version {path.version}",
                           [{"field": "version", "problem": "no such version"}]) from None
        markdown = model_card(client, version.run_id)
        if markdown is None:
            raise APIError(404, f"version {path.version} has no model card",
                           [{"field": "version", "problem": "its MLflow run has no model card"}])
        return {"version": str(path.version), "markdown": markdown}

    @bp.get("/models/champion/history", permission="read", responses={200: ChampionHistory})
    def champion_history():
        """Every champion period: version, from, to (null: serving now), who moved it and why."""
        from mlflow.exceptions import MlflowException

        client = registry.client()

        def lookup(version: str):
            try:
                return client.get_model_version(name, str(version))
            except MlflowException:
                return None

        return {"name": name, "periods": champion_history_view.periods(
            services.audit, name, lookup, registry.champion(name))}

    @bp.post("/models/<int:version>/promote", permission="models:promote",
             responses={200: PromoteOut, 404: ErrorBody})
    def promote(path: VersionPath, body: PromoteBody):
        """Make this version the champion; every API worker serves it within seconds."""
        g.audit_target = f"model:{name}/{path.version}"
        previous = registry.champion(name)
        try:
            registry.promote(name, str(path.version), body.reason, by=g.identity.name)
        except RegistryError as error:
            raise APIError(404, str(error),
                           [{"field": "version", "problem": "no such version"}]) from None
        moved(str(path.version), previous, body.reason)
        return {"name": name, "champion": str(path.version)}

    @bp.post("/models/rollback", permission="models:rollback",
             responses={200: PromoteOut, 409: ErrorBody})
    def rollback():
        """Bring the previous champion back."""
        previous = registry.champion(name)
        try:
            restored = registry.rollback(name, by=g.identity.name)
        except RegistryError as error:
            raise APIError(409, str(error)) from None
        moved(restored, previous, f"rollback from {previous.version if previous else 'none'}")
        return {"name": name, "champion": restored}

    def moved(version: str, previous, reason: str) -> None:
        champion_history_view.record_move(
            services.audit, name, version, None if previous is None else previous.version,
            by=g.identity.name, role=g.identity.role, reason=reason, request_id=g.request_id,
            client=request.remote_addr)
        services.champion.refresh()

    return bp
