"""The data set's schema, declared in params.yaml: the only place that names its columns.

`python -m ml.schema infer FILE.csv --target COLUMN` prints a schema block for a CSV of your own.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = int | float | str | bool
# the run tag holding the fingerprint of the schema a model was trained and scored with
FINGERPRINT_TAG = "schema_fingerprint"


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["number", "category"]
    description: str = ""
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    typical: Scalar | None = None
    categories: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.type == "category":
            if not self.categories:
                raise ValueError(f"feature `{self.name}`: a category feature needs `categories`")
            self.categories = [str(c) for c in self.categories]
        elif self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature `{self.name}`: min {self.min} is above max {self.max}")
        return self


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    classes: list[Scalar] = Field(min_length=2)
    positive: Scalar | None = None
    labels: dict[Scalar, str] = {}

    @model_validator(mode="after")
    def _positive_is_a_class(self) -> Target:
        if self.positive is None and len(self.classes) == 2:
            self.positive = self.classes[1]
        if self.positive is not None and self.positive not in self.classes:
            raise ValueError(f"target: positive class {self.positive!r} is not in {self.classes}")
        return self

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    def label(self, value: Scalar) -> str:
        return self.labels.get(value, str(value))


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[Feature] = Field(min_length=1)
    target: Target
    id_columns: list[str] = []
    leak_columns: list[str] = []

    @model_validator(mode="after")
    def _unique_columns(self) -> Schema:
        names = self.columns
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"schema: columns declared twice: {', '.join(duplicates)}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.type == "number"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.type == "category"]

    @property
    def columns(self) -> list[str]:
        """Every column a raw file of this data set has, in a stable order."""
        return [*self.id_columns, *self.feature_names, *self.leak_columns, self.target.name]

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything in the schema does (columns, ranges, classes, labels)."""
        return hashlib.md5(self.model_dump_json().encode()).hexdigest()

    @property
    def read_dtypes(self) -> dict[str, str]:
        """Category columns read as text, so `1` and `"1"` are the same category."""
        return {name: "string" for name in self.categorical}


def decimals(column: pd.Series, most: int = 6, share: float = 0.99) -> int:
    """The decimals the column's values are written with (at most `most`; 0 for whole numbers):
    the fewest that write `share` of them exactly, so one stray 9.899999 does not decide."""
    values = column.dropna().to_numpy(dtype="float64")
    for places in range(most + 1):
        exact = np.isclose(values, np.round(values, places), rtol=0, atol=10.0 ** -(most + 3))
        if exact.mean() >= share:
            return places
    return most


def _number(value: float, places: int) -> float | int:
    value = float(value)
    return round(value) if places == 0 else round(value, places)


def _numeric_feature(name: str, column: pd.Series) -> dict:
    """Range widened by 10 %, at the data's own precision; never below zero for a column that never
    is; typical = the median, as the data would write it."""
    places = decimals(column)
    step = 10.0 ** -places
    low, high = float(column.min()), float(column.max())
    pad = 0.1 * (high - low or abs(high) or 1.0)
    lowest = np.floor((low - pad) / step) * step
    if low >= 0:
        lowest = max(lowest, 0.0)
    highest = np.ceil((high + pad) / step) * step
    return {"name": name, "type": "number", "description": "", "unit": "",
            "min": _number(lowest, places), "max": _number(highest, places),
            "typical": _number(float(column.median()), places)}


def infer_schema(frame: pd.DataFrame, target: str, id_columns: list[str] = ()) -> dict:
    """A starting point for params.yaml from a table: ranges widened by 10 % at the data's precision,
    categories as seen, a label per class, and empty `description` / `unit` to fill in."""
    features = []
    for name in frame.columns:
        if name == target or name in id_columns:
            continue
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            features.append(_numeric_feature(name, column))
        else:
            categories = sorted(column.dropna().astype(str).unique().tolist())
            features.append({"name": name, "type": "category", "description": "",
                             "categories": categories, "typical": str(column.mode().iloc[0])})
    classes = sorted(frame[target].dropna().unique().tolist())
    classes = [c.item() if hasattr(c, "item") else c for c in classes]
    return {"id_columns": list(id_columns), "leak_columns": [],
            "target": {"name": target, "classes": classes, "labels": {c: str(c) for c in classes}},
            "features": features}


FILL_IN = {"description: ''": "description: ''  # fill in: what the column means, in the operator's words",
           "unit: ''": "unit: ''  # fill in: e.g. K, rpm, Nm (or remove the key)"}


def as_yaml(schema: dict) -> str:
    """The schema block as params.yaml text, with a comment on each key left to fill in."""
    text = yaml.safe_dump({"schema": schema}, sort_keys=False, allow_unicode=True)
    for empty, commented in FILL_IN.items():
        text = text.replace(empty, commented)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print a schema block for params.yaml from a CSV.")
    parser.add_argument("command", choices=["infer"])
    parser.add_argument("csv")
    parser.add_argument("--target", required=True)
    parser.add_argument("--id-column", action="append", default=[])
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.csv)
    if args.target not in frame.columns:
        print(f"column `{args.target}` is not in {args.csv}", file=sys.stderr)
        return 2
    print(as_yaml(infer_schema(frame, args.target, args.id_column)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
