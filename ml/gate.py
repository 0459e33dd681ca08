"""The promotion gate: register the trained model and decide, on the test set, whether it serves.

The new version gets alias `challenger`; it becomes `champion` when there is none, or when it beats
the champion on the same test set by the margin in params, and in both cases beats a constant
predictor. The decision and the scores are recorded on the version and on the run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd

from ml import cards, registry, stage, tracking
from ml.errors import PipelineError
from ml.layout import EVALUATE_METRICS, TRAIN_RUN
from ml.metrics import baseline_metrics, classification_metrics
from ml.params import Params
from ml.schema import FINGERPRINT_TAG
from ml.splits import read_split
from ml.stage import Outcome, Stage
from ml.tables import feature_frame, labels

# rows of the test split the ONNX copy is checked on: a fixed sample, as big a check at 100k rows
# as at 10k, instead of the whole split
PARITY_ROWS = 2_000


def recorded_score(params: Params, run, data_version: str) -> float | None:
    """The champion run's own test score, when it was computed on exactly this test set: the same
    raw data, schema and split. Scoring it again would give the same number."""
    logged, tags = run.data.params, run.data.tags
    try:
        same_split = (int(logged["split_seed"]) == params.split.seed
                      and float(logged["test_size"]) == params.split.test_size
                      and float(logged["validation_size"]) == params.split.validation_size)
    except (KeyError, ValueError):
        return None
    if not (same_split and tags.get("data_version") == data_version
            and tags.get(FINGERPRINT_TAG) == params.schema.fingerprint):
        return None
    return run.data.metrics.get(f"test_{params.evaluate.primary_metric}")


def rescore(params: Params, version, test: pd.DataFrame) -> float:
    """The champion version's primary metric on this test set, its model loaded and run."""
    name = params.registry.model_name
    model = registry.load_sklearn(name, version.version)
    threshold = version.tags.get("threshold")
    target = params.schema.target
    try:
        proba = model.predict_proba(feature_frame(test, params.schema))
    except (KeyError, ValueError) as error:
        raise PipelineError(
            f"champion version {version.version} cannot score this data set ({error}); a new data "
            "set needs its own registry.model_name") from None
    scores = classification_metrics(labels(test, params.schema), proba, model.classes_.tolist(),
                                    float(threshold) if threshold else None, target)
    return scores[params.evaluate.primary_metric]


def champion_score(params: Params, test: pd.DataFrame,
                   data_version: str | None = None) -> tuple[str | None, float | None]:
    """The champion's primary metric on this test set, or (None, None) without a champion."""
    current = registry.champion(params.registry.model_name)
    if current is None:
        return None, None
    if data_version is not None:
        score = recorded_score(params, registry.client().get_run(current.run_id), data_version)
        if score is not None:
            return current.version, score
    return current.version, rescore(params, current, test)


def _newer_data(params: Params, data_version: str) -> bool:
    """Whether the champion was trained on other data than this: the workspace's, which is the
    newest (a retrain pulls it first)."""
    current = registry.champion(params.registry.model_name)
    trained_on = current.tags.get("data_version") if current is not None else None
    return trained_on is not None and trained_on != data_version


def parity_sample(test: pd.DataFrame, rows: int = PARITY_ROWS) -> pd.DataFrame:
    return test if len(test) <= rows else test.sample(n=rows, random_state=0)


def export_onnx(trained: dict, params: Params, test: pd.DataFrame) -> dict[str, str]:
    """ONNX copy of the model for fast serving, logged to the run when it matches on test rows."""
    from ml.export import export

    pipeline = tracking.load_sklearn_model(trained["model_uri"])
    result = export(pipeline, params.schema, parity_sample(test))
    if not result.ok:
        return {"onnx": "unavailable", "onnx_reason": result.reason[:500]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(result.onnx_bytes)
        registry.client().log_artifact(trained["run_id"], str(path), "onnx")
    return {"onnx": "ok", "onnx_max_abs_diff": f"{result.max_abs_diff:.3g}"}


def evaluate(project: Path, params: Params, actor: str | None = None) -> dict:
    """Register the trained model, gate it, promote it when it passes; `actor` moves the alias
    (default: OPCON_ACTOR, else the pipeline)."""
    trained = json.loads((project / TRAIN_RUN).read_text())
    target, metric = params.schema.target, params.evaluate.primary_metric
    train, test = read_split(project, "train"), read_split(project, "test")
    y_train = labels(train, params.schema)
    baseline = baseline_metrics(y_train, labels(test, params.schema),
                                sorted(pd.unique(y_train).tolist()), target)[metric]
    champion_version, champion = champion_score(params, test, trained["data_version"])
    challenger = trained["metrics"][f"test_{metric}"]
    decision = registry.decide(challenger, champion, baseline, params.evaluate,
                               newer_data=_newer_data(params, trained["data_version"]))
    decision.awaiting_approval = (decision.promote and champion is not None
                                  and params.registry.require_approval)

    name = params.registry.model_name
    tags = {"data_version": trained["data_version"], "git_commit": tracking.git_commit(),
            "threshold": "" if trained["threshold"] is None else repr(trained["threshold"]),
            "primary_metric": metric, f"test_{metric}": f"{challenger:.6f}",
            "emissions_kg_co2eq": f"{trained['emissions']['emissions_kg']:.6g}",
            **decision.as_tags()}
    tags.update(export_onnx(trained, params, test))
    version = registry.register(trained["model_uri"], name, trained["run_id"], tags)
    registry.set_challenger(name, version)
    if decision.promote and not decision.awaiting_approval:
        registry.promote(name, version, decision.reason, by=actor)

    mlflow_client = registry.client()
    run_id = trained["run_id"]
    mlflow_client.log_metric(run_id, f"baseline_test_{metric}", baseline)
    if champion is not None:
        mlflow_client.log_metric(run_id, f"champion_test_{metric}", champion)
    for key, value in {**decision.as_tags(), "registered_version": version}.items():
        mlflow_client.set_tag(run_id, key, value)
    card = cards.model_card(params=params, run_id=run_id, data_version=trained["data_version"],
                            threshold=trained["threshold"], metrics=trained["metrics"],
                            emissions=trained["emissions"], version=version,
                            decision={"outcome": decision.outcome, "reason": decision.reason})
    mlflow_client.log_text(run_id, card, "model_card.md")
    promoted = decision.promote and not decision.awaiting_approval
    return {"version": version, "promoted": promoted, "awaiting_approval": decision.awaiting_approval,
            "reason": decision.reason,
            "metric": metric, f"test_{metric}": challenger, f"champion_test_{metric}": champion,
            "champion_version": champion_version, f"baseline_test_{metric}": baseline}


def run(project: Path, params: Params) -> Outcome:
    """The `evaluate` stage: the gate's outcome in metrics/evaluate.json."""
    result = evaluate(project, params, actor=stage.actor())
    outcome = ("awaiting approval" if result["awaiting_approval"]
               else "promoted to champion" if result["promoted"] else "kept as challenger")
    return Outcome(ok=True, result=result,
                   summary=f"version {result['version']} {outcome}: {result['reason']}",
                   outputs={EVALUATE_METRICS: json.dumps(result, indent=2) + "\n"})


STAGE = Stage("evaluate", run, libraries=(
    "mlflow.sklearn", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "skops.io", "skl2onnx", "onnxruntime"))
