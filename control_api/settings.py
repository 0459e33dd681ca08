"""The API's settings: environment variables (pydantic-settings), overridable per app (tests build
apps on temp dirs). Nothing here writes the environment: the ml side's part of the settings is
`Settings.ml`, which the app binds to its requests and the job worker passes to what it starts."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from control_api.identity.permissions import ROLES
from ml import config as ml_config
from ml.config import EnvSettings, MLSettings


class Settings(EnvSettings):
    # limits and modes the code (or a test) sets; the environment does not
    not_from_env: ClassVar[frozenset[str]] = frozenset({
        "ml", "onnx_max_rows", "max_records", "max_batch_rows", "max_upload_bytes",
        "job_heartbeat_seconds", "testing"})

    state_dir: Path = Field(ml_config.DEFAULT_STATE_DIR, validation_alias="OPCON_HOME")
    project_dir: Path = ml_config.REPO_ROOT
    api_token: str | None = None  # by default a random one kept in the state dir (from_env)
    database_url: str | None = None  # by default SQLite in the state dir
    api_token_role: str = "admin"  # what the service token (OPCON_API_TOKEN) may do
    session_hours: float = 12.0
    login_max_failures: int = 5  # failed sign-ins per username within the lock-out window
    login_max_failures_per_address: int = 20  # failed sign-ins per client address
    login_lockout_seconds: int = 300
    ratelimit_storage_uri: str | None = None  # default: Redis at REDIS_URL, else in memory
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    queue_name: str = "opcon"  # instances sharing one Redis need different names
    model_poll_seconds: float = 2.0
    # while the registry has a challenger, each /predict request is also scored by it, off the
    # response path, into the shadow log (OPCON_SHADOW=false: not in this deployment)
    shadow: bool = True
    shadow_max_batch_rows: int = Field(100_000, ge=0)  # of a CSV batch, its first rows only
    # a newly promoted champion is served by every API worker from the same instant, this long
    # after the first worker loaded it (the others load it meanwhile)
    model_switch_lead_seconds: float = 5.0
    # a running job whose heartbeat is older than this is `interrupted` (its worker is gone)
    job_stale_seconds: float = 30.0
    job_command_timeout_seconds: float = 3600.0  # a child process of a job (a `dvc pull`) is killed after
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

    # single rows and small batches go through ONNX; above this scikit-learn is faster
    onnx_max_rows: int = 2_000
    max_records: int = 10_000
    max_batch_rows: int = 1_000_000
    max_upload_bytes: int = 512 * 1024 * 1024
    job_heartbeat_seconds: float = 5.0
    testing: bool = False
    ml: MLSettings | None = None  # by default the environment's, on this state dir and project

    @field_validator("state_dir", "project_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    @field_validator("api_token_role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"must be one of {', '.join(ROLES)}")
        return role

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.state_dir / 'opcon.db'}"
        if self.ml is None:
            self.ml = MLSettings.load(state_dir=self.state_dir, project_dir=self.project_dir)
        return self

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
    def shadow_log_dir(self) -> Path:
        """The challenger's answers to live requests: the prediction log's layout, flagged `shadow`."""
        return self.state_dir / "predictions" / "shadow"

    @property
    def huey_path(self) -> Path:
        return self.state_dir / "jobs" / "queue.db"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"


def token_path(state_dir: Path) -> Path:
    return state_dir / "api_token"


def ensure_token(state_dir: Path, token: str | None = None) -> str:
    """`token` (OPCON_API_TOKEN), or a random token kept in a file only the owner can read."""
    if token:
        return token
    path = token_path(state_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def from_env(**overrides) -> Settings:
    """Settings from the environment, with `overrides` by field name (state_dir, project_dir,
    api_token, testing, ...). A bad variable raises ml.config.SettingsError naming it."""
    settings = Settings.load(**overrides)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.api_token = ensure_token(settings.state_dir, settings.api_token)
    return settings
