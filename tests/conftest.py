"""Fixtures: every test gets its own $OPCON_HOME; pipeline tests get their own DVC project."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ml import config, workspace
from ml import params as params_module
from ml.data import ensure_raw_data
from ml.params import Params
from ml.versioning import dvc, run

REPO = config.REPO_ROOT
STATE_VARIABLES = ("OPCON_HOME", "OPCON_PROJECT_DIR", "OPCON_DVC_REMOTE", "OPCON_ARTIFACT_ROOT",
                   "MLFLOW_TRACKING_URI")


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

    def git_commit(self, message: str) -> None:
        run(["git", "add", "-A"], self.path, "git add")
        run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm",
             message], self.path, "git commit")

    def json(self, relative: str) -> dict:
        return json.loads((self.path / relative).read_text())

    @property
    def raw(self) -> Path:
        return self.path / self.params.dataset.raw


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    for name in STATE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "state"
    monkeypatch.setenv("OPCON_HOME", str(home))
    return home


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


@pytest.fixture
def project(tmp_path, state_dir) -> Project:
    return build_project(tmp_path)


@pytest.fixture(scope="module")
def module_state(tmp_path_factory):
    """A state dir shared by the tests of one module (for one expensive pipeline run)."""
    root = tmp_path_factory.mktemp("module")
    with pytest.MonkeyPatch.context() as patch:
        for name in STATE_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("OPCON_HOME", str(root / "state"))
        yield root


@contextlib.contextmanager
def project_for_apps(root: Path, rows: int):
    """A project for apps built in this process. create_app writes OPCON_HOME and
    OPCON_PROJECT_DIR into the environment; they are put back when the module is done."""
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


@pytest.fixture
def fresh_postgres_url():
    """A fresh PostgreSQL database for one test (see postgres_database)."""
    with postgres_database() as url:
        yield url
