"""Fixtures: every test gets its own $OPCON_HOME; pipeline tests get their own DVC project.
The functions and constants behind them are in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import (
    STATE_VARIABLES,
    TOKEN,
    Client,
    Project,
    build_project,
    postgres_database,
    project_for_apps,
)


def pytest_configure(config):
    """A promotion is served at once in tests (an app, or the servers a test starts), as by a single
    worker; tests/test_api_rollout.py sets a lead of its own to test the deployment-wide switch."""
    os.environ.setdefault("OPCON_MODEL_SWITCH_LEAD_SECONDS", "0")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true every test runs: a skipped one (a missing server, say) fails instead."""
    report = yield
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
    return report


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    for name in STATE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "state"
    monkeypatch.setenv("OPCON_HOME", str(home))
    return home


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


@pytest.fixture(scope="module")
def apps_project(module_state) -> Project:
    """A small project (300 rows, untrained) for the apps a module builds in this process."""
    with project_for_apps(module_state, rows=300) as built:
        yield built


@pytest.fixture(scope="module")
def trained(module_state) -> Project:
    """A project of this module with a trained champion (version 1)."""
    project = build_project(module_state, rows=2000)
    project.train()
    return project


@pytest.fixture(scope="module")
def app(trained):
    """The control API built in this process on `trained`, with the API token helpers.TOKEN."""
    from control_api import create_app  # when a test needs it, not when pytest loads this file

    return create_app({"testing": True, "api_token": TOKEN, "state_dir": trained.state,
                       "project_dir": trained.path})


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app)


@pytest.fixture
def fresh_postgres_url():
    """A fresh PostgreSQL database for one test (see helpers.postgres_database)."""
    with postgres_database() as url:
        yield url
