"""Bearer token → Identity, fast enough for the prediction path.

Each API process keeps the identities it has looked up. Anything that takes a credential's power
away (sign-out, revocation, a disabled user, a changed role or password) bumps a shared *epoch*; a
process that sees a new epoch forgets what it knew, so the change holds on the very next request
in every worker. The epoch is the size of a file in the state dir, one byte longer per bump (one
host; a stat() per request), or a Redis counter (REDIS_URL; a GET per request).
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from pathlib import Path

from control_api.identity.store import Identity, IdentityStore, now

CACHE_LIMIT = 10_000  # identities kept per process; the cache is emptied when full
TOUCH_SECONDS = 60.0  # an API token's last-used time is written at most this often per process


class FileEpoch:
    """One byte appended per bump: the file's size never repeats, and reading it is one stat()."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def current(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def bump(self) -> None:
        with open(self.path, "ab") as handle:  # O_APPEND: concurrent bumps each add their byte
            handle.write(b".")


class RedisEpoch:
    def __init__(self, url: str, key: str):
        import redis

        self.client, self.key = redis.Redis.from_url(url), key

    def current(self) -> bytes | None:
        return self.client.get(self.key)

    def bump(self) -> None:
        self.client.incr(self.key)


class Resolver:
    def __init__(self, store: IdentityStore, epoch, service_token: str, service_role: str):
        self.store, self.epoch = store, epoch
        self._service_token = service_token.encode()
        self._service = Identity("service-token", "Service token (OPCON_API_TOKEN)", service_role,
                                 "service", "service-token")
        self._cache: dict[str, Identity | None] = {}
        self._seen_epoch: object = None
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
