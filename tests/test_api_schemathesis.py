"""The API against its own OpenAPI spec: schemathesis (its CLI, every check) on the real server
(gunicorn). No input gives a 5xx; every response matches the spec (status code, content type,
headers, body); schema-valid requests are accepted and schema-invalid ones refused; a method a
route does not take gets 405 with `Allow`. tests/schemathesis.toml names the few operations where
a schema-valid request may still be refused (rules a JSON Schema cannot state), and why.

The report is printed (`pytest -s` shows it) and is the message of a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import build_project
from tests.live import TOKEN, Services

EXAMPLES_PER_OPERATION = 10
SEED = 20250101  # the same cases every run; change it to explore others
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def api(module_state):
    """The API under gunicorn on a trained project, and no job worker: a job it is asked for stays
    queued (the next request for that kind is answered 409), and no pipeline runs meanwhile."""
    project = build_project(module_state, rows=1200)
    project.train()
    services = Services(project.path, project.state)
    services.project = project
    services.start_api()
    try:
        services.wait_ready()
        yield services
    finally:
        services.stop()


def summary(report: str) -> str:
    """The report from its SUMMARY line on (the whole report when it has none)."""
    start = report.find("SUMMARY")
    return report[report.rfind("\n", 0, start) + 1:] if start >= 0 else report


def test_every_operation_keeps_its_contract_under_every_check(api):
    command = [str(SCHEMATHESIS), "--no-color", "--config-file", str(CONFIG), "run",
               f"{api.url}/openapi.json", "--checks", "all",
               "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED),
               "--header", f"Authorization: Bearer {TOKEN}", "--suppress-health-check", "all"]
    # in the state dir: schemathesis keeps a cache of what failed in its working directory
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False,
                            cwd=api.project.state)
    report = result.stdout + result.stderr
    print(f"\n{summary(report)}")
    assert result.returncode == 0, f"schemathesis found failures:\n{report}\n{api.tail('api.log')}"
    tested = re.search(r"Tested: (\d+)", report)
    assert tested and int(tested.group(1)) >= 30, report
