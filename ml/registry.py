"""The MLflow model registry: register, gate, promote and roll back.

Aliases: `champion` is the model that serves, `challenger` the newest candidate that did not
replace it. Moving an alias is one database write, so a reader always finds a champion.
The champion's history (for rollback) is a tag on the registered model.

Fencing: a job that registers or promotes runs its stages `fenced` by a check of its lease. Every
write to the registry takes the registry lock and re-checks the lease inside it, so a holder whose
lease was taken away (its worker was declared dead) changes nothing; versions a job registers carry
its id (tag `job_id`), so whoever reconciles a dead job reads what it left in the registry.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from filelock import FileLock

from ml import config, tracking
from ml.errors import RegistryError
from ml.params import Evaluate

ACTOR_VARIABLE = "OPCON_ACTOR"  # config.MLSettings.actor, set for the processes a job starts
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "opcon.champion_history"
JOB_TAG = "job_id"  # on a version: the job that registered it
PROMOTED_BY_JOB_TAG = "promoted_by_job"


class LeaseLostError(RegistryError):
    """The job acting on the registry no longer holds its lease: it changes nothing."""


@dataclasses.dataclass(frozen=True)
class Fence:
    job_id: str
    still_holds: Callable[[], bool]  # renews the lease and says whether it is still this job's


_fence: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("opcon_registry_fence",
                                                                     default=None)


@contextlib.contextmanager
def fenced(job_id: str, still_holds: Callable[[], bool]) -> Iterator[None]:
    """Registry writes in this context are the job's, and each first checks `still_holds()`."""
    token = _fence.set(Fence(job_id, still_holds))
    try:
        yield
    finally:
        _fence.reset(token)


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


def decide(challenger: float, champion: float | None, baseline: float, rules: Evaluate, *,
           newer_data: bool = False) -> Decision:
    """Promote when the challenger beats a constant predictor and either there is no champion, it
    beats the champion by `min_improvement`, or it is trained on newer data than the champion and
    scores at least as well on the same test set (a perfect champion can be beaten by no margin)."""
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
    if newer_data and challenger >= champion:
        return verdict(True, f"trained on newer data, and its test {metric} {challenger:.4f} is at least "
                             f"the champion's {champion:.4f} on the same test set")
    return verdict(False, f"test {metric} {challenger:.4f} does not beat the champion's {champion:.4f} "
                          f"by {rules.min_improvement}")


def client():
    """A client of the settings' store. MLflow's process-wide URI is left as it is: a thread of
    another app in the process (tests build several) must not move it under a running job."""
    uri = tracking.store_uri()
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _lock() -> FileLock:
    path = config.state_dir() / "locks" / "registry.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, timeout=60)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """The registry lock, without a fence check (for readers that must see a settled registry)."""
    with _lock():
        yield


@contextlib.contextmanager
def _writing() -> Iterator[Fence | None]:
    """The registry lock, and inside it the check that a fenced job still holds its lease."""
    fence = _fence.get()
    with _lock():
        if fence is not None and not fence.still_holds():
            raise LeaseLostError(f"job {fence.job_id} no longer holds its lease (it was declared "
                                 "interrupted): the registry is left as it is")
        yield fence


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def champion(name: str):
    """The champion ModelVersion (its `version` an int, as MLflow gives it), or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def challenger(name: str):
    """The challenger ModelVersion (the newest candidate the gate did not promote), or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, CHALLENGER)
    except MlflowException:
        return None


def versions(name: str) -> list:
    """Every registered version, newest first."""
    found = client().search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def load_sklearn(name: str, version: str):
    """A version's scikit-learn model. Artifacts in files are read straight from where the store
    says they are, so MLflow's process-wide URI is not touched; others go through it."""
    location = client().get_model_version_download_uri(name, str(version))
    if urllib.parse.urlparse(location).scheme in ("", "file"):
        import mlflow.sklearn

        return mlflow.sklearn.load_model(location)
    return tracking.load_sklearn_model(f"models:/{name}/{version}")


def register(model_uri: str, name: str, run_id: str, tags: dict[str, str]) -> str:
    tracking.configure()  # MLflow resolves a `models:/m-...` source through its process-wide URI
    mlflow_client = client()
    from mlflow.exceptions import MlflowException

    with _writing() as fence:
        try:
            mlflow_client.get_registered_model(name)
        except MlflowException:
            mlflow_client.create_registered_model(name, description="Operator Console champion model")
        # an MLflow server accepts a `models:/m-...` source only with the id of that logged model
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        if fence is not None:
            tags = {**tags, JOB_TAG: fence.job_id}
        version = mlflow_client.create_model_version(name, model_uri, run_id=run_id, tags=tags,
                                                     model_id=model_id)
    return str(version.version)


def left_by_job(name: str, job_id: str) -> dict:
    """What job `job_id` left in the registry: the version it registered and the alias that
    version holds now ({} when it registered none). Read under the registry lock, so a write
    that checked its lease before is visible."""
    from mlflow.exceptions import MlflowException

    with _lock():
        mlflow_client = client()
        try:
            found = mlflow_client.search_model_versions(f"name = '{name}' and tags.{JOB_TAG} = '{job_id}'")
            aliases = mlflow_client.get_registered_model(name).aliases
        except MlflowException:
            return {}
    if not found:
        return {}
    version = str(max(int(v.version) for v in found))
    alias = next((a for a in (CHAMPION, CHALLENGER) if str(aliases.get(a)) == version), None)
    return {"model_version": version, "alias": alias, "promoted": alias == CHAMPION}


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
    with _writing():
        client().set_registered_model_alias(name, CHALLENGER, str(version))


def actor() -> str:
    """Who the pipeline acts for: the user whose job runs it (OPCON_ACTOR), else the pipeline."""
    return config.current().actor or "pipeline"


def promote(name: str, version: str, reason: str = "promoted by hand", by: str | None = None) -> None:
    """Make `version` the champion in one alias write; remember the previous one for rollback."""
    version = str(version)
    with _writing() as fence:
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
        if fence is not None:
            mlflow_client.set_model_version_tag(name, version, PROMOTED_BY_JOB_TAG, fence.job_id)
        if "first_promoted_at" not in found.tags:  # the latest promotion's tags are overwritten
            mlflow_client.set_model_version_tag(name, version, "first_promoted_at", stamp)
            mlflow_client.set_model_version_tag(name, version, "first_promoted_by", by)
        current = mlflow_client.get_registered_model(name).aliases
        if str(current.get(CHALLENGER)) == version:
            mlflow_client.delete_registered_model_alias(name, CHALLENGER)


def rollback(name: str, by: str | None = None) -> str:
    """Bring the previous champion back; return its version."""
    with _writing():
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
