"""Where things live, as settings read from the environment (pydantic-settings).

`MLSettings` holds the ml side's configuration: the state dir ($OPCON_HOME, under which every
runtime path lies), the DVC project, the MLflow store and the DVC remote. A process's entry point
may configure it once (`use`), an app binds its own to the requests it serves (`bind`); otherwise
the getters below read the environment when asked (never at import), which is how a stage that
DVC starts gets its configuration. Child processes get it through an explicit environment
(`MLSettings.child_env`), never through this process's `os.environ`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = REPO_ROOT / ".opcon"

# variables whose values an error message never shows, not even in part
_SECRET = re.compile(r"TOKEN(?!_ROLE)|PASSWORD|SECRET|KEY|URL|URI")
_SHOWN_CHARACTERS = 20


class SettingsError(ValueError):
    """A variable (or an override) holds a value its setting cannot take."""


class _OneVariableEach(EnvSettingsSource):
    """Each field from exactly the variable `EnvSettings.variables` names, nothing else."""

    def __init__(self, settings_cls: type[EnvSettings]):
        super().__init__(settings_cls)
        self._variables = settings_cls.variables()

    def get_field_value(self, field, field_name: str) -> tuple[Any, str, bool]:
        variable = self._variables.get(field_name)
        key = field.validation_alias if isinstance(field.validation_alias, str) else field_name
        return (self.env_vars.get(variable) if variable else None), key, False


class EnvSettings(BaseSettings):
    """Settings from the environment: a field reads OPCON_<FIELD NAME>, or the variable its
    validation alias names; a field in `not_from_env` is set only by its constructor. An empty
    variable means the default. `load` reports a bad value by its variable's name."""

    model_config = SettingsConfigDict(env_prefix="OPCON_", case_sensitive=True, env_ignore_empty=True,
                                      validate_by_name=True, validate_by_alias=True, extra="forbid")
    not_from_env: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, _OneVariableEach(settings_cls)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """{field: the environment variable it is read from}."""
        prefix = cls.model_config.get("env_prefix", "")
        return {name: field.validation_alias if isinstance(field.validation_alias, str)
                else f"{prefix}{name}".upper()
                for name, field in cls.model_fields.items() if name not in cls.not_from_env}

    @classmethod
    def load(cls, **values) -> Self:
        """The settings from `values` (by field name) and the environment."""
        try:
            return cls(**values)
        except ValidationError as error:
            raise SettingsError(cls._describe(error, values)) from None

    @classmethod
    def _describe(cls, error: ValidationError, values: dict) -> str:
        variables = cls.variables()
        by_key = {(f.validation_alias if isinstance(f.validation_alias, str) else name): name
                  for name, f in cls.model_fields.items()}
        problems = []
        for item in error.errors(include_url=False):
            key = str(item["loc"][0]) if item["loc"] else ""
            field = by_key.get(key, key)
            name = field if field in values or field not in variables else variables[field]
            message = item["msg"].removeprefix("Value error, ")
            if "input" in item and not _SECRET.search(name.upper()):
                shown = str(item["input"])
                if len(shown) > _SHOWN_CHARACTERS:
                    shown = shown[:_SHOWN_CHARACTERS] + "..."
                message += f" (got `{shown}`)"
            problems.append(f"{name}: {message}" if name else message)
        return "; ".join(problems)


class MLSettings(EnvSettings):
    """The ml side's configuration; every runtime path derives from `state_dir`."""

    model_config = SettingsConfigDict(frozen=True)

    state_dir: Path = Field(DEFAULT_STATE_DIR, validation_alias="OPCON_HOME")
    project_dir: Path = REPO_ROOT  # the DVC project the pipeline runs in (dvc.yaml, params.yaml)
    # a person's MLflow server; by default the SQLite store in the state dir
    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    artifact_root: str | None = None  # where new experiments keep artifacts (any MLflow URI)
    dvc_remote: str | None = None  # any DVC remote URL; by default a directory in the state dir
    git_commit: str | None = None  # set in an image built without .git
    actor: str | None = None  # who a pipeline process acts for (set by the job worker)

    @field_validator("state_dir", "project_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()

    def child_env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with these settings' variables in place of its own, for a child process that reads
        its settings from the environment (the unset ones are removed, so it takes the defaults)."""
        variables = self.variables()
        env = {k: v for k, v in base.items() if k not in variables.values()}
        if self.mlflow_tracking_uri is None:
            env.pop("MLFLOW_REGISTRY_URI", None)  # ours would follow the tracking URI anyway
        for field, variable in variables.items():
            if (value := getattr(self, field)) is not None:
                env[variable] = str(value)
        return env


_VARIABLES = frozenset(MLSettings.variables().values())
_bound: contextvars.ContextVar[MLSettings | None] = contextvars.ContextVar("ml_settings",
                                                                            default=None)
# what `use` configured, and the last settings read from the environment with what they came from
_process: dict[str, MLSettings | None] = {"settings": None}
_read: dict[tuple, MLSettings] = {}


def use(settings: MLSettings | None) -> None:
    """Configure this process's ml code (an entry point calls it once); None: the environment."""
    _process["settings"] = settings


def bind(settings: MLSettings) -> contextvars.Token:
    """Bind `settings` to the current thread's context (e.g. one request) until `unbind`."""
    return _bound.set(settings)


def unbind(token: contextvars.Token) -> None:
    _bound.reset(token)


@contextlib.contextmanager
def bound(settings: MLSettings) -> Iterator[MLSettings]:
    token = bind(settings)
    try:
        yield settings
    finally:
        unbind(token)


def thread(target: Callable[..., object], *args, name: str) -> threading.Thread:
    """A daemon thread running `target(*args)` under the settings in force where it is made: a new
    thread starts with none of its maker's context, and would otherwise read the environment (which
    may name another state dir by then: a test module's, or none)."""
    settings = current()

    def run() -> None:
        with bound(settings):
            target(*args)

    return threading.Thread(target=run, name=name, daemon=True)


def current() -> MLSettings:
    """The settings in force: bound to this context, else configured for the process, else read
    from the environment now."""
    return _bound.get() or _process["settings"] or _from_environment()


def _from_environment() -> MLSettings:
    key = (os.getcwd(), *sorted((k, v) for k, v in os.environ.items() if k in _VARIABLES))
    if (found := _read.get(key)) is None:
        found = MLSettings.load()
        _read.clear()
        _read[key] = found
    return found


def state_dir() -> Path:
    """All runtime state: MLflow store, DVC cache and remote, emissions, reports."""
    path = current().state_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_dir() -> Path:
    """The DVC project the pipeline runs in (holds dvc.yaml and params.yaml)."""
    return current().project_dir


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when a person set it, else the SQLite store in the state dir."""
    if uri := current().mlflow_tracking_uri:
        return uri
    db = state_dir() / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def mlflow_artifact_root() -> str:
    if uri := current().artifact_root:
        return uri
    path = state_dir() / "mlflow" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def dvc_remote_url() -> str:
    """Default: a local directory under the state dir; any DVC remote URL via OPCON_DVC_REMOTE."""
    return current().dvc_remote or str(state_dir() / "dvc-remote")


def dvc_cache_dir() -> Path:
    return state_dir() / "dvc-cache"


def emissions_dir() -> Path:
    path = state_dir() / "emissions"
    path.mkdir(parents=True, exist_ok=True)
    return path


# the libraries we drive read these from the environment only; a person's own values win
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}


def quiet_third_parties() -> None:
    """No telemetry or progress bars from the libraries we drive (this machine has no network)."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
