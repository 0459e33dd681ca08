"""Users, tokens and audit events as tables people read (the Admin pages)."""

from __future__ import annotations

import json

import pandas as pd

from ui.components import formatting

ROLES = ("viewer", "operator", "engineer", "admin")  # lowest first: each has everything before it


def times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Time columns as datetimes (empty cells as NaT, which tables draw blank)."""
    return frame.assign(**{c: pd.to_datetime(frame[c], utc=True) for c in columns})


def roles_up_to(role: str) -> list[str]:
    """The roles a token of an owner with `role` may have (never above its owner's)."""
    return list(ROLES[:ROLES.index(role) + 1]) if role in ROLES else []


def user_label(user: dict) -> str:
    state = " · disabled" if user["disabled"] else ""
    return f"{user['username']} ({user['display_name']}) · {user['role']} · {user['kind']}{state}"


USER_COLUMNS = ["username", "display name", "role", "kind", "state", "created", "last sign-in"]


def users_frame(users: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "username": u["username"], "display name": u["display_name"], "role": u["role"], "kind": u["kind"],
        "state": "disabled" if u["disabled"] else "active", "created": formatting.timestamp(u["created_at"]),
        "last sign-in": formatting.timestamp(u.get("last_login_at")),
    } for u in users], columns=USER_COLUMNS).pipe(times, "created", "last sign-in")


def token_state(token: dict, now: pd.Timestamp) -> str:
    if token.get("revoked_at"):
        return "revoked"
    return "expired" if formatting.timestamp(token["expires_at"]) <= now else "active"


def tokens_frame(tokens: list[dict], now: pd.Timestamp) -> pd.DataFrame:
    columns = ["name", "owner", "role", "state", "prefix", "created", "created by", "expires", "last used",
               "revoked", "id"]
    return pd.DataFrame([{
        "name": t["name"], "owner": t["owner"], "role": t["role"], "state": token_state(t, now),
        "prefix": f"{t['prefix']}…", "created": formatting.timestamp(t["created_at"]),
        "created by": t["created_by"], "expires": formatting.timestamp(t["expires_at"]),
        "last used": formatting.timestamp(t.get("last_used_at")),
        "revoked": formatting.timestamp(t.get("revoked_at")), "id": t["id"],
    } for t in tokens], columns=columns).pipe(times, "created", "expires", "last used", "revoked")


AUDIT_COLUMNS = ["seq", "at", "actor", "role", "action", "target", "outcome", "status", "client",
                 "request id", "params"]


def audit_frame(events: list[dict]) -> pd.DataFrame:
    """Newest first, as the API gives them; params (already redacted by the API) as compact text."""
    return pd.DataFrame([{
        "seq": e["seq"], "at": formatting.timestamp(e["at"]), "actor": e["actor"],
        "role": e.get("role") or "", "action": e["action"], "target": e["target"], "outcome": e["outcome"],
        "status": e.get("status"),
        "client": e.get("client") or "", "request id": e.get("request_id") or "",
        "params": ", ".join(f"{k}={v}" for k, v in (e.get("params") or {}).items()),
    } for e in events], columns=AUDIT_COLUMNS).pipe(times, "at")


CSV_FIELDS = ("seq", "at", "actor", "role", "action", "target", "outcome", "status", "client", "request_id")


def audit_csv(events: list[dict]) -> bytes:
    """The events as the API gives them (times in ISO 8601 UTC, params as JSON), one row each."""
    rows = [{**{k: e.get(k) for k in CSV_FIELDS}, "params": json.dumps(e.get("params") or {}, sort_keys=True)}
            for e in events]
    return pd.DataFrame(rows, columns=[*CSV_FIELDS, "params"]).to_csv(index=False).encode()
