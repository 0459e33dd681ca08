"""Validation of raw data: a Great Expectations suite generated from the schema, readable failures.

Used by the `validate` stage (which writes data/validation.json) and by the API on uploads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from ml.errors import DataError
from ml.layout import VALIDATION_REPORT
from ml.params import Params
from ml.schema import Schema
from ml.stage import Outcome, Stage
from ml.tables import read_csv
from ml.versioning import data_version

LIBRARIES = ("great_expectations", "great_expectations.expectations")
NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "Int64", "Float64"]


@dataclasses.dataclass
class ValidationReport:
    success: bool
    rows: int
    failures: list[dict]
    expectations: list[dict]
    data_version: str | None = None

    def summary(self) -> str:
        if self.success:
            return f"validation passed: {self.rows} rows, {len(self.expectations)} expectations met"
        lines = [f"validation failed: {len(self.failures)} problem(s) in {self.rows} rows"]
        lines += [f"  - {f['message']}" for f in self.failures]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_suite(schema: Schema):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="raw_data")
    add = suite.add_expectation
    add(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    add(gxe.ExpectTableColumnsToMatchSet(column_set=schema.columns, exact_match=True))
    for column in schema.columns:
        add(gxe.ExpectColumnToExist(column=column))
        add(gxe.ExpectColumnValuesToNotBeNull(column=column))
    for feature in schema.features:
        if feature.type == "category":
            add(gxe.ExpectColumnValuesToBeInSet(column=feature.name, value_set=feature.categories))
            continue
        add(gxe.ExpectColumnValuesToBeInTypeList(column=feature.name, type_list=NUMERIC_TYPES))
        if feature.min is not None or feature.max is not None:
            add(gxe.ExpectColumnValuesToBeBetween(column=feature.name, min_value=feature.min,
                                                  max_value=feature.max))
    add(gxe.ExpectColumnValuesToBeInSet(column=schema.target.name, value_set=schema.target.classes))
    for column in schema.id_columns:
        add(gxe.ExpectColumnValuesToBeUnique(column=column))
    return suite


def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _run_suite(frame: pd.DataFrame, schema: Schema):
    context = _context()  # a suite needs a context to exist before it is built
    suite = build_suite(schema)
    batch = (context.data_sources.add_pandas("pandas")
             .add_dataframe_asset("raw")
             .add_batch_definition_whole_dataframe("all")
             .get_batch(batch_parameters={"dataframe": frame}))
    # the common case passes: verdicts alone are cheaper; the details are computed only on failure
    result = batch.validate(suite, result_format="BOOLEAN_ONLY")
    return result if result.success else batch.validate(suite, result_format="BASIC")


def _examples(result: dict) -> str:
    values = list(dict.fromkeys(result.get("partial_unexpected_list") or []))[:3]
    return f" (e.g. {', '.join(repr(v) for v in values)})" if values else ""


def _describe(kind: str, kwargs: dict, result: dict, schema: Schema) -> str:
    column = kwargs.get("column")
    count = result.get("unexpected_count")
    if kind == "expect_table_row_count_to_be_between":
        return "the file has no data rows"
    if kind == "expect_table_columns_to_match_set":
        extra = sorted(set(result.get("observed_value") or []) - set(schema.columns))
        return f"unexpected column(s): {', '.join(f'`{c}`' for c in extra)}" if extra else ""
    if kind == "expect_column_to_exist":
        return f"column `{column}` is missing"
    if kind == "expect_column_values_to_not_be_null":
        return f"column `{column}`: {count} empty value(s)"
    if kind == "expect_column_values_to_be_in_type_list":
        observed = result.get("observed_value") or "text"
        return f"column `{column}`: expected numbers, found {observed}{_examples(result)}"
    if kind == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        values = result.get("partial_unexpected_list") or []
        if high is not None and values and all(v > high for v in values):
            where = f"above the allowed {high:g}"
        elif low is not None and values and all(v < low for v in values):
            where = f"below the allowed {low:g}"
        else:
            where = f"outside the allowed {low:g} to {high:g}"
        return f"column `{column}`: {count} value(s) {where}{_examples(result)}"
    if kind == "expect_column_values_to_be_in_set":
        allowed = ", ".join(str(v) for v in kwargs.get("value_set") or [])
        what = "class(es)" if column == schema.target.name else "categories"
        return f"column `{column}`: {count} value(s) not in the allowed {what} {allowed}{_examples(result)}"
    if kind == "expect_column_values_to_be_unique":
        return f"column `{column}`: {count} duplicated ID value(s){_examples(result)}"
    return f"column `{column}`: {kind} failed"


def validate_frame(frame: pd.DataFrame, schema: Schema) -> ValidationReport:
    result = _run_suite(frame, schema)
    missing = {c for c in schema.columns if c not in frame.columns}
    # GE does not keep suite order, so find the wrongly typed columns before reading the rest
    mistyped = {r.expectation_config.kwargs.get("column") for r in result.results
                if r.expectation_config.type == "expect_column_values_to_be_in_type_list"
                and not r.success}
    failures, expectations = [], []
    for item in sorted(result.results, key=lambda r: r.expectation_config.type != "expect_column_to_exist"):
        kind = item.expectation_config.type
        kwargs = item.expectation_config.kwargs
        column = kwargs.get("column")
        expectations.append({"expectation": kind, "column": column, "success": bool(item.success)})
        if item.success:
            continue
        if column in missing and kind != "expect_column_to_exist":
            continue  # reported once, as missing
        if column in mistyped and kind == "expect_column_values_to_be_between":
            continue  # a range means nothing on text
        message = _describe(kind, kwargs, item.result or {}, schema)
        if message:
            failures.append({"column": column, "expectation": kind, "message": message})
    return ValidationReport(success=not failures, rows=len(frame), failures=failures,
                            expectations=expectations)


def validate_file(path: Path, schema: Schema) -> ValidationReport:
    """Validate a raw file; an unreadable file becomes a failed report, not an exception."""
    try:
        frame = read_csv(path, schema)
    except DataError as error:
        return ValidationReport(success=False, rows=0, expectations=[],
                                failures=[{"column": None, "expectation": "readable_csv",
                                           "message": str(error)}])
    report = validate_frame(frame, schema)
    report.data_version = data_version(path)
    return report


def run(project: Path, params: Params) -> Outcome:
    """The `validate` stage: the report on the raw data; it fails when the data does."""
    report = validate_file(project / params.dataset.raw, params.schema)
    return Outcome(ok=report.success, summary=report.summary(), result=report.to_dict(),
                   outputs={VALIDATION_REPORT: json.dumps(report.to_dict(), indent=2, default=str) + "\n"})


STAGE = Stage("validate", run, libraries=LIBRARIES)
