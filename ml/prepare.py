"""Stage `prepare`: a deterministic stratified train / validation / test split, and the dataset card.

Refuses data whose validation result is missing, failed, or was made for other bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from ml import cards, config
from ml import params as params_module
from ml.errors import DataError, PipelineError
from ml.params import Params, Split
from ml.schema import Schema
from ml.validate import read_csv
from ml.versioning import data_version

SPLITS = ("train", "validation", "test")


def split(frame: pd.DataFrame, schema: Schema, params: Split) -> dict[str, pd.DataFrame]:
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
    return pd.read_parquet(project / "data" / "prepared" / f"{name}.parquet")


def run(project: Path, params: Params) -> dict[str, pd.DataFrame]:
    raw = project / params.dataset.raw
    validation = require_validated(project / "data" / "validation.json", raw)
    frame = read_csv(raw, params.schema)
    parts = split(frame, params.schema, params.split)
    out = project / "data" / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        part.to_parquet(out / f"{name}.parquet", index=False)
    card = cards.dataset_card(frame, params, validation["data_version"],
                              {name: len(part) for name, part in parts.items()})
    (project / "data" / "dataset_card.md").write_text(card)
    return parts


def main() -> int:
    config.quiet_third_parties()
    try:
        params = params_module.load(Path.cwd())
        parts = run(Path.cwd(), params)
    except PipelineError as error:
        print(error, file=sys.stderr)
        return 1
    print("split: " + ", ".join(f"{name} {len(part)} rows" for name, part in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
