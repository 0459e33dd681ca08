"""The data set as tables: a raw CSV read by the schema, the model's input frame, the target column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ml.errors import DataError
from ml.schema import Schema


def read_csv(path: Path, schema: Schema) -> pd.DataFrame:
    """Read a raw CSV; an unreadable file is a DataError that says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"`{path}` does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"`{path}` is empty: expected a CSV with a header row")
    try:
        return pd.read_csv(path, dtype={c: str for c in schema.categorical}, encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"`{path}` is not a UTF-8 CSV file (binary or another encoding)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"`{path}` is not a readable CSV file: {error}") from None


def feature_frame(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The model's input: feature columns only, numbers as float64 (the signature says double)."""
    features = frame[schema.feature_names].copy()
    features[schema.numeric] = features[schema.numeric].astype("float64")
    features[schema.categorical] = features[schema.categorical].astype(str)
    return features


def labels(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """The target column as an array (the true labels)."""
    return frame[schema.target.name].to_numpy()
