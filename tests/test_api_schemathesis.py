"""Property-based tests of the API against its own OpenAPI spec (schemathesis): no input gives a
5xx, and every response matches the spec (status code, content type, body schema)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from control_api import create_app
from tests.helpers import build_project

TOKEN = "schemathesis-token"
EXAMPLES_PER_OPERATION = 25
# A schema cannot say "a CSV whose rows pass the data set's validation": an upload can be
# schema-valid and still rightly refused with 422. Every other check applies.
SEMANTIC_CHECKS = [positive_data_acceptance]


@pytest.fixture(scope="module")
def api_schema(module_state):
    project = build_project(module_state, rows=1200)
    project.dvc("repro")
    app = create_app({"testing": True, "api_token": TOKEN, "state_dir": project.state,
                      "project_dir": project.path})
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_keeps_its_contract(api_schema):
    tested = []
    for operation in operations(api_schema):
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                   excluded_checks=SEMANTIC_CHECKS)

        check()
        tested.append(operation.label)
    assert len(tested) >= 12, tested
