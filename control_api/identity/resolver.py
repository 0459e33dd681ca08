"""Bearer token → Identity, fast enough for the prediction path, and steady when the database or
Redis underneath restarts.

Each API process keeps the identities it has verified. Anything that takes a credential's power
away (sign-out, revocation, a disabled user, a changed role or password) bumps a shared *epoch*; a
process that sees a new epoch forgets what it knew, so the change holds on the very next request
in every worker. The epoch is the size of a file in the state dir, one byte longer per bump (one
host; a stat() per request), or a Redis counter (REDIS_URL; a GET per request).

A verified identity is checked against the database again after VERIFIED_SECONDS, which bounds how
long a missed epoch bump (Redis down at the revocation) can go unnoticed. While the database cannot
answer that check, an identity verified within GRACE_SECONDS still holds: no revocation can be
stored while it is down, and one stored before bumped the epoch, which emptied the cache. While
the epoch cannot be read, nothing cached counts as current: every credential is checked against
the database, and when the epoch can be read again the cache is emptied (a bump may have been
missed in between).
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from control_api.identity.store import Identity, IdentityStore, now

log = logging.getLogger(__name__)

CACHE_LIMIT = 10_000  # identities kept per process; the cache is emptied when full
TOUCH_SECONDS = 60.0  # an API token's last-used time is written at most this often per process
VERIFIED_SECONDS = 60.0  # a cached identity is checked against the database again after this
GRACE_SECONDS = 120.0  # while the database is down, an identity verified this recently still holds
UNREAD = object()  # what an epoch answers when it cannot be read (never equal to a real epoch)
DATABASE_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError)


class FileEpoch:
    """One byte appended per bump: the file's size never repeats, and reading it is one stat()."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def current(self) -> object:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0
        except OSError:
            return UNREAD

    def bump(self) -> None:
        with open(self.path, "ab") as handle:  # O_APPEND: concurrent bumps each add their byte
            handle.write(b".")


class RedisEpoch:
    def __init__(self, url: str, key: str):
        import redis

        # a request waits at most about a second on a Redis that does not answer
        self.client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self.key, self._errors = key, (redis.RedisError, OSError)

    def current(self) -> object:
        try:
            return self.client.get(self.key)
        except self._errors:
            return UNREAD

    def bump(self) -> None:
        self.client.incr(self.key)


@dataclasses.dataclass(frozen=True)
class _Verified:
    identity: Identity | None  # None: the database said the token is not valid
    at: float  # time.monotonic() of the database's answer


class Resolver:
    def __init__(self, store: IdentityStore, epoch, service_token: str, service_role: str,
                 touch_seconds: float = TOUCH_SECONDS):
        self.store, self.epoch, self.touch_seconds = store, epoch, touch_seconds
        self._service_token = service_token.encode()
        self._service = Identity("service-token", "Service token (OPCON_API_TOKEN)", service_role,
                                 "service", "service-token")
        self._cache: dict[str, _Verified] = {}
        self._seen_epoch: object = None
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def resolve(self, token: str) -> Identity | None:
        """The caller, or None for a credential that is unknown, revoked or expired. Raises the
        database's error when the credential cannot be checked (the API answers 503)."""
        if not token:
            return None
        if hmac.compare_digest(token.encode(), self._service_token):
            return self._service
        identity = self._verified(token)
        if identity is None or (identity.expires_at is not None and identity.expires_at <= now()):
            return None
        if identity.auth == "token":
            self._touch(identity.credential)
        return identity

    def _verified(self, token: str) -> Identity | None:
        epoch = self.epoch.current()
        with self._lock:
            if epoch is UNREAD:
                if self._seen_epoch is not UNREAD:
                    log.warning("the credential epoch cannot be read: checking every credential "
                                "against the database until it can")
            elif epoch != self._seen_epoch or len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._seen_epoch = epoch
            cached = self._cache.get(token)
        age = time.monotonic() - cached.at if cached else None
        if cached is not None and epoch is not UNREAD and age < VERIFIED_SECONDS:
            return cached.identity
        try:
            identity = self.store.lookup(token)
        except DATABASE_DOWN:
            if cached is None or age >= GRACE_SECONDS:
                raise
            return cached.identity
        with self._lock:
            if epoch == self._seen_epoch:  # no other request saw a new epoch meanwhile
                self._cache[token] = _Verified(identity, time.monotonic())
        return identity

    def forget(self) -> None:
        """Every process drops what it knows about credentials (after a revocation): this one now,
        the others at their next request, or within VERIFIED_SECONDS when the epoch cannot be
        bumped (its Redis is down; the revocation itself is in the database)."""
        with self._lock:
            self._cache.clear()
        try:
            self.epoch.bump()
        except Exception as error:  # a Redis error or an OSError: the revocation stands anyway
            log.warning("could not bump the credential epoch (%s): other API processes drop their "
                        "cached credentials within %g s", type(error).__name__, VERIFIED_SECONDS)

    def _touch(self, token_id: str) -> None:
        """An API token's last use, written now and then: never a reason to refuse a request."""
        last = self._touched.get(token_id, 0.0)
        if time.monotonic() - last >= self.touch_seconds:
            self._touched[token_id] = time.monotonic()
            try:
                self.store.touch_token(token_id)
            except DATABASE_DOWN:
                log.info("the last use of token %s was not recorded: the database is unavailable",
                         token_id)
