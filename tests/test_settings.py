"""Settings from the environment (pydantic-settings): every variable reaches its field and nothing
else does, a bad value fails at start naming its variable, nothing writes the environment, and apps
built in one process on different state dirs keep their own paths, the ml side's included."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import SecretStr

from control_api import create_app, serving
from control_api.gunicorn_conf import ServerSettings
from control_api.identity.bootstrap import BootstrapSettings
from control_api.settings import Settings, from_env
from ml import config, registry, tracking
from ml.config import EnvSettings, MLSettings, SettingsError
from ml.mlflow_auth import AuthSettings
from ml.versioning import tool_env
from tests.helpers import TOKEN, Client, build_project
from tests.live import wait_until
from tests.test_deploy import SERVICES, env_example, env_files, environment, interpolate

CLASSES = [Settings, MLSettings, AuthSettings, BootstrapSettings, ServerSettings]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No variable of any settings class set, whatever the shell running the tests has."""
    for cls in CLASSES:
        for variable in cls.variables().values():
            monkeypatch.delenv(variable, raising=False)


def sample(annotation, tmp_path: Path, index: int) -> tuple[str, object]:
    """(a variable's text, the value its field must then hold) for a field's type."""
    kinds = set(typing.get_args(annotation)) or {annotation}
    if Path in kinds:
        path = tmp_path / f"dir-{index}"
        return str(path), path
    if SecretStr in kinds:
        return f"secret-value-{index}", SecretStr(f"secret-value-{index}")
    if bool in kinds:
        return "true", True
    if int in kinds:
        return str(100 + index), 100 + index
    if float in kinds:
        return f"{index}.5", index + 0.5
    return f"text-{index}", f"text-{index}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_variable_reaches_its_field(cls, tmp_path, monkeypatch):
    variables = cls.variables()
    assert variables and set(variables) == set(cls.model_fields) - cls.not_from_env
    expected = {}
    for index, (field, variable) in enumerate(sorted(variables.items())):
        annotation = cls.model_fields[field].annotation
        if field == "api_token_role":
            text, value = "operator", "operator"
        else:
            text, value = sample(annotation, tmp_path, index)
        monkeypatch.setenv(variable, text)
        expected[field] = value
    settings = cls.load()
    for field, value in expected.items():
        found = getattr(settings, field)
        if isinstance(value, SecretStr):
            assert found.get_secret_value() == value.get_secret_value(), field
        else:
            assert found == value, f"{field} from {variables[field]}"


def test_only_the_documented_variables_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv("OPCON_STATE_DIR", str(tmp_path / "field-name"))  # not a synonym of OPCON_HOME
    monkeypatch.setenv("opcon_home", str(tmp_path / "lower-case"))
    monkeypatch.setenv("OPCON_MAX_RECORDS", "3")  # a limit the code sets, not the environment
    monkeypatch.setenv("OPCON_TESTING", "true")
    monkeypatch.setenv("OPCON_REDIS_URL", "redis://elsewhere")  # REDIS_URL has no prefix
    settings = Settings.load()
    assert settings.state_dir == config.DEFAULT_STATE_DIR
    assert (settings.max_records, settings.testing, settings.redis_url) == (10_000, False, None)
    assert MLSettings.load().state_dir == config.DEFAULT_STATE_DIR


def test_an_empty_variable_means_the_default(monkeypatch):
    for variable in ("OPCON_SESSION_HOURS", "OPCON_HOME", "REDIS_URL", "OPCON_DRIFT_INTERVAL_SECONDS"):
        monkeypatch.setenv(variable, "")
    settings = Settings.load()
    assert settings.session_hours == 12.0 and settings.state_dir == config.DEFAULT_STATE_DIR
    assert settings.redis_url is None and settings.drift_interval == 3600


def test_a_bad_variable_is_named_with_a_short_piece_of_its_value(tmp_path, monkeypatch):
    monkeypatch.setenv("OPCON_SESSION_HOURS", "abc")
    with pytest.raises(SettingsError, match=r"^OPCON_SESSION_HOURS: .*number.*\(got `abc`\)$"):
        from_env(state_dir=tmp_path / "state")
    monkeypatch.setenv("OPCON_SESSION_HOURS", "12")
    monkeypatch.setenv("OPCON_LOGIN_MAX_FAILURES", "x" * 500)
    with pytest.raises(SettingsError) as raised:
        from_env(state_dir=tmp_path / "state")
    message = str(raised.value)
    assert message.startswith("OPCON_LOGIN_MAX_FAILURES: ") and "x" * 21 not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # not pydantic's echo
    monkeypatch.setenv("OPCON_LOGIN_MAX_FAILURES", "5")
    monkeypatch.setenv("OPCON_API_TOKEN_ROLE", "superuser")
    with pytest.raises(SettingsError, match=r"^OPCON_API_TOKEN_ROLE: must be one of viewer, operator"):
        from_env(state_dir=tmp_path / "state")


def test_an_override_is_named_by_its_field_and_a_secret_never_shown(monkeypatch):
    with pytest.raises(SettingsError, match=r"^session_hours: .*\(got `soon`\)$"):
        Settings.load(session_hours="soon")

    class Probe(EnvSettings):
        secret_key: int = 0

    monkeypatch.setenv("OPCON_SECRET_KEY", "hunter2-hunter2")
    with pytest.raises(SettingsError, match=r"^OPCON_SECRET_KEY: ") as raised:
        Probe.load()
    assert "hunter2" not in str(raised.value)


def test_an_app_with_a_bad_variable_fails_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("OPCON_DRIFT_SHARE", "half")
    with pytest.raises(SettingsError, match="OPCON_DRIFT_SHARE"):
        create_app({"testing": True, "api_token": TOKEN, "state_dir": tmp_path / "state"})


def test_a_bad_variable_stops_the_bootstrap_with_its_name(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPCON_")}
    done = subprocess.run([sys.executable, "-m", "control_api.identity.bootstrap"], cwd=config.REPO_ROOT,
                          env={**env, "OPCON_HOME": str(tmp_path / "home"), "OPCON_SESSION_HOURS": "long"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("OPCON_SESSION_HOURS: ") and "Traceback" not in done.stderr


def test_the_deployments_values_are_valid_settings(monkeypatch):
    """What compose and .env.example give each service parses with the settings it runs."""
    runs = {"init": [Settings, MLSettings, BootstrapSettings], "api": [Settings, MLSettings, ServerSettings],
            "worker": [Settings, MLSettings], "mlflow": [AuthSettings]}
    example = {k: v or "a-secret-set-in-dot-env" for k, v in env_example().items()}  # required ones
    for service, classes in runs.items():
        with monkeypatch.context() as patch:
            given = dict(example) if ".env" in env_files(SERVICES[service]) else {}
            given |= {k: interpolate(v, example) for k, v in environment(SERVICES[service]).items()}
            for name, value in given.items():
                patch.setenv(name, value)
            for cls in classes:
                cls.load()  # raises SettingsError naming a bad one


# -- nothing writes the environment ----------------------------------------------------------------

def test_from_env_leaves_the_environment_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("OPCON_HOME", str(tmp_path / "env-state"))
    before = dict(os.environ)
    settings = from_env(state_dir=tmp_path / "other", project_dir=tmp_path / "project")
    assert dict(os.environ) == before
    assert settings.state_dir == settings.ml.state_dir == (tmp_path / "other").resolve()
    assert settings.ml.project_dir == (tmp_path / "project").resolve()
    assert config.state_dir() == (tmp_path / "env-state").resolve()  # the ml side: still the env's


def test_pointing_mlflow_at_a_store_leaves_its_variables_unset(tmp_path, monkeypatch):
    config.quiet_third_parties()
    before = dict(os.environ)
    import mlflow

    for name in ("one", "two"):
        with config.bound(MLSettings.load(state_dir=tmp_path / name)):
            tracking.configure()
            assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / name / 'mlflow' / 'mlflow.db'}"
    assert dict(os.environ) == before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert config.mlflow_tracking_uri() == "http://mlflow.example:5000"  # a person's own store


def test_child_processes_get_the_settings_in_an_explicit_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPCON_HOME", str(tmp_path / "parent"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://stale.example")
    before = dict(os.environ)
    settings = MLSettings.load(state_dir=tmp_path / "child", mlflow_tracking_uri=None,
                               dvc_remote="s3://bucket/data")
    env = tool_env(settings)
    assert dict(os.environ) == before
    assert env["OPCON_HOME"] == str((tmp_path / "child").resolve())
    assert env["OPCON_DVC_REMOTE"] == "s3://bucket/data" and "MLFLOW_TRACKING_URI" not in env
    assert env["DO_NOT_TRACK"] == "1" and env["PATH"].startswith(str(Path(sys.executable).parent))
    code = "from ml import config; print(config.state_dir(), config.dvc_remote_url())"
    printed = subprocess.run([sys.executable, "-c", code], cwd=config.REPO_ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout.split()
    assert printed == [str((tmp_path / "child").resolve()), "s3://bucket/data"]
    assert MLSettings.variables()["actor"] == registry.ACTOR_VARIABLE


# -- several apps in one process -------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_project(module_state):
    return build_project(module_state, rows=300)


def ml_state_in_a_request(app) -> Path:
    with app.test_request_context("/health"):
        app.preprocess_request()  # the app's before_request hooks, as for a real request
        return config.state_dir()


def register_a_version(state: Path, project, name: str) -> None:
    with config.bound(MLSettings.load(state_dir=state, project_dir=project.path)):
        client = registry.client()
        client.create_registered_model(name)
        client.create_model_version(name, f"file://{state}/no-model", run_id=None)


def test_two_apps_on_two_state_dirs_keep_their_own_paths(shared_project, tmp_path, monkeypatch):
    monkeypatch.setenv("OPCON_HOME", str(shared_project.state))
    name = shared_project.params.registry.model_name
    first_state, second_state = tmp_path / "first", tmp_path / "second"
    register_a_version(first_state, shared_project, name)
    before = dict(os.environ)
    first = create_app({"testing": True, "api_token": TOKEN, "state_dir": first_state,
                        "project_dir": shared_project.path})
    second = create_app({"testing": True, "api_token": TOKEN, "state_dir": second_state,
                         "project_dir": shared_project.path})
    for app, state, versions in ((first, first_state, 1), (second, second_state, 0),
                                 (first, first_state, 1)):
        services = app.extensions["opcon"]
        assert services.settings.state_dir == state.resolve()
        assert services.predictions.directory == state.resolve() / "predictions"
        assert ml_state_in_a_request(app) == state.resolve()
        listed = Client(app).get("/api/v1/models").get_json()
        assert len(listed["versions"]) == versions, f"{state.name}: the other app's MLflow store?"
    assert (second_state / "mlflow" / "mlflow.db").is_file()
    assert config.state_dir() == shared_project.state.resolve()  # outside a request: the env's
    assert dict(os.environ) == before


def test_the_threads_an_app_starts_read_its_store_whatever_the_environment_says(shared_project, tmp_path,
                                                                                monkeypatch):
    """A new thread has none of its maker's context: the shadow scorer (and the champion's loaders)
    are made with the app's ml settings, so they read its registry even when OPCON_HOME names
    another state dir by the time they run, and create nothing there."""
    name = shared_project.params.registry.model_name
    state, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    register_a_version(state, shared_project, name)
    with config.bound(MLSettings.load(state_dir=state, project_dir=shared_project.path)):
        registry.client().set_registered_model_alias(name, registry.CHALLENGER, "1")
    monkeypatch.setenv("OPCON_HOME", str(elsewhere))
    app = create_app({"testing": True, "api_token": TOKEN, "state_dir": state,
                      "project_dir": shared_project.path})
    shadow = app.extensions["opcon"].shadow
    with app.test_request_context("/health"):
        app.preprocess_request()
        shadow.start()  # as the first shadowed request does
    wait_until(lambda: shadow.load_error is not None, 60, "the shadow scorer's first registry read")
    assert "could not load the challenger" in shadow.load_error  # found it: version 1 has no model
    assert not (elsewhere / "mlflow").exists()
    tried = []
    monkeypatch.setattr(serving, "load", lambda *args, **kwargs: tried.append(args[1]))
    shadow.refresh()
    assert tried == [] and shadow.model is None  # it failed a moment ago: not retried at each poll

    thread_state = []
    with config.bound(MLSettings.load(state_dir=state)):
        made = config.thread(lambda: thread_state.append(config.state_dir()), name="probe")
    made.start()
    made.join()
    assert thread_state == [state.resolve()]
