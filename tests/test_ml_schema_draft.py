"""`python -m ml.schema infer`: a drafted schema is ready to read and to review."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ml.schema import Schema, decimals, infer_schema

REPO = Path(__file__).resolve().parents[1]


def table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "row_id": range(1, 201),
        # two decimals, with float noise (0.1 + 0.2) and one stray value
        "ratio": np.round(rng.uniform(0.05, 5.5, 200), 2) + np.r_[[1e-16] * 199, [0.000001]],
        "count": rng.integers(600, 750, 200),  # whole numbers: the median of an even count is x.5
        "level": rng.normal(0.0, 1.0, 200).round(3),  # negative values too
        "grade": rng.choice(["a", "b", "c"], 200),
        "kind": rng.choice([0, 1, 2], 200),
    })


def test_ranges_and_typicals_are_at_the_datas_precision():
    frame = table()
    features = {f["name"]: f for f in infer_schema(frame, "kind", ["row_id"])["features"]}
    assert decimals(frame["ratio"]) == 2 and decimals(frame["count"]) == 0
    ratio, count = features["ratio"], features["count"]
    assert ratio["min"] == round(ratio["min"], 2) and ratio["max"] == round(ratio["max"], 2)
    assert ratio["typical"] == round(ratio["typical"], 2)
    assert isinstance(count["min"], int) and isinstance(count["typical"], int)
    assert count["min"] <= frame["count"].min() and count["max"] >= frame["count"].max()


def test_a_range_goes_below_zero_only_for_a_column_that_does():
    frame = table()
    features = {f["name"]: f for f in infer_schema(frame, "kind", ["row_id"])["features"]}
    assert features["ratio"]["min"] == 0  # 0.05 minus 10 % of the span would be negative
    assert features["level"]["min"] < frame["level"].min() < 0


def test_labels_and_empty_descriptions_are_drafted_and_the_schema_validates():
    schema = infer_schema(table(), "kind", ["row_id"])
    assert schema["target"]["labels"] == {0: "0", 1: "1", 2: "2"}
    assert all(f["description"] == "" for f in schema["features"])
    assert all(f["unit"] == "" for f in schema["features"] if f["type"] == "number")
    assert Schema.model_validate(schema).target.classes == [0, 1, 2]


def test_the_printed_block_comments_what_to_fill_in(tmp_path):
    path = tmp_path / "t.csv"
    table().to_csv(path, index=False)
    done = subprocess.run([sys.executable, "-m", "ml.schema", "infer", str(path), "--target", "kind",
                           "--id-column", "row_id"], cwd=REPO, capture_output=True, text=True,
                          check=True, timeout=60)
    assert "description: ''  # fill in" in done.stdout and "unit: ''  # fill in" in done.stdout
    parsed = yaml.safe_load(done.stdout)["schema"]
    assert parsed == yaml.safe_load(yaml.safe_dump(infer_schema(pd.read_csv(path), "kind", ["row_id"])))
