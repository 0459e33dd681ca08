"""The deterministic stratified train / validation / test split, and where the stage keeps it.

Refuses data whose validation result is missing, failed, or was made for other bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ml import cards
from ml.errors import DataError
from ml.layout import DATASET_CARD, PREPARED, VALIDATION_REPORT
from ml.params import Params, Split
from ml.schema import Schema
from ml.stage import Outcome, Stage
from ml.tables import read_csv
from ml.versioning import data_version

SPLITS = ("train", "validation", "test")


def split(frame: pd.DataFrame, schema: Schema, params: Split) -> dict[str, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    target = schema.target.name
    rest, test = train_test_split(frame, test_size=params.test_size, stratify=frame[target],
                                  random_state=params.seed)
    share = params.validation_size / (1 - params.test_size)
    train, validation = train_test_split(rest, test_size=share, stratify=rest[target],
                                         random_state=params.seed)
    return {"train": train, "validation": validation, "test": test}


def require_validated(validation_path: Path, raw_path: Path) -> dict:
    """The validation result for exactly these bytes, or a DataError."""
    if not validation_path.is_file():
        raise DataError(f"no validation result at {validation_path}: run the `validate` stage first")
    result = json.loads(validation_path.read_text())
    if not result.get("success"):
        raise DataError("the raw data failed validation; training does not run on it")
    if result.get("data_version") != data_version(raw_path):
        raise DataError("the validation result is for another version of the raw data")
    return result


def read_split(project: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(project / PREPARED / f"{name}.parquet")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def run(project: Path, params: Params) -> Outcome:
    """The `prepare` stage: the three splits as Parquet files, and the dataset card."""
    raw = project / params.dataset.raw
    validation = require_validated(project / VALIDATION_REPORT, raw)
    frame = read_csv(raw, params.schema)
    parts = split(frame, params.schema, params.split)
    rows = {name: len(part) for name, part in parts.items()}
    outputs: dict[str, str | bytes] = {f"{PREPARED}/{name}.parquet": _parquet(part)
                                       for name, part in parts.items()}
    outputs[DATASET_CARD] = cards.dataset_card(frame, params, validation["data_version"], rows)
    return Outcome(ok=True, outputs=outputs, result={"rows": rows},
                   summary="split: " + ", ".join(f"{name} {count} rows" for name, count in rows.items()))


STAGE = Stage("prepare", run, libraries=("sklearn.model_selection", "pyarrow.parquet"))
