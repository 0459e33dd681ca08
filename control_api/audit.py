"""The audit trail: append-only events, each hash-chained to the one before it.

A row's hash is the SHA-256 of its content and the previous row's hash. `seq` and `prev_hash` are
unique in the table, so two writers racing for the same place cannot fork the chain: the loser
reads the new tail and tries again. `verify()` recomputes the chain and names the first row that
does not match (edited, deleted or inserted out of band). Removing the newest rows leaves a shorter
chain that is still intact: `last_hash` and `rows`, noted elsewhere (a ticket, a log shipper),
anchor the end.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime

import sqlalchemy as sa

from control_api.db import audit_events, row_dict
from control_api.redaction import is_secret, short

GENESIS = "0" * 64
RETRIES = 50
MAX_VALUE = 200  # characters of a parameter value kept in the summary


def _canonical(event: dict) -> str:
    content = {k: event[k] for k in ("seq", "actor", "role", "action", "target", "request_id",
                                     "client", "outcome", "status", "params", "prev_hash")}
    content["at"] = event["at"].astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)


def event_hash(event: dict) -> str:
    return hashlib.sha256(_canonical(event).encode()).hexdigest()


def redact(params: dict | None) -> dict:
    """A short summary of request parameters: secrets masked, values cut short, no bulk data."""
    summary = {}
    for raw_key, value in (params or {}).items():
        key = str(raw_key)[:MAX_VALUE]
        if is_secret(key):
            summary[key] = "(redacted)"
        elif isinstance(value, bool | int | float) or value is None:
            summary[key] = value
        elif isinstance(value, str):
            summary[key] = short(value, MAX_VALUE)
        elif isinstance(value, list | tuple):
            summary[key] = f"(list of {len(value)})"
        else:
            summary[key] = f"({type(value).__name__})"
    return summary


class AuditLog:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def record(self, *, actor: str, action: str, target: str, outcome: str, role: str | None = None,
               status: int | None = None, request_id: str | None = None, client: str | None = None,
               params: dict | None = None) -> dict:
        event = {"actor": (actor or "anonymous")[:64], "role": role, "action": action[:64],
                 "target": (target or "")[:256], "request_id": request_id, "client": (client or "")[:64],
                 "outcome": outcome[:32], "status": status, "params": redact(params)}
        for attempt in range(RETRIES):
            try:
                with self.engine.begin() as conn:
                    tail = conn.execute(sa.select(audit_events.c.seq, audit_events.c.hash)
                                        .order_by(audit_events.c.seq.desc()).limit(1)).first()
                    row = {**event, "seq": (tail.seq + 1) if tail else 1,
                           "prev_hash": tail.hash if tail else GENESIS, "at": datetime.now(UTC)}
                    row["hash"] = event_hash(row)
                    conn.execute(audit_events.insert().values(**row))
                return row
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as error:
                if isinstance(error, sa.exc.OperationalError) and self.engine.dialect.name != "sqlite":
                    raise  # the server is unreachable: the API answers 503 (control_api.errors)
                # another writer took this place in the chain (or held SQLite's write lock)
                time.sleep(min(0.002 * (attempt + 1), 0.05))
        raise RuntimeError("could not append to the audit trail")

    def query(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
              since: datetime | None = None, until: datetime | None = None, limit: int = 100,
              offset: int = 0) -> tuple[list[dict], int]:
        conditions = []
        if actor:
            conditions.append(audit_events.c.actor == actor)
        if action:
            conditions.append(audit_events.c.action == action)
        if target:
            conditions.append(audit_events.c.target.contains(target, autoescape=True))
        if since:
            conditions.append(audit_events.c.at >= since)
        if until:
            conditions.append(audit_events.c.at < until)
        query = sa.select(audit_events).where(*conditions).order_by(audit_events.c.seq.desc())
        count = sa.select(sa.func.count()).select_from(audit_events).where(*conditions)
        with self.engine.connect() as conn:
            rows = [row_dict(r) for r in conn.execute(query.limit(limit).offset(offset))]
            return rows, conn.execute(count).scalar()

    def events(self, action: str, target: str | None = None) -> list[dict]:
        """Every event of one action (and target), oldest first."""
        query = sa.select(audit_events).where(audit_events.c.action == action)
        if target is not None:
            query = query.where(audit_events.c.target == target)
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(query.order_by(audit_events.c.seq))]

    def verify(self, batch: int = 5_000) -> dict:
        """Walk the chain from the first row: intact, or the first row that breaks it and how."""
        expected_prev, expected_seq, rows = GENESIS, 1, 0
        with self.engine.connect() as conn:
            last = 0
            while True:
                chunk = conn.execute(sa.select(audit_events).where(audit_events.c.seq > last)
                                     .order_by(audit_events.c.seq).limit(batch)).all()
                if not chunk:
                    break
                for raw in chunk:
                    row = row_dict(raw)
                    problem = None
                    if row["seq"] != expected_seq:
                        problem = f"row {expected_seq} is missing"
                    elif row["prev_hash"] != expected_prev:
                        problem = "its previous-hash does not match the row before it"
                    elif event_hash(row) != row["hash"]:
                        problem = "its content does not match its hash (edited)"
                    if problem:
                        return {"intact": False, "rows": rows, "first_broken": row["seq"],
                                "problem": problem, "last_hash": None}
                    expected_prev, expected_seq, rows = row["hash"], row["seq"] + 1, rows + 1
                    last = row["seq"]
        return {"intact": True, "rows": rows, "first_broken": None, "problem": None,
                "last_hash": None if rows == 0 else expected_prev}
