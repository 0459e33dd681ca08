"""ONNX export: the exported model predicts what the scikit-learn pipeline predicts, or says why not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.semi_supervised import LabelSpreading

from ml import config
from ml import params as params_module
from ml.export import OnnxModel, export, parity, to_onnx
from ml.generate import generate
from ml.params import ESTIMATORS, Params
from ml.schema import Schema, infer_schema
from ml.splits import split
from ml.tables import feature_frame
from ml.training import build_pipeline

TOLERANCE = 1e-4
UNKNOWN = "not-a-known-category"


@pytest.fixture(scope="module")
def params() -> Params:
    return params_module.load(config.REPO_ROOT)


@pytest.fixture(scope="module")
def parts(params) -> dict[str, pd.DataFrame]:
    return split(generate(2000, 7), params.schema, params.split)


def fit(schema: Schema, params: Params, estimator: str, frame: pd.DataFrame):
    train = params.train.model_copy(update={"estimator": estimator})
    pipeline = build_pipeline(schema, train)
    pipeline.fit(feature_frame(frame, schema), frame[schema.target.name].to_numpy())
    return pipeline


@pytest.fixture(scope="module", params=ESTIMATORS)
def fitted(request, params, parts):
    """(pipeline, its export on the test split, the ONNX model) for each estimator."""
    pipeline = fit(params.schema, params, request.param, parts["train"])
    result = export(pipeline, params.schema, parts["test"])
    assert result.ok, result.reason
    return pipeline, result, OnnxModel(result.onnx_bytes)


def typical(feature) -> object:
    if feature.typical is not None:
        return feature.typical
    return feature.categories[0] if feature.type == "category" else (feature.min + feature.max) / 2


def extreme_rows(schema: Schema) -> pd.DataFrame:
    """Each number at its allowed minimum and maximum (others typical), and all at once, per category."""
    base = {f.name: typical(f) for f in schema.features}
    numbers = [f for f in schema.features if f.type == "number"]
    categories = [{}] + [{f.name: c} for f in schema.features if f.type == "category" for c in f.categories]
    rows = []
    for category in categories:
        for bound in ("min", "max"):
            rows.extend({**base, **category, f.name: getattr(f, bound)} for f in numbers)
            rows.append({**base, **category, **{f.name: getattr(f, bound) for f in numbers}})
    return pd.DataFrame(rows)


def uniform_rows(schema: Schema, n: int, seed: int) -> pd.DataFrame:
    """Rows drawn anywhere in the allowed ranges, far from the training distribution."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f.name: rng.uniform(f.min, f.max, n) if f.type == "number"
                         else rng.choice(f.categories, n) for f in schema.features})


@pytest.fixture(scope="module")
def held_out(params) -> pd.DataFrame:
    """About 1000 rows the models never saw: generated, uniform over the ranges, and extremes."""
    schema = params.schema
    extremes = extreme_rows(schema)
    frame = pd.concat([generate(900, 11)[schema.feature_names],
                       uniform_rows(schema, 100 - len(extremes), 12), extremes], ignore_index=True)
    assert len(frame) == 1000
    return frame


def sklearn_proba(pipeline, schema: Schema, frame: pd.DataFrame) -> np.ndarray:
    return pipeline.predict_proba(feature_frame(frame, schema))


def test_export_matches_sklearn_on_held_out_rows(fitted, params, held_out):
    pipeline, result, model = fitted
    assert result.max_abs_diff < TOLERANCE
    assert isinstance(result.onnx_bytes, bytes)
    assert parity(pipeline, model, held_out) < TOLERANCE
    extremes = extreme_rows(params.schema)
    assert parity(pipeline, model, extremes) < TOLERANCE


def test_single_rows_match_sklearn(fitted, params, held_out):
    pipeline, _, model = fitted
    schema = params.schema
    for index in (0, 1, 500, len(held_out) - 1):
        row = held_out.iloc[[index]]
        columns = {name: row[name].to_numpy() for name in schema.feature_names}
        proba = model.predict_proba(columns)
        assert proba.shape == (1, len(pipeline.classes_))
        assert proba.dtype == np.float64
        np.testing.assert_allclose(proba, sklearn_proba(pipeline, schema, row), atol=TOLERANCE, rtol=0)


def test_raw_frame_columns_are_cast(fitted, params, parts):
    """Integer number columns and extra columns (target, IDs) are fine, as in feature_frame."""
    pipeline, _, model = fitted
    raw = parts["test"].head(50)
    np.testing.assert_allclose(model.predict_proba_frame(raw),
                               sklearn_proba(pipeline, params.schema, raw), atol=TOLERANCE, rtol=0)


def test_unknown_category_is_ignored_like_sklearn(fitted, params, held_out):
    """handle_unknown="ignore": an unseen category is all zeros in both, so the same probabilities."""
    pipeline, _, model = fitted
    schema = params.schema
    rows = held_out.head(20).copy()
    for name in schema.categorical:
        rows[name] = UNKNOWN
    assert parity(pipeline, model, rows) < TOLERANCE
    one = {name: rows[name].to_numpy()[:1] for name in schema.feature_names}
    np.testing.assert_allclose(model.predict_proba(one), sklearn_proba(pipeline, schema, rows.head(1)),
                               atol=TOLERANCE, rtol=0)


def test_class_order_and_schema_travel_with_the_bytes(fitted, params):
    pipeline, result, _ = fitted
    model = OnnxModel(result.onnx_bytes)
    assert model.classes == pipeline.classes_.tolist()
    assert model.schema == params.schema


@pytest.fixture(scope="module")
def wine() -> tuple[pd.DataFrame, Schema]:
    """Three classes with string labels, thirteen numbers, no category, names with a slash."""
    data = load_wine(as_frame=True)
    frame = data.frame.assign(target=np.asarray(data.target_names)[data.target])
    return frame, Schema.model_validate(infer_schema(frame, "target"))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_multiclass_table(wine, params, estimator):
    frame, schema = wine
    assert not schema.categorical and any("/" in name for name in schema.feature_names)
    pipeline = fit(schema, params, estimator, frame)
    result = export(pipeline, schema, frame)
    assert result.ok, result.reason
    model = OnnxModel(result.onnx_bytes)
    assert model.classes == pipeline.classes_.tolist() == ["class_0", "class_1", "class_2"]
    proba = model.predict_proba_frame(frame)
    assert proba.shape == (len(frame), 3)
    np.testing.assert_allclose(proba, sklearn_proba(pipeline, schema, frame), atol=TOLERANCE, rtol=0)


def test_unsupported_estimator_is_reported_not_raised(params, parts):
    schema = params.schema
    pipeline = build_pipeline(schema, params.train).set_params(model=LabelSpreading(kernel="knn"))
    pipeline.fit(feature_frame(parts["train"], schema), parts["train"][schema.target.name].to_numpy())
    with pytest.raises(Exception, match="LabelSpreading"):
        to_onnx(pipeline, schema)
    result = export(pipeline, schema, parts["test"])
    assert not result.ok
    assert result.onnx_bytes is None and result.max_abs_diff is None
    assert "LabelSpreading" in result.reason
    assert len(result.reason) <= 400


def test_unfitted_pipeline_is_reported_not_raised(params, parts):
    result = export(build_pipeline(params.schema, params.train), params.schema, parts["test"])
    assert not result.ok and result.onnx_bytes is None
    assert result.reason.startswith("ONNX conversion failed")


def test_parity_beyond_tolerance_is_reported(params, parts):
    """A difference above the tolerance withholds the bytes: the caller keeps scikit-learn."""
    pipeline = fit(params.schema, params, "random_forest", parts["train"])
    result = export(pipeline, params.schema, parts["test"], tolerance=-1.0)  # no difference meets it
    assert not result.ok and result.onnx_bytes is None
    assert 0.0 <= result.max_abs_diff < TOLERANCE
    assert "differ" in result.reason


def test_no_rows_to_check_is_not_ok(fitted, params, parts):
    pipeline, _, _ = fitted
    result = export(pipeline, params.schema, parts["test"].head(0))
    assert not result.ok and result.onnx_bytes is None
