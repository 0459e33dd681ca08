"""Which model served when, and who put it there: a view over the audit trail's champion moves,
completed from the registry for moves made outside the console (the first champion of a new
install, or an alias set in MLflow directly)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

from control_api.audit import AuditLog

MOVE = "champion.move"
UNRECORDED = "outside the console (not in the audit trail)"


def target(name: str) -> str:
    return f"model:{name}"


def record_move(audit: AuditLog, name: str, version: str, previous: str | None, *, by: str,
                role: str | None, reason: str, job_id: str | None = None,
                request_id: str | None = None, client: str | None = None,
                alias: str = "champion") -> None:
    """An alias move in the audit trail: `champion.move` (the history is made of these) or
    `challenger.move`; `previous` is the champion before it."""
    audit.record(actor=by, role=role, action=f"{alias}.move", target=target(name), outcome="ok",
                 request_id=request_id, client=client,
                 params={"version": str(version), "previous": None if previous is None else str(previous),
                         "reason": reason, "job_id": job_id})


def _registry_period(version, first: bool = False) -> dict:
    """A period read from a version's tags: its latest promotion, or its first (`first`)."""
    tags, prefix = version.tags, "first_" if first else ""
    try:
        start = datetime.fromisoformat(tags[f"{prefix}promoted_at"])
    except (KeyError, ValueError):
        start = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
    return {"version": str(version.version), "from": start, "to": None,
            "moved_by": tags.get(f"{prefix}promoted_by") or UNRECORDED,
            "reason": None if first else tags.get("promotion.reason"), "job_id": None, "recorded": False}


def _moved_outside(version, after: datetime | None) -> dict:
    """The serving version when the last recorded move named another one. Its tags tell who
    promoted it if that happened after the last recorded move (the pipeline run by hand); if they
    are older, the alias was set in MLflow directly, at some time after `after`."""
    period = _registry_period(version)
    if after is not None and period["from"] <= after:
        period.update(moved_by=UNRECORDED, reason="the alias was set outside the console (in MLflow), "
                      "some time after this", **{"from": after})
    return period


def periods(audit: AuditLog, name: str, lookup_version, current) -> list[dict]:
    """Champion periods, oldest first; `to` None for the one serving now. `lookup_version(v)` gives
    the registry's ModelVersion (or None); `current` is the champion ModelVersion or None."""
    moves = audit.events(MOVE, target(name))
    found = [{"version": e["params"]["version"], "from": e["at"], "to": None, "moved_by": e["actor"],
              "reason": e["params"].get("reason"), "job_id": e["params"].get("job_id"), "recorded": True}
             for e in moves]
    first_previous = moves[0]["params"].get("previous") if moves else None
    if first_previous and (before := lookup_version(first_previous)) is not None:
        found.insert(0, _registry_period(before, first=True))
    if current is not None and (not found or found[-1]["version"] != str(current.version)):
        found.append(_moved_outside(current, found[-1]["from"] if found else None))
    found.sort(key=lambda p: p["from"])
    for earlier, later in pairwise(found):
        earlier["to"] = later["from"]
    return found
