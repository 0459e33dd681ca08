"""MLflow set-up: tracking and registry URIs from the settings, one experiment per project."""

from __future__ import annotations

import logging
import os
import subprocess

from ml import config

# mlflow.set_tracking_uri / set_registry_uri also write their argument into these, for child
# processes; ours get an explicit environment instead (config.MLSettings.child_env)
MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def store_uri() -> str:
    """The settings' MLflow store (tracking and registry), MLflow's logging quietened."""
    config.quiet_third_parties()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return config.mlflow_tracking_uri()


def configure(experiment: str | None = None) -> str | None:
    """Point MLflow (process-wide: its fluent API, `models:/` URIs) at the settings' store; return
    the experiment id."""
    uri = store_uri()
    import mlflow

    before = {k: v for k, v in os.environ.items() if k in MLFLOW_URI_VARIABLES}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    finally:  # os.environ stays what the person set
        for name in MLFLOW_URI_VARIABLES:
            if name in before:
                os.environ[name] = before[name]
            else:
                os.environ.pop(name, None)
    if experiment is None:
        return None
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    root = config.mlflow_artifact_root().rstrip("/")
    return client.create_experiment(experiment, artifact_location=f"{root}/{experiment}")


def git_commit() -> str:
    """The commit of the code that trains, with `-dirty` when it has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=config.REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    if commit := config.current().git_commit:  # an image built without .git
        return commit
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "ml"))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def load_sklearn_model(uri: str):
    """An MLflow scikit-learn model by URI (`models:/name/version`, a run's), from the settings'
    store (`models:/` URIs resolve through the process-wide one, so it is pointed there first)."""
    configure()
    import mlflow.sklearn

    return mlflow.sklearn.load_model(uri)
