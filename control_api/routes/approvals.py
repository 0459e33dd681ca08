"""Promotion approval (`registry.require_approval: true`): what waits, approve, reject.

An admin other than the user who started the retrain decides; approving moves `@champion`.
"""

from __future__ import annotations

from datetime import datetime

from flask import g, request
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field

from control_api import approvals as records
from control_api import champion_history
from control_api.errors import APIError
from control_api.identity.routing import SecuredBlueprint
from control_api.models import ErrorBody, PromoteOut, VersionPath
from control_api.parameters import Parameters
from ml import registry
from ml.errors import RegistryError

TAG = Tag(name="approvals", description="Challengers that passed the gate and wait for an admin")


class ApprovalOut(BaseModel):
    version: str
    status: str
    requested_by: str | None
    job_id: str | None
    created_at: datetime | None = None
    decided_by: str | None
    decided_at: datetime | None = None
    comment: str | None
    comparison: dict


class ApprovalList(BaseModel):
    items: list[ApprovalOut]


class ApprovalQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(None, pattern="^(pending|approved|rejected)$")


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(min_length=1, max_length=500)


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("approvals", __name__, abp_tags=[TAG], abp_responses={422: ErrorBody})
    name, store = services.params.registry.model_name, services.approvals

    def pending(version: int) -> dict:
        g.audit_target = f"model:{name}/{version}"
        approval = store.get(name, str(version))
        if approval is None or approval["status"] != records.PENDING:
            state = "not awaiting approval" if approval is None else approval["status"]
            raise APIError(409, f"version {version} is {state}",
                           [{"field": "version", "problem": "no pending approval"}])
        if approval["requested_by"] and approval["requested_by"] == g.identity.name:
            raise APIError(403, "you started the retrain that made this version: another admin "
                           "must decide", [{"field": "version", "problem": "four-eyes rule"}],
                           permission="models:approve", role=g.identity.role)
        return approval

    @bp.get("/approvals", permission="read", responses={200: ApprovalList})
    def list_approvals(query: ApprovalQuery):
        """Approval records, newest first (pending: the challengers waiting for a decision)."""
        return {"items": [records.present(a) for a in store.list(name, query.status)]}

    @bp.post("/models/<int:version>/approve", permission="models:approve",
             responses={200: PromoteOut, 404: ErrorBody, 409: ErrorBody})
    def approve(path: VersionPath, body: DecisionBody):
        """Approve a waiting challenger: it becomes the champion."""
        pending(path.version)
        previous = registry.champion(name)
        if not store.decide(name, str(path.version), records.APPROVED, g.identity.name, body.comment):
            raise APIError(409, f"version {path.version} was decided meanwhile")
        reason = f"approved by {g.identity.name}: {body.comment}"
        try:
            registry.promote(name, str(path.version), reason, by=g.identity.name)
        except RegistryError as error:
            raise APIError(404, str(error), [{"field": "version", "problem": "no such version"}]) from None
        registry.client().set_model_version_tag(name, str(path.version), "promotion.outcome",
                                                "promoted (approved)")
        champion_history.record_move(
            services.audit, name, str(path.version), None if previous is None else previous.version,
            by=g.identity.name, role=g.identity.role, reason=reason, request_id=g.request_id,
            client=request.remote_addr)
        services.champion.refresh()
        return {"name": name, "champion": str(path.version)}

    @bp.post("/models/<int:version>/reject", permission="models:approve",
             responses={200: ApprovalOut, 404: ErrorBody, 409: ErrorBody})
    def reject(path: VersionPath, body: DecisionBody):
        """Reject a waiting challenger: the champion stays."""
        pending(path.version)
        if not store.decide(name, str(path.version), records.REJECTED, g.identity.name, body.comment):
            raise APIError(409, f"version {path.version} was decided meanwhile")
        registry.client().set_model_version_tag(name, str(path.version), "promotion.outcome",
                                                "rejected")
        return records.present(store.get(name, str(path.version)))

    return bp
