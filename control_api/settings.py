"""The API's settings: environment variables, overridable per app (tests build apps on temp dirs)."""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from control_api.identity.permissions import ROLES
from ml import config as ml_config


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclasses.dataclass
class Settings:
    state_dir: Path
    project_dir: Path
    api_token: str
    database_url: str
    api_token_role: str = "admin"  # what the service token (OPCON_API_TOKEN) may do
    session_hours: float = 12.0
    login_max_failures: int = 5  # failed sign-ins per username within the lock-out window
    login_max_failures_per_address: int = 20  # failed sign-ins per client address
    login_lockout_seconds: int = 300
    ratelimit_storage_uri: str | None = None  # default: Redis at REDIS_URL, else in memory
    redis_url: str | None = None
    queue_name: str = "opcon"  # instances sharing one Redis need different names
    model_poll_seconds: float = 2.0
    # single rows and small batches go through ONNX; above this scikit-learn is faster
    onnx_max_rows: int = 2_000
    max_records: int = 10_000
    max_batch_rows: int = 1_000_000
    max_upload_bytes: int = 512 * 1024 * 1024
    job_heartbeat_seconds: float = 5.0
    # drift reports: a scheduled one every interval (0: none); the seconds form overrides the
    # minutes one (tests use a few seconds)
    drift_interval_minutes: float = 60.0
    drift_interval_seconds: float | None = None
    drift_window_rows: int = 10_000  # the window of scheduled reports and of requests without params
    drift_share: float = 0.5  # dataset drift when at least this share of the features drifted
    drift_retrain_after: int = 0  # N reports in a row with dataset drift start a retrain; 0: never
    drift_html_rows: int = 10_000  # rows of each side the HTML report is drawn from
    reports_keep_html: int = 500  # newest reports that keep their HTML; every summary is kept
    metrics_cache_seconds: float = 5.0
    testing: bool = False

    @property
    def drift_interval(self) -> float:
        """Seconds between scheduled drift reports; 0 when they are off."""
        if self.drift_interval_seconds is not None:
            return max(self.drift_interval_seconds, 0.0)
        return max(self.drift_interval_minutes, 0.0) * 60

    @property
    def ratelimit_storage(self) -> str:
        return self.ratelimit_storage_uri or self.redis_url or "memory://"

    @property
    def prediction_log_dir(self) -> Path:
        return self.state_dir / "predictions"

    @property
    def huey_path(self) -> Path:
        return self.state_dir / "jobs" / "queue.db"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"


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
        "drift_interval_minutes": _env_float("OPCON_DRIFT_INTERVAL_MINUTES", 60.0),
        "drift_interval_seconds": (_env_float("OPCON_DRIFT_INTERVAL_SECONDS", 0.0)
                                   if os.environ.get("OPCON_DRIFT_INTERVAL_SECONDS") else None),
        "drift_window_rows": _env_int("OPCON_DRIFT_WINDOW_ROWS", 10_000),
        "drift_share": _env_float("OPCON_DRIFT_SHARE", 0.5),
        "drift_retrain_after": _env_int("OPCON_DRIFT_RETRAIN_AFTER", 0),
        "drift_html_rows": _env_int("OPCON_DRIFT_HTML_ROWS", 10_000),
        "reports_keep_html": _env_int("OPCON_REPORTS_KEEP_HTML", 500),
        "metrics_cache_seconds": _env_float("OPCON_METRICS_CACHE_SECONDS", 5.0),
        "api_token_role": os.environ.get("OPCON_API_TOKEN_ROLE") or "admin",
        "session_hours": _env_float("OPCON_SESSION_HOURS", 12.0),
        "login_max_failures": _env_int("OPCON_LOGIN_MAX_FAILURES", 5),
        "login_max_failures_per_address": _env_int("OPCON_LOGIN_MAX_FAILURES_PER_ADDRESS", 20),
        "login_lockout_seconds": _env_int("OPCON_LOGIN_LOCKOUT_SECONDS", 300),
        "ratelimit_storage_uri": os.environ.get("OPCON_RATELIMIT_STORAGE_URI") or None,
    }
    values.update(overrides)
    if "api_token" not in values:
        values["api_token"] = ensure_token(state)
    if values["api_token_role"] not in ROLES:
        raise ValueError(f"OPCON_API_TOKEN_ROLE must be one of {', '.join(ROLES)}, "
                         f"not `{str(values['api_token_role'])[:20]}`")
    return Settings(**values)
