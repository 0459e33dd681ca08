"""The same pipeline on another labelled table, with only params.yaml changed."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from ml import registry, tracking
from ml.schema import infer_schema
from tests.helpers import build_project

pytestmark = pytest.mark.pipeline


def wine_table() -> pd.DataFrame:
    """scikit-learn's wine data (3 cultivars), with an ID and a categorical column added."""
    bunch = load_wine(as_frame=True)
    frame = bunch.frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    frame.insert(0, "sample_id", range(1, len(frame) + 1))
    frame["colour_band"] = pd.cut(frame["color_intensity"], [0, 3, 6, 20],
                                  labels=["pale", "medium", "deep"]).astype(str)
    return frame.rename(columns={"target": "cultivar"})


def test_a_multiclass_table_with_a_category_runs_end_to_end(tmp_path, state_dir):
    table = wine_table()
    schema = infer_schema(table, "cultivar", ["sample_id"])
    project = build_project(tmp_path, raw=table, params_changes={
        "dataset": {"name": "wine", "description": "UCI wine recognition data",
                    "raw": "data/raw/wine.csv", "generator": None},
        "schema": schema,
        "registry": {"model_name": "wine-classifier", "experiment": "wine"},
        "train": {"estimator": "logistic_regression"},
    })
    assert "generator" not in project.params.dataset.model_dump(exclude_none=True)
    assert "colour_band" in project.params.schema.categorical

    project.dvc("repro")
    champion = registry.champion("wine-classifier")
    assert champion is not None
    tracking.configure()
    run = mlflow.MlflowClient().get_run(champion.run_id)
    assert run.data.metrics["test_roc_auc"] > 0.9
    assert "threshold" not in run.data.metrics  # multi-class: the most probable class wins
    model = mlflow.sklearn.load_model("models:/wine-classifier@champion")
    assert model.predict_proba(table[project.params.schema.feature_names].head(3)).shape == (3, 3)
    card = (project.path / "data" / "dataset_card.md").read_text()
    assert "Provided as a CSV file" in card and "`colour_band`" in card
