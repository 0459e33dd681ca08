"""Bearer token → Identity, fast enough for the prediction path.

Each API process keeps the identities it has looked up. Anything that takes a credential's power
away (sign-out, revocation, a disabled user, a changed role or password) bumps a shared *epoch*; a
process that sees a new epoch forgets what it knew, so the change holds on the very next request
in every worker. The epoch is a small file in the state dir (one host) or a Redis key (REDIS_URL).
"""

from __future__ import annotations

import hmac
import os
import threading
import time
import uuid
from pathlib import Path

from control_api.identity.store import Identity, IdentityStore, now

CACHE_LIMIT = 10_000  # identities kept per process; the cache is emptied when full
TOUCH_SECONDS = 60.0  # an API token's last-used time is written at most this often per process


class FileEpoch:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def current(self) -> str:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""

    def bump(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        temporary.write_text(uuid.uuid4().hex)
        os.replace(temporary, self.path)


class RedisEpoch:
    def __init__(self, url: str, key: str):
        import redis

        self.client, self.key = redis.Redis.from_url(url), key

    def current(self) -> str:
        value = self.client.get(self.key)
        return "" if value is None else value.decode()

    def bump(self) -> None:
        self.client.set(self.key, uuid.uuid4().hex)


class Resolver:
    def __init__(self, store: IdentityStore, epoch, service_token: str, service_role: str):
        self.store, self.epoch = store, epoch
        self._service_token = service_token.encode()
        self._service = Identity("service-token", "Service token (OPCON_API_TOKEN)", service_role,
                                 "service", "service-token")
        self._cache: dict[str, Identity | None] = {}
        self._seen_epoch: str | None = None
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def resolve(self, token: str) -> Identity | None:
        if not token:
            return None
        if hmac.compare_digest(token.encode(), self._service_token):
            return self._service
        epoch = self.epoch.current()
        with self._lock:
            if epoch != self._seen_epoch or len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
                self._seen_epoch = epoch
            if token in self._cache:
                identity = self._cache[token]
            else:
                identity = self._cache[token] = self.store.lookup(token)
        if identity is None or (identity.expires_at is not None and identity.expires_at <= now()):
            return None
        if identity.auth == "token":
            self._touch(identity.credential)
        return identity

    def forget(self) -> None:
        """Every process drops what it knows about credentials (after a revocation)."""
        self.epoch.bump()

    def _touch(self, token_id: str) -> None:
        last = self._touched.get(token_id, 0.0)
        if time.monotonic() - last >= TOUCH_SECONDS:
            self._touched[token_id] = time.monotonic()
            self.store.touch_token(token_id)
