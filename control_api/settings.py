"""The API's settings: environment variables, overridable per app (tests build apps on temp dirs)."""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from ml import config as ml_config


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclasses.dataclass
class Settings:
    state_dir: Path
    project_dir: Path
    api_token: str
    database_url: str
    redis_url: str | None = None
    queue_name: str = "opcon"  # instances sharing one Redis need different names
    model_poll_seconds: float = 2.0
    # single rows and small batches go through ONNX; above this scikit-learn is faster
    onnx_max_rows: int = 2_000
    max_records: int = 10_000
    max_batch_rows: int = 1_000_000
    max_upload_bytes: int = 512 * 1024 * 1024
    job_heartbeat_seconds: float = 5.0
    testing: bool = False

    @property
    def prediction_log_dir(self) -> Path:
        return self.state_dir / "predictions"

    @property
    def huey_path(self) -> Path:
        return self.state_dir / "jobs" / "queue.db"


def token_path(state_dir: Path) -> Path:
    return state_dir / "api_token"


def ensure_token(state_dir: Path) -> str:
    """OPCON_API_TOKEN, or a random token kept in a file only the owner can read."""
    if token := os.environ.get("OPCON_API_TOKEN"):
        return token
    path = token_path(state_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def from_env(**overrides) -> Settings:
    """Settings from the environment. A `state_dir` or `project_dir` override becomes OPCON_HOME or
    OPCON_PROJECT_DIR of this process, since the pipeline and registry code read those."""
    for key, variable in (("state_dir", "OPCON_HOME"), ("project_dir", "OPCON_PROJECT_DIR")):
        if overrides.get(key):
            os.environ[variable] = str(overrides[key])
    state = Path(overrides.pop("state_dir", None) or ml_config.state_dir())
    state.mkdir(parents=True, exist_ok=True)
    values = {
        "state_dir": state,
        "project_dir": Path(overrides.pop("project_dir", None) or ml_config.project_dir()),
        "database_url": os.environ.get("OPCON_DATABASE_URL") or f"sqlite:///{state / 'opcon.db'}",
        "redis_url": os.environ.get("REDIS_URL") or None,
        "queue_name": os.environ.get("OPCON_QUEUE_NAME") or "opcon",
        "model_poll_seconds": _env_float("OPCON_MODEL_POLL_SECONDS", 2.0),
    }
    values.update(overrides)
    if "api_token" not in values:
        values["api_token"] = ensure_token(state)
    return Settings(**values)
