"""Challengers waiting for an admin's approval (`registry.require_approval`), and the decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from control_api.db import approvals, row_dict

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


class ApprovalStore:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def add_pending(self, model: str, version: str, *, job_id: str | None, requested_by: str | None,
                    comparison: dict) -> dict:
        with self.engine.begin() as conn:
            conn.execute(approvals.insert().values(
                model=model, version=str(version), status=PENDING, job_id=job_id,
                requested_by=requested_by, created_at=datetime.now(UTC), comparison=comparison))
        return self.get(model, version)

    def get(self, model: str, version: str) -> dict | None:
        with self.engine.connect() as conn:
            return row_dict(conn.execute(sa.select(approvals).where(
                approvals.c.model == model, approvals.c.version == str(version))).first())

    def list(self, model: str, status: str | None = None) -> list[dict]:
        query = sa.select(approvals).where(approvals.c.model == model)
        if status is not None:
            query = query.where(approvals.c.status == status)
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(query.order_by(approvals.c.created_at.desc()))]

    def decide(self, model: str, version: str, status: str, by: str, comment: str) -> bool:
        """pending → approved/rejected, once; False when it was not pending."""
        with self.engine.begin() as conn:
            return bool(conn.execute(approvals.update().where(
                approvals.c.model == model, approvals.c.version == str(version),
                approvals.c.status == PENDING).values(
                    status=status, decided_by=by, decided_at=datetime.now(UTC), comment=comment)
            ).rowcount)


def present(row: dict) -> dict:
    return {k: row[k] for k in ("version", "status", "requested_by", "job_id", "created_at",
                                "decided_by", "decided_at", "comment", "comparison")}
