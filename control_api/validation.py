"""Input models generated from the data set's schema (pydantic), and the same rules on CSV batches."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from ml.schema import Feature, Schema

EXAMPLE_ROWS = 10  # row numbers quoted per problem in a batch


def _field(feature: Feature):
    if feature.type == "category":
        annotation = Literal[tuple(feature.categories)]
    else:
        annotation = Annotated[float, Field(ge=feature.min, le=feature.max, strict=True,
                                            allow_inf_nan=False)]
    description = " ".join(filter(None, [feature.description,
                                         f"({feature.unit})" if feature.unit else ""]))
    example = feature.typical if feature.typical is not None else (
        feature.categories[0] if feature.categories else feature.min)
    return (annotation, Field(description=description, examples=[example]))


def record_model(schema: Schema) -> type[BaseModel]:
    """One input record: every feature required, strict types, extra fields refused."""
    fields = {feature.name: _field(feature) for feature in schema.features}
    return create_model("Record", __config__=ConfigDict(extra="forbid"), **fields)


def predict_request_model(schema: Schema, max_records: int) -> type[BaseModel]:
    record = record_model(schema)
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid"),
        records=(list[record], Field(min_length=1, max_length=max_records,
                                     description=f"1 to {max_records} records to score")))


def _range(feature: Feature) -> str:
    low = "-inf" if feature.min is None else f"{feature.min:g}"
    high = "inf" if feature.max is None else f"{feature.max:g}"
    return f"{low} to {high}"


def _rows(mask: np.ndarray) -> list[int]:
    """1-based data-row numbers (the header is not a row) of the first offending rows."""
    return (np.flatnonzero(mask)[:EXAMPLE_ROWS] + 1).tolist()


def _problem(column: str, problem: str, mask: np.ndarray) -> dict:
    return {"field": column, "problem": problem, "count": int(mask.sum()), "rows": _rows(mask)}


def check_frame(frame: pd.DataFrame, schema: Schema) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Feature columns as arrays ready for the model, and every problem found (empty when valid).

    Columns that are not features (IDs, labels, notes) are allowed and passed through untouched.
    """
    problems: list[dict] = []
    if frame.empty:
        return {}, [{"field": "file", "problem": "the CSV has a header but no data rows"}]
    missing = [name for name in schema.feature_names if name not in frame.columns]
    problems += [{"field": name, "problem": "column is missing"} for name in missing]
    columns: dict[str, np.ndarray] = {}
    for feature in schema.features:
        if feature.name in missing:
            continue
        raw = frame[feature.name]
        empty = raw.isna().to_numpy()
        if empty.any():
            problems.append(_problem(feature.name, "empty value(s)", empty))
        if feature.type == "category":
            values = raw.astype(str).to_numpy(dtype=object)
            unknown = ~np.isin(values, feature.categories) & ~empty
            if unknown.any():
                problems.append(_problem(
                    feature.name, f"unknown category; allowed: {', '.join(feature.categories)}",
                    unknown))
            columns[feature.name] = values
            continue
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        not_numbers = np.isnan(numbers) & ~empty
        if not_numbers.any():
            problems.append(_problem(feature.name, "not a number", not_numbers))
        with np.errstate(invalid="ignore"):
            outside = np.zeros(len(numbers), dtype=bool)
            if feature.min is not None:
                outside |= numbers < feature.min
            if feature.max is not None:
                outside |= numbers > feature.max
        outside |= np.isinf(numbers)
        if outside.any():
            problems.append(_problem(feature.name, f"outside the allowed {_range(feature)}", outside))
        columns[feature.name] = numbers
    return columns, problems
