"""Training: fit the scikit-learn pipeline, choose the threshold, log everything to MLflow.

One MLflow run per training: params, validation and test metrics, the model (signature, input
example), data version, git commit, validation result, confusion matrix, model card, and the
CodeCarbon measurement of the fit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml import calibration, cards, emissions, tracking
from ml.errors import ParamsError, PipelineError
from ml.layout import DATASET_CARD, TRAIN_METRICS, TRAIN_RUN, VALIDATION_REPORT
from ml.metrics import choose_threshold, classification_metrics, predict_labels
from ml.params import Params, Train
from ml.schema import FINGERPRINT_TAG, Schema
from ml.splits import SPLITS, read_split
from ml.stage import Outcome, Stage
from ml.tables import feature_frame, labels

ESTIMATOR_CLASSES = {
    "random_forest": RandomForestClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "logistic_regression": LogisticRegression,
}
MODEL_REQUIREMENTS = ("scikit-learn", "skops", "pandas", "numpy", "scipy")
# what train() imports when first used; MLflow's SQL stores bring alembic and SQLAlchemy, its run
# context GitPython, its check of the input example mlflow.pyfunc
LIBRARIES = ("mlflow.sklearn", "mlflow.models", "mlflow.pyfunc", "mlflow.store.tracking.sqlalchemy_store",
             "mlflow.store.model_registry.sqlalchemy_store", "alembic.command", "git", "skops.io",
             "matplotlib.pyplot", "matplotlib.backends.backend_agg", "pyarrow.parquet", "pyarrow.dataset")


def make_estimator(train: Train):
    """The estimator from params, with its hyperparameters checked before any fitting."""
    from sklearn.utils._param_validation import InvalidParameterError

    kwargs = {**train.estimator_params, "random_state": train.seed,
              "class_weight": train.class_weight}
    try:
        estimator = ESTIMATOR_CLASSES[train.estimator](**kwargs)
        estimator._validate_params()
    except (TypeError, InvalidParameterError) as error:
        raise ParamsError(f"train.hyperparameters.{train.estimator}: {error}") from None
    return estimator


def build_pipeline(schema: Schema, train: Train) -> Pipeline:
    categories = [f.categories for f in schema.features if f.type == "category"]
    preprocess = ColumnTransformer([
        ("numbers", StandardScaler(), schema.numeric),
        ("categories", OneHotEncoder(categories=categories, handle_unknown="ignore",
                                     sparse_output=False), schema.categorical),
    ])
    return Pipeline([("preprocess", preprocess), ("model", make_estimator(train))])


@dataclasses.dataclass
class Fitted:
    pipeline: Pipeline
    threshold: float | None
    metrics: dict[str, float]
    confusion: tuple  # (test truth, test predictions, classes)
    x_train: pd.DataFrame
    y_train: np.ndarray
    calibration: dict  # ml.calibration, fitted on the validation split


def fit_and_score(parts: dict[str, pd.DataFrame], params: Params) -> Fitted:
    """Fit on train; threshold and calibration on validation; metrics on validation and test. No
    side effects."""
    schema, target = params.schema, params.schema.target
    x = {name: feature_frame(parts[name], schema) for name in SPLITS}
    y = {name: labels(parts[name], schema) for name in SPLITS}
    pipeline = build_pipeline(schema, params.train)
    pipeline.fit(x["train"], y["train"])
    classes = pipeline.classes_.tolist()
    proba = {name: pipeline.predict_proba(x[name]) for name in ("validation", "test")}
    threshold = None
    if target.is_binary:
        positive = classes.index(target.positive)
        threshold = choose_threshold(y["validation"], proba["validation"][:, positive], target,
                                     params.train.threshold)
    metrics = {}
    for name, prefix in (("validation", "val"), ("test", "test")):
        scores = classification_metrics(y[name], proba[name], classes, threshold, target)
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
    test_pred = predict_labels(proba["test"], classes, threshold, target)
    calibrated = calibration.fit(y["validation"], proba["validation"], classes,
                                 target.positive if target.is_binary else None)
    return Fitted(pipeline, threshold, metrics, (y["test"], test_pred, classes), x["train"], y["train"],
                  calibrated)


def _trusted_types(pipeline: Pipeline, x: pd.DataFrame, y: np.ndarray) -> list[str]:
    """The types skops must be told to trust: scikit-learn's own, and nothing else.

    Which types a pipeline holds depends on its classes, not on its size, so they are read off a
    copy fitted on a few rows per class: dumping the real model once more would cost seconds.
    """
    import skops.io
    from sklearn.base import clone

    small = clone(pipeline)
    if "n_estimators" in small[-1].get_params():
        small[-1].set_params(n_estimators=2)
    elif isinstance(small[-1], HistGradientBoostingClassifier):
        small[-1].set_params(max_iter=2)
    rows = np.concatenate([np.flatnonzero(y == label)[:5] for label in np.unique(y)])
    small.fit(x.iloc[rows], y[rows])
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(small))
    foreign = [t for t in untrusted if not t.startswith("sklearn.")]
    if foreign:
        raise PipelineError(f"the model holds types outside scikit-learn: {foreign}")
    return untrusted


def _confusion_figure(truth, predicted, classes, target):
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay.from_predictions(
        truth, predicted, labels=classes, display_labels=[target.label(c) for c in classes],
        cmap="Blues", colorbar=False)
    display.ax_.set_title("Test set")
    display.figure_.tight_layout()
    return display.figure_


def _close(figure) -> None:
    """pyplot keeps every figure until it is closed: a long-lived process would hold each one."""
    import matplotlib.pyplot as plt

    plt.close(figure)


def _flat_params(params: Params) -> dict[str, object]:
    flat = {"estimator": params.train.estimator, "class_weight": params.train.class_weight,
            "seed": params.train.seed, "threshold_rule": params.train.threshold.rule,
            "split_seed": params.split.seed, "test_size": params.split.test_size,
            "validation_size": params.split.validation_size}
    flat.update({f"hp_{k}": v for k, v in params.train.estimator_params.items()})
    return flat


def hardware_probe(params: Params):
    """CodeCarbon's hardware probe (see emissions.probe_hardware), to run beside a fresh process's
    imports. The tracker is built here, in the calling thread: building it imports CodeCarbon."""
    tracker = new_tracker(params, probe=False)
    return lambda: emissions.probe_hardware(tracker)


def new_tracker(params: Params, probe: bool = True):
    return emissions.new_tracker(params.emissions.country_iso_code, params.registry.model_name,
                                 params.emissions.measure_power_secs, probe=probe,
                                 **params.emissions.tracker_options)


def index_packages() -> None:
    """MLflow's index of installed packages, which log_model reads to check the requirements: a
    second of file reads, once per process, done here beside the data reads instead of inside the
    run. MLflow is imported by now, so this imports nothing. A head start only: on any error MLflow
    builds the index itself when it needs it."""
    with contextlib.suppress(Exception):
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()


def train(project: Path, params: Params) -> dict:
    """Fit, measure and log one model; return what the evaluate stage needs."""
    import mlflow.sklearn  # noqa: F401  (imported before any thread starts: see below)

    build_pipeline(params.schema, params.train)  # bad params fail here, before any work
    # CodeCarbon's probe (mostly a child process sleeping) and MLflow's package index run beside
    # the data reads and the store connection. They import nothing: two threads importing at once
    # can deadlock.
    with ThreadPoolExecutor(max_workers=2) as pool:
        tracker = new_tracker(params, probe=False)
        probing = pool.submit(emissions.probe_hardware, tracker)
        indexing = pool.submit(index_packages)
        parts = {name: read_split(project, name) for name in SPLITS}
        validation = json.loads((project / VALIDATION_REPORT).read_text())
        experiment_id = tracking.configure(params.registry.experiment)
        probing.result()
        indexing.result()
    return _run(params, parts=parts, validation=validation, experiment_id=experiment_id,
                tracker=tracker, dataset_card=project / DATASET_CARD)


def _run(params: Params, *, parts: dict[str, pd.DataFrame], validation: dict, experiment_id: str,
         tracker, dataset_card: Path) -> dict:
    """The MLflow run of one training."""
    import mlflow
    from mlflow.models import infer_signature

    data_version = validation["data_version"]
    commit = tracking.git_commit()
    tags = {"data_version": data_version, "git_commit": commit, "dataset": params.dataset.name,
            "estimator": params.train.estimator, "mlflow.source.git.commit": commit,
            FINGERPRINT_TAG: params.schema.fingerprint}
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        mlflow.log_params({**_flat_params(params), "data_version": data_version,
                           "train_rows": len(parts["train"])})
        with emissions.track(tracker) as measured:
            fitted = fit_and_score(parts, params)
        pipeline, threshold, metrics = fitted.pipeline, fitted.threshold, fitted.metrics
        confusion, x_train, y_train = fitted.confusion, fitted.x_train, fitted.y_train
        mlflow.log_metrics({**metrics, **measured.as_mlflow_metrics()})
        mlflow.set_tag("emissions_tracking_mode", measured.mode)
        if threshold is not None:
            mlflow.log_metric("threshold", threshold)
        mlflow.log_dict(validation, "validation.json")
        mlflow.log_dict(fitted.calibration, calibration.ARTIFACT)
        mlflow.log_artifact(str(dataset_card))
        figure = _confusion_figure(*confusion, params.schema.target)
        mlflow.log_figure(figure, "confusion_matrix.png")
        _close(figure)
        example = x_train.head(5)
        info = mlflow.sklearn.log_model(
            pipeline, name="model", input_example=example,
            signature=infer_signature(example, pipeline.predict_proba(example)),
            skops_trusted_types=_trusted_types(pipeline, x_train, y_train),
            pip_requirements=[f"{d}=={installed_version(d)}" for d in MODEL_REQUIREMENTS],
            metadata={"threshold": threshold, "classes": confusion[2],
                      "positive_class": params.schema.target.positive,
                      "data_version": data_version})
        summary = {"emissions_kg": measured.emissions_kg, "energy_kwh": measured.energy_kwh,
                   "duration_s": measured.duration_s, "mode": measured.mode}
        mlflow.log_text(cards.model_card(params=params, run_id=run.info.run_id,
                                         data_version=data_version, threshold=threshold,
                                         metrics=metrics, emissions=summary), "model_card.md")
        emissions.append(measured, run_id=run.info.run_id, model_name=params.registry.model_name,
                         country_iso_code=params.emissions.country_iso_code,
                         estimator=params.train.estimator, rows=len(parts["train"]))
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "threshold": threshold,
            "data_version": data_version, "metrics": metrics, "emissions": summary}


def _metrics_file(result: dict) -> dict:
    shown = {k: round(v, 6) for k, v in result["metrics"].items() if k.startswith("val_")}
    # grams and watt-hours: DVC shows five decimals, too few for kilograms of a small fit
    shown.update(threshold=result["threshold"],
                 emissions_g_co2eq=result["emissions"]["emissions_kg"] * 1000,
                 energy_wh=result["emissions"]["energy_kwh"] * 1000)
    return shown


def run(project: Path, params: Params) -> Outcome:
    """The `train` stage: one training, what evaluate needs in models/train_run.json."""
    result = train(project, params)
    metrics = result["metrics"]
    return Outcome(ok=True, result=result, outputs={
        TRAIN_RUN: json.dumps(result, indent=2) + "\n",
        TRAIN_METRICS: json.dumps(_metrics_file(result), indent=2) + "\n"},
        summary=f"run {result['run_id']}: val PR AUC {metrics['val_pr_auc']:.4f}, "
                f"test PR AUC {metrics['test_pr_auc']:.4f}, threshold {result['threshold']}, "
                f"{result['emissions']['emissions_kg']:.3g} kg CO2eq")


STAGE = Stage("train", run, libraries=LIBRARIES, overlap=hardware_probe)
