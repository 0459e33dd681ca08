"""Where things live. Every runtime path derives from $OPCON_HOME, read when asked (never at import)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def state_dir() -> Path:
    """All runtime state: MLflow store, DVC cache and remote, emissions, reports."""
    path = Path(os.environ.get("OPCON_HOME") or REPO_ROOT / ".opcon").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_dir() -> Path:
    """The DVC project the pipeline runs in (holds dvc.yaml and params.yaml)."""
    return Path(os.environ.get("OPCON_PROJECT_DIR") or REPO_ROOT).expanduser().resolve()


OURS = "OPCON_MLFLOW_URI_SET"  # the URI we derived and MLflow copied into MLFLOW_TRACKING_URI


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when a person set it, else the SQLite store in the state dir.

    mlflow.set_tracking_uri() copies its argument into MLFLOW_TRACKING_URI; a value equal to the one
    we derived ourselves is ours, so a changed OPCON_HOME still moves the store.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri != os.environ.get(OURS):
        return uri
    db = state_dir() / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def mlflow_artifact_root() -> str:
    if uri := os.environ.get("OPCON_ARTIFACT_ROOT"):
        return uri
    path = state_dir() / "mlflow" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def dvc_remote_url() -> str:
    """Default: a local directory under the state dir; any DVC remote URL via OPCON_DVC_REMOTE."""
    return os.environ.get("OPCON_DVC_REMOTE") or str(state_dir() / "dvc-remote")


def dvc_cache_dir() -> Path:
    return state_dir() / "dvc-cache"


def emissions_dir() -> Path:
    path = state_dir() / "emissions"
    path.mkdir(parents=True, exist_ok=True)
    return path


def quiet_third_parties() -> None:
    """No telemetry or progress bars from the libraries we drive (this machine has no network)."""
    for key, value in {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        "GIT_PYTHON_REFRESH": "quiet",
    }.items():
        os.environ.setdefault(key, value)
