"""What a registered version keeps beside its model, read once per version and process: the
calibration fitted in its training, and its test figures."""

from __future__ import annotations

import threading

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
                self._calibrations[version] = calibration.of_run(self._run_id(version))
            return self._calibrations[version]

    def at_training(self, version: str) -> dict[str, float | None]:
        """The version's figures on its test split, as the estimates name them."""
        with self._lock:
            if version not in self._figures:
                metrics = registry.client().get_run(self._run_id(version)).data.metrics
                self._figures[version] = {m: metrics.get(f"test_{m}") for m in METRICS}
            return self._figures[version]
