"""What the routes share, built once per app: settings, params, champion, logs, database, queue,
accounts, the audit trail."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from control_api import db
from control_api.approvals import ApprovalStore
from control_api.audit import AuditLog
from control_api.identity.limits import LoginLimits
from control_api.identity.resolver import FileEpoch, RedisEpoch, Resolver
from control_api.identity.store import IdentityStore
from control_api.serving import Champion
from control_api.settings import Settings
from control_api.shadow import Shadow
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
    identities: IdentityStore
    resolver: Resolver
    audit: AuditLog
    login_limits: LoginLimits
    approvals: ApprovalStore
    shadow: Shadow
    metrics: object = None  # monitoring.metrics.ServiceMetrics, set by create_app

    @classmethod
    def build(cls, settings: Settings) -> Services:
        from control_api.jobs.queue import make_queue
        from control_api.jobs.records import JobStore

        params = params_module.load(settings.project_dir)
        engine = db.connect(settings.database_url)
        champion = Champion(params.registry.model_name, params.schema, settings.model_poll_seconds,
                            settings.onnx_max_rows, engine=engine,
                            lead_seconds=settings.model_switch_lead_seconds)
        store = JobStore(engine, make_queue(settings))
        identities = IdentityStore(engine)
        if settings.redis_url:
            epoch = RedisEpoch(settings.redis_url, f"{settings.queue_name}:identity-epoch")
        else:
            epoch = FileEpoch(settings.state_dir / "identity" / "epoch")
        resolver = Resolver(identities, epoch, settings.api_token, settings.api_token_role)
        return cls(settings, params, champion, PredictionLog(settings.prediction_log_dir), engine,
                   store, identities, resolver, AuditLog(engine), LoginLimits(
                       settings.ratelimit_storage, settings.login_max_failures,
                       settings.login_max_failures_per_address, settings.login_lockout_seconds,
                       f"{settings.queue_name}-login"),
                   ApprovalStore(engine),
                   Shadow(params.registry.model_name, params.schema,
                          PredictionLog(settings.shadow_log_dir, indexed=False), enabled=settings.shadow,
                          poll_seconds=settings.model_poll_seconds, onnx_max_rows=settings.onnx_max_rows,
                          max_batch_rows=settings.shadow_max_batch_rows))
