"""Input models generated from the data set's schema (pydantic), and the same rules on CSV batches
(read a block at a time: control_api.csv_input)."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, create_model

from control_api.csv_input import duplicates
from ml.schema import Feature, Schema

EXAMPLE_ROWS = 10  # row numbers quoted per problem in a batch
# cells a feature takes as empty: the texts pandas reads as missing
EMPTY_TEXTS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
               "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


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


def header_problems(names: list[str], schema: Schema) -> list[dict]:
    """A header with a name twice, or without a feature column, is refused before any row is read."""
    problems = [{"field": name or "file", "problem": f"duplicate column `{name}`"}
                for name in duplicates(names)]
    problems += [{"field": name, "problem": "column is missing"}
                 for name in schema.feature_names if name not in names]
    return problems


class Problems:
    """What is wrong with the rows of a CSV read in blocks: per column and problem, how many rows
    and the first row numbers (1-based data rows: the header is not a row), in schema order."""

    KINDS = ("empty value(s)", "unknown category", "not a number", "outside the allowed")

    def __init__(self, schema: Schema):
        self._order = {name: i for i, name in enumerate(schema.feature_names)}
        self._found: dict[tuple[str, str], dict] = {}

    def add(self, column: str, problem: str, mask: np.ndarray, first_row: int) -> None:
        count = int(mask.sum())
        if not count:
            return
        entry = self._found.setdefault((column, problem), {"field": column, "problem": problem,
                                                           "count": 0, "rows": []})
        entry["count"] += count
        wanted = EXAMPLE_ROWS - len(entry["rows"])
        if wanted > 0:
            entry["rows"] += (np.flatnonzero(mask)[:wanted] + first_row).tolist()

    def __bool__(self) -> bool:
        return bool(self._found)

    def as_list(self) -> list[dict]:
        def rank(key: tuple[str, str]) -> tuple[int, int]:
            column, problem = key
            return (self._order.get(column, len(self._order)),
                    next(i for i, kind in enumerate((*self.KINDS, "")) if problem.startswith(kind)))

        return [self._found[key] for key in sorted(self._found, key=rank)]


def feature_columns(block: pa.RecordBatch, schema: Schema, problems: Problems, first_row: int,
                    skip: set[str] = frozenset()) -> dict[str, np.ndarray]:
    """The feature columns of a block of text cells as arrays ready for the model (numbers as
    float64, categories as str); what is wrong goes to `problems`. `first_row`: the block's first
    row number; `skip`: features the block does not have (refused already)."""
    columns: dict[str, np.ndarray] = {}
    for feature in schema.features:
        if feature.name in skip:
            continue
        text = block.column(feature.name)
        empty = pc.is_in(text, value_set=pa.array(EMPTY_TEXTS)).to_numpy(zero_copy_only=False)
        problems.add(feature.name, "empty value(s)", empty, first_row)
        if feature.type == "category":
            known = pc.is_in(text, value_set=pa.array(feature.categories)).to_numpy(zero_copy_only=False)
            problems.add(feature.name, f"unknown category; allowed: {', '.join(feature.categories)}",
                         ~known & ~empty, first_row)
            columns[feature.name] = text.to_numpy(zero_copy_only=False)
            continue
        numbers = _numbers(text, empty)
        problems.add(feature.name, "not a number", np.isnan(numbers) & ~empty, first_row)
        with np.errstate(invalid="ignore"):
            outside = np.isinf(numbers)
            if feature.min is not None:
                outside |= numbers < feature.min
            if feature.max is not None:
                outside |= numbers > feature.max
        problems.add(feature.name, f"outside the allowed {_range(feature)}", outside, first_row)
        columns[feature.name] = numbers
    return columns


def _numbers(text: pa.Array, empty: np.ndarray) -> np.ndarray:
    """Cells as float64, NaN where empty or not a number."""
    cells = pc.if_else(pa.array(empty), pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(cells, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # a cell Arrow does not take (text, spaces around a number): pandas decides
        values = pd.to_numeric(pd.Series(cells.to_numpy(zero_copy_only=False)), errors="coerce")
        return values.to_numpy(dtype=np.float64)
