"""Evidently, imported with its import-time deprecation warnings silenced (0.7 touches `numpy.core`
and deprecated litestar helpers while importing); warnings of its use are not filtered."""

from __future__ import annotations

import warnings

from ml import config

config.quiet_third_parties()  # DO_NOT_TRACK: no telemetry from this machine

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import evidently  # noqa: F401
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.metrics import ValueDrift
    from evidently.presets import ClassificationPreset, DataDriftPreset

__all__ = ["BinaryClassification", "ClassificationPreset", "DataDefinition", "DataDriftPreset", "Dataset",
           "MulticlassClassification", "Report", "ValueDrift", "get_stattest"]
