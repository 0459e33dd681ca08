"""The champion in memory: loaded once per worker, swapped whole when the registry alias moves.

A request takes one reference to the ServedModel at its start, so it is answered by one version
from start to end even when a promotion lands in the middle; the response names that version.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from control_api.errors import APIError
from ml import registry
from ml.schema import Schema

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ServedModel:
    name: str
    version: str
    schema: Schema
    pipeline: object
    classes: list
    threshold: float | None
    onnx: object | None = None
    onnx_max_rows: int = 2_000

    def predict_proba(self, columns: dict[str, np.ndarray], rows: int) -> tuple[np.ndarray, str]:
        """Class probabilities, and which path computed them (`onnx` or `sklearn`)."""
        if self.onnx is not None and rows <= self.onnx_max_rows:
            return self.onnx.predict_proba(columns), "onnx"
        frame = pd.DataFrame({name: columns[name] for name in self.schema.feature_names})
        return self.pipeline.predict_proba(frame), "sklearn"

    def labels(self, proba: np.ndarray) -> np.ndarray:
        classes = np.asarray(self.classes, dtype=object)
        target = self.schema.target
        if self.threshold is None or not target.is_binary:
            return classes[np.argmax(proba, axis=1)]
        positive = self.classes.index(target.positive)
        return np.where(proba[:, positive] >= self.threshold, classes[positive], classes[1 - positive])

    @property
    def positive_index(self) -> int | None:
        target = self.schema.target
        return self.classes.index(target.positive) if target.is_binary else None


def _load_onnx(client, version):
    if version.tags.get("onnx") != "ok":
        return None
    from ml.export import OnnxModel

    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(version.run_id, "onnx/model.onnx", tmp)
        return OnnxModel(Path(path).read_bytes())


def load(name: str, version: str, schema: Schema, onnx_max_rows: int = 2_000) -> ServedModel:
    import mlflow.sklearn

    client = registry.client()
    found = client.get_model_version(name, str(version))
    pipeline = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    threshold = found.tags.get("threshold") or None
    try:
        onnx = _load_onnx(client, found)
    except Exception:  # ONNX is an accelerator: without it scikit-learn serves
        log.exception("ONNX model of version %s could not be loaded; serving with scikit-learn",
                      version)
        onnx = None
    return ServedModel(name=name, version=str(version), schema=schema, pipeline=pipeline,
                       classes=pipeline.classes_.tolist(),
                       threshold=float(threshold) if threshold else None, onnx=onnx,
                       onnx_max_rows=onnx_max_rows)


class Champion:
    """Holds the served model; a daemon thread follows the registry's `champion` alias."""

    def __init__(self, name: str, schema: Schema, poll_seconds: float, onnx_max_rows: int = 2_000):
        self.name, self.schema = name, schema
        self.poll_seconds, self.onnx_max_rows = poll_seconds, onnx_max_rows
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self._refresh_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the champion if the alias moved; True when the served model changed."""
        with self._refresh_lock:
            try:
                found = registry.champion(self.name)
                if found is None:
                    self.last_error = f"model `{self.name}` has no champion yet"
                    return False
                if self.current is not None and self.current.version == str(found.version):
                    return False
                loaded = load(self.name, str(found.version), self.schema, self.onnx_max_rows)
            except Exception as error:  # keep serving the model we have
                self.last_error = f"could not load the champion: {error}"
                log.exception("champion refresh failed")
                return False
            self.current = loaded  # one reference swap: requests see the old or the new model
            self.last_error = None
            log.info("serving %s version %s", self.name, loaded.version)
            return True

    def start(self) -> None:
        if self._thread is None and self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._follow, name="champion-watcher", daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        while True:
            self.refresh()
            time.sleep(self.poll_seconds)

    def get(self) -> ServedModel:
        served = self.current
        if served is None:
            self.refresh()
            served = self.current
        if served is None:
            raise APIError(503, self.last_error or "no champion model is loaded")
        return served
