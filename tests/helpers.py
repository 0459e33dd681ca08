"""What several test modules share that is not a fixture: temp DVC projects, a PostgreSQL database,
the test client of an app built in this process and the error body it checks, a typical record,
the metric names the API exports. Fixtures are in tests/conftest.py, live servers in tests/live.py."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import re
import secrets
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ml import config, workspace
from ml import params as params_module
from ml.params import Params
from ml.raw_data import ensure_raw_data
from ml.versioning import dvc, run

REPO = config.REPO_ROOT
STATE_VARIABLES = ("OPCON_HOME", "OPCON_PROJECT_DIR", "OPCON_DVC_REMOTE", "OPCON_ARTIFACT_ROOT",
                   "MLFLOW_TRACKING_URI")


# -- temp DVC projects ---------------------------------------------------------------------------

def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied recursively; a None value deletes the key."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


@dataclasses.dataclass
class Project:
    """A DVC project in a temp dir, running this repository's stages (ml/ is linked in)."""

    path: Path
    state: Path

    @property
    def params(self) -> Params:
        return params_module.load(self.path)

    def write_params(self, raw: dict) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    def update_params(self, changes: dict) -> None:
        self.write_params(merged(yaml.safe_load((self.path / "params.yaml").read_text()), changes))

    def dvc(self, *args: str) -> str:
        return dvc(*args, cwd=self.path)

    def train(self) -> None:
        """The whole pipeline, run in this process and committed to dvc.lock, as `dvc repro` leaves
        it (ml.in_process: the libraries are imported once, not once per stage)."""
        from ml import in_process

        in_process.run(self.path, log=lambda line: None)

    def git_commit(self, message: str) -> None:
        run(["git", "add", "-A"], self.path, "git add")
        run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm",
             message], self.path, "git commit")

    def json(self, relative: str) -> dict:
        return json.loads((self.path / relative).read_text())

    @property
    def raw(self) -> Path:
        return self.path / self.params.dataset.raw


def build_project(root: Path, params_changes: dict | None = None, rows: int = 2000,
                  raw: pd.DataFrame | None = None) -> Project:
    """Make a project under `root` (OPCON_HOME must already point at its state dir)."""
    base = merged(repo_params(), {"dataset": {"generator": {"rows": rows, "seed": 7}},
                                  "emissions": {"measure_power_secs": 1}})
    raw_params = merged(base, params_changes or {})
    path = workspace.create(root / "project", raw_params)
    project = Project(path, Path(os.environ["OPCON_HOME"]))
    if raw is not None:
        target = path / raw_params["dataset"]["raw"]
        target.parent.mkdir(parents=True, exist_ok=True)
        raw.to_csv(target, index=False)
    ensure_raw_data(path, project.params)
    return project


@contextlib.contextmanager
def project_for_apps(root: Path, rows: int):
    """A project for apps built in this process: OPCON_HOME and OPCON_PROJECT_DIR name it while the
    module runs (its pipeline runs and apps read them) and are put back when the module is done."""
    with pytest.MonkeyPatch.context() as patch:
        built = build_project(root, rows=rows)
        patch.setenv("OPCON_PROJECT_DIR", str(built.path))
        patch.setenv("OPCON_HOME", str(built.state))
        yield built


# -- PostgreSQL on the local server (127.0.0.1:5432, trust auth) -----------------------------------

POSTGRES_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


@contextlib.contextmanager
def postgres_database(prefix: str = "opcon_test"):
    """A new, empty database on the local PostgreSQL server, dropped afterwards; yields its URL.

    An unreachable server fails the test: these tests never skip (`make test` starts the server).
    """
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        admin.dispose()
        pytest.fail(f"PostgreSQL ({POSTGRES_SERVER}) is unreachable: {str(error).splitlines()[0]} "
                    "(`make services` installs and starts it)")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- an app built in this process, through Flask's test client -------------------------------------

TOKEN = f"secret-{secrets.token_hex(12)}"  # the API token of the `app` fixture's app


class Client:
    """Flask's test client with the bearer token; checks what every response must satisfy."""

    def __init__(self, app, token: str = TOKEN):
        self.app, self.raw, self.token = app, app.test_client(), token

    def open(self, method: str, path: str, *, auth: bool = True, headers: dict | None = None,
             allow_500: bool = False, **kwargs):
        sent = {"Authorization": f"Bearer {self.token}"} if auth else {}
        response = self.raw.open(path, method=method, headers={**sent, **(headers or {})}, **kwargs)
        body = response.get_data()
        assert self.token.encode() not in body, f"{method} {path} leaks the API token"
        assert not any(self.token in value for _, value in response.headers.items())
        if not allow_500:
            assert response.status_code != 500, f"{method} {path}: {body[:500]!r}"
        return response

    def get(self, path: str, **kwargs):
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.open("POST", path, **kwargs)

    def upload(self, path: str, content: bytes, filename: str = "batch.csv", **kwargs):
        return self.post(path, data={"file": (io.BytesIO(content), filename)},
                         content_type="multipart/form-data", **kwargs)


def error_body(response, status: int) -> dict:
    """The error body every failure has: JSON {"error": str, "details": list}."""
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.is_json, response.content_type
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["details"], list)
    return body


def fields(body: dict) -> set[str]:
    return {item["field"] for item in body["details"]}


def typical_record(schema) -> dict:
    """The schema's typical values, numbers as floats."""
    return {f.name: (f.typical if f.type == "category" else float(f.typical)) for f in schema.features}


# -- Prometheus ----------------------------------------------------------------------------------

COUNTERS = {"opcon_predictions_total", "flask_http_request_total", "opcon_jobs_total",
            "opcon_shadow_rows_total", "opcon_shadow_failures_total"}
HISTOGRAMS = {"opcon_prediction_latency_seconds", "flask_http_request_duration_seconds"}
GAUGES = {"opcon_api_info", "opcon_champion_info", "opcon_drift_dataset_drift", "opcon_drift_share",
          "opcon_drift_feature_drifted", "opcon_drift_report_timestamp_seconds",
          "opcon_job_duration_seconds", "opcon_jobs_queued", "opcon_training_emissions_kg_co2eq",
          "opcon_training_energy_kwh", "opcon_estimated_performance", "opcon_estimated_performance_floor"}
# every series name the API exports (as scraped), plus Prometheus' own `up`
EXPORTED_METRICS = COUNTERS | GAUGES | {"up"} | {
    f"{name}_{suffix}" for name in HISTOGRAMS for suffix in ("bucket", "count", "sum")}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                   "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression (or a Grafana query) selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # label matchers, ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        followed_by = text[match.end():].lstrip()[:1]
        if followed_by != "(" and match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def binary(name: str) -> str:
    """The path of a Prometheus binary; `make test` installs them, so a missing one is a failure."""
    path = shutil.which(name)
    if not path:
        pytest.fail(f"`{name}` not found: install the Debian package `prometheus` (`make system-packages`)")
    return path


def run_job_here(services, job_id: str) -> dict:
    """A queued job run by the worker's own code in this process (no worker takes the app's jobs);
    the runner's process-wide context is put back afterwards. Returns the finished record."""
    from control_api.jobs import runner

    saved = dict(runner._context)
    runner.configure(services.settings, services.jobs)
    try:
        runner.execute(job_id)
    finally:
        runner._context.clear()
        runner._context.update(saved)
    return services.jobs.get(job_id)
