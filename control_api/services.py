"""What the routes share, built once per app: settings, params, champion, logs, database, queue."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from control_api import db
from control_api.serving import Champion
from control_api.settings import Settings
from ml import params as params_module
from ml.params import Params
from monitoring.prediction_log import PredictionLog


@dataclasses.dataclass
class Services:
    settings: Settings
    params: Params
    champion: Champion
    predictions: PredictionLog
    engine: sa.Engine
    jobs: object  # control_api.jobs.records.JobStore
    metrics: object = None  # monitoring.metrics.ServiceMetrics, set by create_app

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from control_api.jobs.queue import make_queue
        from control_api.jobs.records import JobStore

        params = params_module.load(settings.project_dir)
        engine = db.connect(settings.database_url)
        champion = Champion(params.registry.model_name, params.schema, settings.model_poll_seconds,
                            settings.onnx_max_rows)
        store = JobStore(engine, make_queue(settings))
        return cls(settings, params, champion, PredictionLog(settings.prediction_log_dir), engine,
                   store)
