"""The `drift_report` job: a window of the prediction log against the champion's training data.

Steps: read the window (and its feedback labels) → the champion's reference → per-column drift
on every row → Evidently's HTML on a sample → store the report → the auto-retrain policy.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from control_api.db import feedback
from control_api.jobs.job import Job, Step, StepFailedError, bind
from control_api.jobs.kinds import DriftWindow
from control_api.model_facts import ModelFacts
from control_api.settings import Settings
from ml import params as params_module
from monitoring import drift, drift_html, estimated_quality, quality
from monitoring.prediction_log import PredictionLog
from monitoring.reference import LABEL, champion_reference, prediction_columns
from monitoring.reports import ReportStore, new_id

MIN_ROWS = 20  # fewer rows than this say nothing about a distribution


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class DriftReport:
    """One run of the job; the steps share what they computed through its attributes."""

    def __init__(self, params: dict, settings: Settings):
        self.settings = settings
        self.window = DriftWindow.model_validate(params)
        self.params = params_module.load(settings.project_dir)
        self.schema = self.params.schema
        self.log = PredictionLog(settings.prediction_log_dir)
        self.reports = ReportStore(settings.reports_dir, settings.reports_keep_html)
        self.timings: dict[str, float] = {}
        self.window_info: dict = {}
        self.current = self.labelled = self.reference = self.page = None
        self.outputs = prediction_columns(self.schema, self.schema.target.classes)
        self.kinds = {**{n: drift.NUMERIC for n in self.schema.numeric},
                      **{n: drift.CATEGORICAL for n in self.schema.categorical},
                      LABEL: drift.CATEGORICAL,
                      **{v: drift.NUMERIC for k, v in self.outputs.items() if k != "label"}}

    def steps(self) -> list[Step]:
        return bind("drift_report", [self._timed("read", self.read),
                                     self._timed("reference", self.load_reference),
                                     self._timed("compare", self.compare),
                                     self._timed("html", self.render),
                                     self._timed("store", self.store),
                                     self.policy])

    def _timed(self, name: str, action):
        def step(job: Job):
            started = time.perf_counter()
            result = action(job)
            self.timings[f"{name}_s"] = round(time.perf_counter() - started, 3)
            return result
        return step

    # -- steps ---------------------------------------------------------------------------------
    def read(self, job: Job) -> dict:
        self.log.compact()
        labels = self._feedback(job)
        frame = self._window(extra=["request_id", "row"] if len(labels) else [])
        if len(frame) < MIN_ROWS:
            raise StepFailedError(f"{len(frame)} logged prediction(s) in the window: a drift report "
                                  f"needs at least {MIN_ROWS}")
        versions = frame["model_version"].value_counts()
        self.window_info.update(rows=len(frame), first=_iso(frame["ts"].iloc[0]),
                                last=_iso(frame["ts"].iloc[-1]),
                                model_versions={str(k): int(v) for k, v in versions.items() if v})
        logged = {v: k for k, v in self.outputs.items()}  # drift column → logged column
        self.current = self._drift_frame(frame, logged)
        self.served = frame[estimated_quality.logged_columns(self.schema)]
        if len(labels):
            keys = frame.loc[frame["request_id"].isin(labels["request_id"]), ["request_id", "row"]]
            joined = keys.astype({"request_id": str}).reset_index().merge(labels, on=["request_id", "row"])
            self.labelled = self.current.iloc[joined["index"].to_numpy()].reset_index(drop=True)
            self.labelled[quality.TRUTH] = joined[quality.TRUTH].to_numpy()
        job.log(f"{len(frame)} rows from {self.window_info['first']} to {self.window_info['last']}"
                f"; {0 if self.labelled is None else len(self.labelled)} with feedback")
        return {"rows": len(frame)}

    def _feedback(self, job: Job) -> pd.DataFrame:
        with job.store.engine.connect() as conn:
            found = conn.execute(sa.select(feedback.c.request_id, feedback.c.row, feedback.c.label)).all()
        labels = pd.DataFrame(found, columns=["request_id", "row", quality.TRUTH])
        labels[quality.TRUTH] = labels[quality.TRUTH].astype(str)
        return labels

    def _window(self, extra: list[str]) -> pd.DataFrame:
        columns = [*self.schema.feature_names, "model_version", *self.outputs, *extra]
        window = self.window
        if window.since is not None:
            until = window.until or datetime.now(UTC)
            self.window_info = {"since": window.since.isoformat(), "until": until.isoformat()}
            return self.log.read(columns, since=window.since.timestamp(), until=until.timestamp(),
                                 text_as_category=True)
        rows = window.last_rows or self.settings.drift_window_rows
        self.window_info = {"last_rows": rows}
        return self.log.read(columns, last=rows, text_as_category=True)

    def _drift_frame(self, frame: pd.DataFrame, source: dict[str, str] | None = None) -> pd.DataFrame:
        """Numbers as float64, categories and labels as text (missing stays missing): one form for
        both sides. `source` names the column a drift column is read from, when it differs."""
        source = source or {}
        return pd.DataFrame({
            name: (frame[source.get(name, name)].to_numpy(dtype="float64") if kind == drift.NUMERIC
                   else _as_text(frame[source.get(name, name)]))
            for name, kind in self.kinds.items()})

    def load_reference(self, job: Job) -> dict:
        found = champion_reference(self.settings.project_dir, self.params,
                                   self.settings.reports_dir / "reference")
        self.reference = found
        self.reference_frame = self._drift_frame(found.frame)
        self.reference_truth = found.frame[self.schema.target.name].astype(str).to_numpy()
        job.log(f"reference: version {found.model_version}, {len(found.frame)} rows ({found.source})")
        return {"model_version": found.model_version}

    def compare(self, job: Job) -> dict:
        features = {n: self.kinds[n] for n in self.schema.feature_names}
        outputs = {n: k for n, k in self.kinds.items() if n not in features}
        self.feature_drift = drift.columns_drift(self.reference_frame, self.current, features)
        self.prediction_drift = drift.columns_drift(self.reference_frame, self.current, outputs)
        target = self.schema.target
        self.verdict = drift.summary(
            feature_drift=self.feature_drift, prediction_drift=self.prediction_drift,
            drift_share=self.settings.drift_share,
            positive=target.positive if target.is_binary else None,
            reference_labels=self.reference_frame[LABEL], current_labels=self.current[LABEL])
        self.verdict["distributions"] = drift.distributions(self.reference_frame, self.current, self.kinds)
        self.quality = None
        if self.labelled is not None and len(self.labelled):
            reference = self.reference_frame.assign(**{quality.TRUTH: self.reference_truth})
            threshold = self._threshold()
            probabilities = [n for n in outputs if n != LABEL]
            self.quality = quality.quality(self.labelled, reference, target, probabilities, threshold)
        self.estimated = self._estimated()
        drifted = ", ".join(self.verdict["drifted_columns"]) or "none"
        job.log(f"dataset drift: {self.verdict['dataset_drift']} (share {self.verdict['drift_share']:.2f}); "
                f"drifted: {drifted}")
        return {}

    def _estimated(self) -> dict:
        """The reference version's quality on its rows of the window, estimated without labels."""
        version = str(self.reference.model_version)
        facts = ModelFacts(self.params.registry.model_name)
        rows = self.served[self.served["model_version"].astype(str) == version]
        found = estimated_quality.window(rows, pd.DataFrame(), self.schema, facts.calibration)
        return {"model_version": version, "rows": found.get("estimated_rows", 0),
                "estimated": found["estimated"], "not_estimated": found.get("not_estimated"),
                "at_training": facts.at_training(version)}

    def _threshold(self) -> float | None:
        from ml import registry

        version = registry.client().get_model_version(self.params.registry.model_name,
                                                      self.reference.model_version)
        value = version.tags.get("threshold") or None
        return float(value) if value else None

    def render(self, job: Job) -> dict:
        self.page, self.sampled = drift_html.render(
            self.reference_frame, self.current, features=self.feature_drift,
            predictions=self.prediction_drift, kinds=self.kinds,
            drift_share=self.settings.drift_share, rows=self.settings.drift_html_rows)
        return {}

    def store(self, job: Job) -> dict:
        record = job.store.get(job.id) or {}
        self.summary = {
            "id": new_id(), "created": datetime.now(UTC).isoformat(), "window": self.window_info,
            "model_version": self.reference.model_version, "reference": self.reference.describe(),
            **self.verdict, "quality": self.quality, "estimated_performance": self.estimated,
            "html": self.sampled, "job_id": job.id,
            "reason": record.get("reason"), "timings": self.timings}
        self.reports.save(_finite(self.summary), self.page)
        return {"report_id": self.summary["id"], "dataset_drift": self.verdict["dataset_drift"],
                "drift_share": self.verdict["drift_share"],
                "drifted_columns": self.verdict["drifted_columns"],
                "prediction_drift": self.verdict["prediction_drift"]["drifted"],
                "quality_rows": 0 if self.quality is None else self.quality["rows"]}

    def policy(self, job: Job) -> dict:
        from control_api.jobs.policy import retrain_if_drifting

        started = retrain_if_drifting(job.store, self.reports, self.settings.drift_retrain_after)
        if started:
            job.log(f"auto-retrain: job {started['retrain_job']} ({started['retrain_reason']})")
        return {"timings": self.timings, **(started or {})}


def _as_text(column: pd.Series) -> np.ndarray:
    """Values as text, fast for a million rows of a few distinct values (missing: None)."""
    codes, uniques = pd.factorize(column)
    text = np.array([str(u) for u in uniques] + [None], dtype=object)
    return text[codes]  # code -1 (missing) picks the trailing None


def _finite(value):
    """NaN and infinities become null: the summary is JSON."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
