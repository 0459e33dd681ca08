"""Failed sign-ins are rate limited per username and per client address (flask-limiter).

Only failures count: a right password never uses up an allowance. The counters live in memory
(each API process counts for itself) or in Redis when REDIS_URL is set (one count for every
process); OPCON_RATELIMIT_STORAGE_URI overrides both.
"""

from __future__ import annotations

from flask import g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address


def build(storage_uri: str) -> Limiter:
    return Limiter(key_func=get_remote_address, storage_uri=storage_uri, strategy="moving-window",
                   headers_enabled=True, default_limits=[], key_prefix="opcon-login")


def username_key() -> str:
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    name = name[:64].strip().lower() if isinstance(name, str) else ""
    g.audit_actor = name or "anonymous"
    return "user:" + name


def address_key() -> str:
    return "address:" + (get_remote_address() or "")


def failed(response) -> bool:
    return response.status_code == 401


def retry_after(limiter: Limiter) -> int:
    import time

    current = limiter.current_limit
    return max(1, int(current.reset_at - time.time())) if current else 1
