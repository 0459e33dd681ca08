"""The champion's reference data: its training split, with the champion's own predictions on it.

The training run's `data_version` tag is the DVC md5 of the raw data it was trained on. The split is
read from the project's `data/prepared/train.parquet` when dvc.lock says the `prepare` stage last ran
on that version with the run's split params; otherwise it is rebuilt from the DVC cache (content
addressed by md5) with the same seeded split the pipeline uses. The champion's predictions on it
are computed once per model version and kept next to the reports.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pandas as pd
import yaml

from ml import config, registry
from ml.errors import PipelineError
from ml.layout import PREPARED
from ml.metrics import predict_labels
from ml.params import Params, Split
from ml.schema import Schema
from ml.splits import split as split_frame
from ml.tables import feature_frame, read_csv

LABEL = "prediction_label"
PROBABILITY = "prediction_probability"


class MissingReferenceError(PipelineError):
    pass


@dataclasses.dataclass
class Reference:
    frame: pd.DataFrame  # features, the target, and the champion's prediction columns
    model_version: str
    data_version: str
    source: str

    def describe(self) -> dict:
        return {"model_version": self.model_version, "data_version": self.data_version,
                "rows": len(self.frame), "source": self.source}


def prediction_columns(schema: Schema, classes: list) -> dict[str, str]:
    """Logged output column → its name in drift frames (prefixed, so no feature can clash)."""
    if schema.target.is_binary:
        return {"label": LABEL, "probability": PROBABILITY}
    return {"label": LABEL, **{f"probability_{c}": f"{PROBABILITY}_{c}" for c in classes}}


def _split_params(run) -> Split:
    logged = run.data.params
    return Split(seed=int(logged["split_seed"]), test_size=float(logged["test_size"]),
                 validation_size=float(logged["validation_size"]))


def _from_project(project: Path, params: Params, data_version: str, split: Split) -> pd.DataFrame | None:
    """The workspace's training split, if the last `prepare` ran on this data with these params."""
    lock_path, train_path = project / "dvc.lock", project / PREPARED / "train.parquet"
    if not lock_path.is_file() or not train_path.is_file():
        return None
    stage = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {}).get("prepare") or {}
    raw = {d.get("path"): d.get("md5") for d in stage.get("deps", [])}.get(params.dataset.raw)
    locked_split = (stage.get("params") or {}).get("params.yaml", {}).get("split")
    if raw != data_version or locked_split is None or Split(**locked_split) != split:
        return None
    return pd.read_parquet(train_path)


def _from_dvc_cache(params: Params, data_version: str, split: Split) -> pd.DataFrame | None:
    cached = config.dvc_cache_dir() / "files" / "md5" / data_version[:2] / data_version[2:]
    if not cached.is_file():
        return None
    return split_frame(read_csv(cached, params.schema), params.schema, split)["train"]


def _predict(frame: pd.DataFrame, params: Params, name: str, version) -> pd.DataFrame:
    model = registry.load_sklearn(name, version.version)
    threshold = version.tags.get("threshold") or None
    classes = model.classes_.tolist()
    features = feature_frame(frame, params.schema)
    proba = model.predict_proba(features)
    target = params.schema.target
    names = prediction_columns(params.schema, classes)
    out = features.assign(**{target.name: frame[target.name].to_numpy()})
    out[LABEL] = predict_labels(proba, classes, float(threshold) if threshold else None, target)
    if target.is_binary:
        out[PROBABILITY] = proba[:, classes.index(target.positive)]
    else:
        for index, klass in enumerate(classes):
            out[names[f"probability_{klass}"]] = proba[:, index]
    return out


def champion_reference(project: Path, params: Params, cache_dir: Path) -> Reference:
    """The current champion's reference; MissingReferenceError when there is no champion or no data."""
    name = params.registry.model_name
    version = registry.champion(name)
    if version is None:
        raise MissingReferenceError(f"model `{name}` has no champion: nothing to compare with")
    run = registry.client().get_run(version.run_id)
    data_version = version.tags.get("data_version") or run.data.tags.get("data_version")
    cached = cache_dir / f"{name}-v{version.version}.parquet"
    if cached.is_file():
        frame = pd.read_parquet(cached)
        return Reference(frame, str(version.version), data_version, frame.attrs.get("source", "cache"))
    split = _split_params(run)
    frame, source = _from_project(project, params, data_version, split), "project training split"
    if frame is None:
        frame, source = _from_dvc_cache(params, data_version, split), "DVC cache, split again"
    if frame is None:
        raise MissingReferenceError(f"the training data of version {version.version} (data version "
                             f"{data_version}) is neither in the project nor in the DVC cache; "
                             "run `dvc pull` in the project")
    frame = _predict(frame, params, name, version)
    frame.attrs["source"] = source
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{uuid.uuid4().hex}.tmp")
    frame.to_parquet(partial, index=False)
    os.replace(partial, cached)
    return Reference(frame, str(version.version), data_version, source)
