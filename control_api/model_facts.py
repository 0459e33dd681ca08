"""What a registered version keeps beside its model, read once per version and process: the
calibration fitted in its training, and its test figures."""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

from ml import calibration, registry
from monitoring.performance_estimation import METRICS


class ModelFacts:
    def __init__(self, model_name: str):
        self.model_name = model_name
        self._calibrations: dict[str, dict | None] = {}
        self._figures: dict[str, dict] = {}
        self._lock = threading.Lock()

    def _run_id(self, version: str) -> str:
        return registry.client().get_model_version(self.model_name, str(version)).run_id

    def calibration(self, version: str) -> dict | None:
        with self._lock:
            if version not in self._calibrations:  # a registry error propagates and is not kept
                self._calibrations[version] = _calibration_of_run(self._run_id(version))
            return self._calibrations[version]

    def at_training(self, version: str) -> dict[str, float | None]:
        """The version's figures on its test split, as the estimates name them."""
        with self._lock:
            if version not in self._figures:
                metrics = registry.client().get_run(self._run_id(version)).data.metrics
                self._figures[version] = {m: metrics.get(f"test_{m}") for m in METRICS}
            return self._figures[version]


def _calibration_of_run(run_id: str) -> dict | None:
    """The calibration a training run kept, or None (a run made before calibration was kept)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = registry.client().download_artifacts(run_id, calibration.ARTIFACT, tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())
