"""Stage `evaluate`: register the trained model and decide, on the test set, whether it serves.

The new version gets alias `challenger`; it becomes `champion` when there is none, or when it beats
the champion on the same test set by the margin in params, and in both cases beats a constant
predictor. The decision and the scores are recorded on the version and on the run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ml import cards, config, registry, tracking
from ml import params as params_module
from ml.errors import PipelineError
from ml.metrics import baseline_metrics, classification_metrics
from ml.params import Params
from ml.prepare import read_split
from ml.train import feature_frame


def champion_score(params: Params, test) -> tuple[str | None, float | None]:
    """The champion's primary metric on this test set, or (None, None) without a champion."""
    import mlflow.sklearn

    name = params.registry.model_name
    current = registry.champion(name)
    if current is None:
        return None, None
    model = mlflow.sklearn.load_model(f"models:/{name}/{current.version}")
    threshold = current.tags.get("threshold")
    target = params.schema.target
    try:
        proba = model.predict_proba(feature_frame(test, params.schema))
    except (KeyError, ValueError) as error:
        raise PipelineError(
            f"champion version {current.version} cannot score this data set ({error}); a new data "
            "set needs its own registry.model_name") from None
    scores = classification_metrics(test[target.name].to_numpy(), proba, model.classes_.tolist(),
                                     float(threshold) if threshold else None, target)
    return current.version, scores[params.evaluate.primary_metric]


def _export_onnx(trained: dict, params: Params, test) -> dict[str, str]:
    """ONNX copy of the model for fast serving, logged to the run when it matches on the test set."""
    import mlflow.sklearn

    from ml.export import export

    pipeline = mlflow.sklearn.load_model(trained["model_uri"])
    result = export(pipeline, params.schema, test)
    if not result.ok:
        return {"onnx": "unavailable", "onnx_reason": result.reason[:500]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(result.onnx_bytes)
        registry.client().log_artifact(trained["run_id"], str(path), "onnx")
    return {"onnx": "ok", "onnx_max_abs_diff": f"{result.max_abs_diff:.3g}"}


def evaluate(project: Path, params: Params) -> dict:
    trained = json.loads((project / "models" / "train_run.json").read_text())
    target, metric = params.schema.target, params.evaluate.primary_metric
    train, test = read_split(project, "train"), read_split(project, "test")
    baseline = baseline_metrics(train[target.name], test[target.name].to_numpy(),
                                sorted(train[target.name].unique().tolist()), target)[metric]
    champion_version, champion = champion_score(params, test)
    challenger = trained["metrics"][f"test_{metric}"]
    decision = registry.decide(challenger, champion, baseline, params.evaluate)
    decision.awaiting_approval = (decision.promote and champion is not None
                                  and params.registry.require_approval)

    name = params.registry.model_name
    tags = {"data_version": trained["data_version"], "git_commit": tracking.git_commit(),
            "threshold": "" if trained["threshold"] is None else repr(trained["threshold"]),
            "primary_metric": metric, f"test_{metric}": f"{challenger:.6f}",
            "emissions_kg_co2eq": f"{trained['emissions']['emissions_kg']:.6g}",
            **decision.as_tags()}
    tags.update(_export_onnx(trained, params, test))
    version = registry.register(trained["model_uri"], name, trained["run_id"], tags)
    registry.set_challenger(name, version)
    if decision.promote and not decision.awaiting_approval:
        registry.promote(name, version, decision.reason)

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


def main() -> int:
    config.quiet_third_parties()
    project = Path.cwd()
    try:
        params = params_module.load(project)
        result = evaluate(project, params)
    except PipelineError as error:
        print(error, file=sys.stderr)
        return 1
    (project / "metrics").mkdir(exist_ok=True)
    (project / "metrics" / "evaluate.json").write_text(json.dumps(result, indent=2) + "\n")
    outcome = ("awaiting approval" if result["awaiting_approval"]
               else "promoted to champion" if result["promoted"] else "kept as challenger")
    print(f"version {result['version']} {outcome}: {result['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
