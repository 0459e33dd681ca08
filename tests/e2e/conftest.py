"""One real back end, one `streamlit run` and one Chromium page for the browser tests of a module.

The back end asks for an admin's approval before a challenger that passes the gate replaces the
champion (`registry.require_approval`); with `min_improvement: 0` a retrain on the same data passes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from ml.config import REPO_ROOT
from tests.e2e.servers import CHROMIUM, VIEWPORT, Forwarder, chromium, start_backend, start_streamlit

APPROVAL = {"registry": {"require_approval": True}, "evaluate": {"min_improvement": 0.0}}


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the console in a real browser (Chromium)")


def screenshot_dir() -> Path:
    """docs/screenshots with OPCON_UPDATE_SCREENSHOTS=1 (for the README), else git-ignored artifacts."""
    if os.environ.get("OPCON_UPDATE_SCREENSHOTS") == "1":
        return REPO_ROOT / "docs" / "screenshots"
    return REPO_ROOT / "tests" / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def backend(module_state):
    services = start_backend(module_state, params_changes=APPROVAL)
    yield services
    services.stop()


@pytest.fixture(scope="module")
def api_link(backend):
    """The console reaches the API through this, so a test can take the API away and back."""
    link = Forwarder(backend.port).start()
    yield link
    link.stop()


@pytest.fixture(scope="module")
def console(backend, api_link):
    app = start_streamlit(backend, api_link.url)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def page(console):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (make test does)")
    with sync_playwright() as playwright:
        browser = chromium(playwright)
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        context.set_default_timeout(30_000)
        tab = context.new_page()
        tab.goto(console.url)
        yield tab
        context.close()
        browser.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = screenshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
