"""The MLflow model registry: register, gate, promote and roll back.

Aliases: `champion` is the model that serves, `challenger` the newest candidate that did not
replace it. Moving an alias is one database write, so a reader always finds a champion.
The champion's history (for rollback) is a tag on the registered model.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

from filelock import FileLock

from ml import config, tracking
from ml.errors import RegistryError
from ml.params import Evaluate

ACTOR_VARIABLE = "OPCON_ACTOR"  # config.MLSettings.actor, set for the processes a job starts
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "opcon.champion_history"


@dataclasses.dataclass
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger_score: float
    champion_score: float | None
    baseline_score: float

    awaiting_approval: bool = False

    @property
    def outcome(self) -> str:
        if self.awaiting_approval:
            return "awaiting approval"
        return "promoted" if self.promote else "kept as challenger"

    def as_tags(self) -> dict[str, str]:
        return {"promotion.outcome": self.outcome, "promotion.reason": self.reason,
                "promotion.metric": self.metric,
                "promotion.challenger_score": f"{self.challenger_score:.6f}",
                "promotion.champion_score": "" if self.champion_score is None
                else f"{self.champion_score:.6f}",
                "promotion.baseline_score": f"{self.baseline_score:.6f}"}


def decide(challenger: float, champion: float | None, baseline: float, rules: Evaluate) -> Decision:
    metric = rules.primary_metric

    def verdict(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, metric, challenger, champion, baseline)

    if challenger < baseline + rules.min_lift_over_baseline:
        return verdict(False, f"test {metric} {challenger:.4f} is not at least "
                              f"{rules.min_lift_over_baseline} above a constant predictor's {baseline:.4f}")
    if champion is None:
        return verdict(True, f"no champion yet; test {metric} {challenger:.4f} beats the constant "
                             f"predictor's {baseline:.4f}")
    if challenger >= champion + rules.min_improvement:
        return verdict(True, f"test {metric} {challenger:.4f} beats the champion's {champion:.4f} "
                             f"by at least {rules.min_improvement}")
    return verdict(False, f"test {metric} {challenger:.4f} does not beat the champion's {champion:.4f} "
                          f"by {rules.min_improvement}")


def client():
    tracking.configure()
    import mlflow

    return mlflow.MlflowClient()


def _lock() -> FileLock:
    path = config.state_dir() / "locks" / "registry.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, timeout=60)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def champion(name: str):
    """The champion ModelVersion (its `version` an int, as MLflow gives it), or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def versions(name: str) -> list:
    """Every registered version, newest first."""
    found = client().search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def register(model_uri: str, name: str, run_id: str, tags: dict[str, str]) -> str:
    mlflow_client = client()
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(name, description="Operator Console champion model")
    # an MLflow server accepts a `models:/m-...` source only with the id of that logged model
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    version = mlflow_client.create_model_version(name, model_uri, run_id=run_id, tags=tags,
                                                 model_id=model_id)
    return str(version.version)


def _history(mlflow_client, name: str) -> list[str]:
    raw = mlflow_client.get_registered_model(name).tags.get(HISTORY_TAG, "[]")
    return json.loads(raw)


def _require_version(mlflow_client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"model `{name}` has no version {version}") from None


def set_challenger(name: str, version: str) -> None:
    client().set_registered_model_alias(name, CHALLENGER, str(version))


def actor() -> str:
    """Who the pipeline acts for: the user whose job runs it (OPCON_ACTOR), else the pipeline."""
    return config.current().actor or "pipeline"


def promote(name: str, version: str, reason: str = "promoted by hand", by: str | None = None) -> None:
    """Make `version` the champion in one alias write; remember the previous one for rollback."""
    version = str(version)
    with _lock():
        mlflow_client = client()
        found = _require_version(mlflow_client, name, version)
        history = _history(mlflow_client, name)
        mlflow_client.set_registered_model_alias(name, CHAMPION, version)
        if not history or history[-1] != version:
            history.append(version)
        mlflow_client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        stamp, by = _now(), by or actor()
        mlflow_client.set_model_version_tag(name, version, "promoted_at", stamp)
        mlflow_client.set_model_version_tag(name, version, "promotion.reason", reason)
        mlflow_client.set_model_version_tag(name, version, "promoted_by", by)
        if "first_promoted_at" not in found.tags:  # the latest promotion's tags are overwritten
            mlflow_client.set_model_version_tag(name, version, "first_promoted_at", stamp)
            mlflow_client.set_model_version_tag(name, version, "first_promoted_by", by)
        current = mlflow_client.get_registered_model(name).aliases
        if str(current.get(CHALLENGER)) == version:
            mlflow_client.delete_registered_model_alias(name, CHALLENGER)


def rollback(name: str, by: str | None = None) -> str:
    """Bring the previous champion back; return its version."""
    with _lock():
        mlflow_client = client()
        history = _history(mlflow_client, name)
        if len(history) < 2:
            raise RegistryError(f"model `{name}` has no previous champion to roll back to")
        demoted, restored = history[-1], history[-2]
        mlflow_client.set_registered_model_alias(name, CHAMPION, restored)
        mlflow_client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[:-1]))
        mlflow_client.set_model_version_tag(name, demoted, "rolled_back_at", _now())
        mlflow_client.set_model_version_tag(name, restored, "promoted_at", _now())
        mlflow_client.set_model_version_tag(name, restored, "promoted_by", by or actor())
        mlflow_client.set_model_version_tag(name, restored, "promotion.reason", f"rollback from {demoted}")
        return restored
