"""MLflow set-up: tracking and registry URIs from the state dir, one experiment per project."""

from __future__ import annotations

import logging
import os
import subprocess

from ml import config


def configure(experiment: str | None = None) -> str | None:
    """Point MLflow at the state dir (or MLFLOW_TRACKING_URI); return the experiment id."""
    config.quiet_third_parties()
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = config.mlflow_tracking_uri()
    derived = os.environ.get("MLFLOW_TRACKING_URI") in (None, "", os.environ.get(config.OURS))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if derived:
        os.environ[config.OURS] = uri
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
    if commit := os.environ.get("OPCON_GIT_COMMIT"):  # an image built without .git
        return commit
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "ml"))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")
