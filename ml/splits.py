"""The deterministic train / validation / test split, and where the stage keeps it.

A row's split follows from its identity alone (its ID, or its values when the schema names none),
so adding rows never moves a row between splits: a later test split holds no row an earlier model
trained on, and the gate's rescoring of the champion on it is fair.

Refuses data whose validation result is missing, failed, or was made for other bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
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
    place = positions(frame, schema, params.seed)
    bounds = (params.test_size, params.test_size + params.validation_size)
    named = np.where(place < bounds[0], "test", np.where(place < bounds[1], "validation", "train"))
    named = _every_class_everywhere(named, place, frame[schema.target.name].to_numpy(), bounds)
    return {name: frame[named == name] for name in SPLITS}


def positions(frame: pd.DataFrame, schema: Schema, seed: int) -> np.ndarray:
    """Each row's place in [0, 1), a salted hash of its identity: the first ID column, else its values."""
    key = frame[schema.id_columns[:1]] if schema.id_columns else frame
    hashed = pd.util.hash_pandas_object(key.astype(str), index=False, hash_key=f"{seed % 10**16:016d}")
    return hashed.to_numpy(dtype=np.float64) / 2.0**64


def _every_class_everywhere(named: np.ndarray, place: np.ndarray, target: np.ndarray,
                            bounds: tuple[float, float]) -> np.ndarray:
    """A class the hash left out of a split (a rare class in a small table) gets the row nearest to
    that split from where the class has most rows; every other row keeps its place."""
    named = named.copy()
    middle = {"test": bounds[0] / 2, "validation": (bounds[0] + bounds[1]) / 2, "train": (bounds[1] + 1) / 2}
    for cls in pd.unique(target):
        for name in SPLITS:
            mine = target == cls
            if (mine & (named == name)).any():
                continue
            donor = max(SPLITS, key=lambda other: int((mine & (named == other)).sum()))
            spare = np.flatnonzero(mine & (named == donor))
            if len(spare) > 1:
                named[spare[np.argmin(np.abs(place[spare] - middle[name]))]] = name
    return named


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
