"""ml.validate: the Great Expectations suite built from the schema, and its readable failures."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import config
from ml import params as params_module
from ml.generate import generate
from ml.schema import Schema
from ml.validation import ValidationReport, validate_file

ROWS = 300


@pytest.fixture(scope="module")
def schema() -> Schema:
    return params_module.load(config.REPO_ROOT).schema


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    return generate(ROWS, 5)


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "raw.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def messages(report: ValidationReport, column: str | None = None) -> list[str]:
    return [f["message"] for f in report.failures if column is None or f["column"] == column]


def failed_with(report: ValidationReport, *parts: str) -> str:
    """The failure message holding every one of `parts` (the report must have failed)."""
    assert report.success is False
    assert report.failures, "a failed report must say why"
    matching = [m for m in messages(report) if all(p in m for p in parts)]
    assert matching, f"no failure mentions {parts}: {messages(report)}"
    return matching[0]


def test_good_data_passes(tmp_path, schema, good):
    path = write(tmp_path, good)
    report = validate_file(path, schema)
    assert report.success is True
    assert report.failures == []
    assert report.rows == ROWS
    assert report.data_version == hashlib.md5(path.read_bytes()).hexdigest()
    assert report.expectations and all(e["success"] for e in report.expectations)
    assert {e["column"] for e in report.expectations} >= set(schema.columns)
    assert report.summary().startswith("validation passed")


def test_missing_column_is_reported_once(tmp_path, schema, good):
    report = validate_file(write(tmp_path, good.drop(columns=["torque_nm"])), schema)
    failed_with(report, "column `torque_nm` is missing")
    about_torque = [m for m in messages(report) if "torque_nm" in m]
    assert len(about_torque) == 1, about_torque


def test_text_in_a_number_column_is_a_type_failure_only(tmp_path, schema, good):
    frame = good.copy()
    frame["torque_nm"] = "high"
    report = validate_file(write(tmp_path, frame), schema)
    failed_with(report, "`torque_nm`", "expected numbers", "'high'")
    torque = [f for f in report.failures if f["column"] == "torque_nm"]
    kinds = [f["expectation"] for f in torque]
    # a range check means nothing on text: it must not add a second, confusing failure
    assert kinds == ["expect_column_values_to_be_in_type_list"], torque
    assert not any("None" in f["message"] for f in report.failures)


def test_value_above_range(tmp_path, schema, good):
    frame = good.copy()
    frame.loc[7, "torque_nm"] = 812.0
    report = validate_file(write(tmp_path, frame), schema)
    message = failed_with(report, "`torque_nm`", "above the allowed 100")
    assert "812" in message
    assert "1 value(s)" in message
    assert len(report.failures) == 1


def test_value_below_range(tmp_path, schema, good):
    frame = good.copy()
    frame.loc[7, "air_temperature_k"] = 100
    report = validate_file(write(tmp_path, frame), schema)
    message = failed_with(report, "`air_temperature_k`", "below the allowed 280")
    assert "100" in message


def test_unknown_category(tmp_path, schema, good):
    frame = good.copy()
    frame.loc[7, "type"] = "X"
    report = validate_file(write(tmp_path, frame), schema)
    message = failed_with(report, "`type`", "not in the allowed categories")
    assert "'X'" in message
    assert "L, M, H" in message


def test_unknown_target_class(tmp_path, schema, good):
    frame = good.copy()
    frame.loc[7, "machine_failure"] = 2
    report = validate_file(write(tmp_path, frame), schema)
    message = failed_with(report, "`machine_failure`", "not in the allowed class(es)")
    assert "(e.g. 2)" in message


def test_empty_values(tmp_path, schema, good):
    frame = good.copy()
    frame.loc[[3, 4, 5], "air_temperature_k"] = np.nan
    report = validate_file(write(tmp_path, frame), schema)
    failed_with(report, "`air_temperature_k`", "3 empty value(s)")


def test_duplicated_ids(tmp_path, schema, good):
    frame = good.copy()
    frame.loc[9, "udi"] = frame.loc[8, "udi"]
    report = validate_file(write(tmp_path, frame), schema)
    message = failed_with(report, "`udi`", "duplicated ID")
    assert str(frame.loc[8, "udi"]) in message


def test_unexpected_extra_column(tmp_path, schema, good):
    frame = good.assign(operator_note="checked")
    report = validate_file(write(tmp_path, frame), schema)
    failed_with(report, "unexpected column(s)", "`operator_note`")
    assert len(report.failures) == 1


def test_header_only_has_no_data_rows(tmp_path, schema, good):
    report = validate_file(write(tmp_path, good.iloc[:0]), schema)
    failed_with(report, "no data rows")
    assert report.rows == 0


def test_empty_file(tmp_path, schema):
    path = tmp_path / "raw.csv"
    path.write_bytes(b"")
    report = validate_file(path, schema)
    failed_with(report, "raw.csv", "is empty")
    assert report.rows == 0
    assert report.data_version is None


def test_binary_file_is_not_a_csv(tmp_path, schema):
    path = tmp_path / "raw.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(512))
    report = validate_file(path, schema)
    failed_with(report, "raw.csv", "not a UTF-8 CSV")


def test_gzip_compressed_csv_is_not_a_csv(tmp_path, schema, good):
    path = tmp_path / "raw.csv"
    path.write_bytes(gzip.compress(good.to_csv(index=False).encode()))
    report = validate_file(path, schema)
    failed_with(report, "not a UTF-8 CSV")


def test_missing_file(tmp_path, schema):
    report = validate_file(tmp_path / "nowhere.csv", schema)
    failed_with(report, "nowhere.csv", "does not exist")
    assert report.rows == 0


def test_several_problems_are_all_reported(tmp_path, schema, good):
    frame = good.drop(columns=["torque_nm"])
    frame.loc[3, "air_temperature_k"] = 400.0
    frame.loc[4, "type"] = "Z"
    report = validate_file(write(tmp_path, frame), schema)
    failed_with(report, "column `torque_nm` is missing")
    failed_with(report, "`air_temperature_k`", "above the allowed 320")
    failed_with(report, "`type`", "'Z'")
    assert {f["column"] for f in report.failures} == {"torque_nm", "air_temperature_k", "type"}


def test_summary_lists_each_failure_on_its_own_line(tmp_path, schema, good):
    frame = good.drop(columns=["torque_nm"])
    frame.loc[3, "air_temperature_k"] = 400.0
    report = validate_file(write(tmp_path, frame), schema)
    lines = report.summary().splitlines()
    assert lines[0] == f"validation failed: {len(report.failures)} problem(s) in {ROWS} rows"
    assert len(lines) == 1 + len(report.failures) == 3
    for line, failure in zip(lines[1:], report.failures, strict=True):
        assert line == f"  - {failure['message']}"


def test_stage_exits_1_with_a_readable_message_and_writes_the_report(tmp_path, good):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(config.REPO_ROOT / "params.yaml", project / "params.yaml")
    frame = good.copy()
    frame.loc[7, "torque_nm"] = 812.0
    raw = project / "data" / "raw" / "machines.csv"
    raw.parent.mkdir(parents=True)
    frame.to_csv(raw, index=False)
    env = {k: v for k, v in os.environ.items() if k not in ("OPCON_PROJECT_DIR", "MLFLOW_TRACKING_URI")}
    env["OPCON_HOME"] = str(tmp_path / "state")
    env["PYTHONPATH"] = os.pathsep.join([str(config.REPO_ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "ml.validate"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "validation failed" in done.stderr
    assert "column `torque_nm`: 1 value(s) above the allowed 100" in done.stderr
    report = json.loads((project / "data" / "validation.json").read_text())
    assert report["success"] is False
    assert report["rows"] == ROWS
    assert report["data_version"] == hashlib.md5(raw.read_bytes()).hexdigest()
    assert any("812" in f["message"] for f in report["failures"])
