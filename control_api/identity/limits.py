"""Failed sign-ins are limited per username and per client address, in a moving window.

Only failures count: a right password never uses up an allowance. The counting is the `limits`
library's (the engine of flask-limiter), called from the sign-in route alone: flask-limiter's
request hook would cost every prediction about 0.3 ms. The counters live in memory (each API
process counts for itself) or in Redis when REDIS_URL is set (one count for every process);
OPCON_RATELIMIT_STORAGE_URI overrides both. While their store does not answer, sign-in is refused
with 503: without a count, a password could be guessed at any rate.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond, storage, strategies
from limits.errors import StorageError

from control_api.errors import APIError

NAMESPACE = "opcon-login"


class LoginLimits:
    def __init__(self, storage_uri: str, per_user: int, per_address: int, window_seconds: int,
                 namespace: str = NAMESPACE):
        self.limiter = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(storage_uri, wrap_exceptions=True))
        self.namespace = namespace
        self.rules = (("user", RateLimitItemPerSecond(per_user, window_seconds)),
                      ("address", RateLimitItemPerSecond(per_address, window_seconds)))

    def _keys(self, username: str, address: str) -> dict[str, str]:
        return {"user": username.strip().lower()[:64], "address": address or "unknown"}

    def wait_seconds(self, username: str, address: str) -> int:
        """Seconds until a sign-in may be tried again; 0 when it may be tried now."""
        keys, wait = self._keys(username, address), 0.0
        try:
            for kind, rule in self.rules:
                if not self.limiter.test(rule, self.namespace, kind, keys[kind]):
                    stats = self.limiter.get_window_stats(rule, self.namespace, kind, keys[kind])
                    wait = max(wait, stats.reset_time - time.time())
        except StorageError as error:
            raise _unavailable(error) from None
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        keys = self._keys(username, address)
        try:
            for kind, rule in self.rules:
                self.limiter.hit(rule, self.namespace, kind, keys[kind])
        except StorageError as error:
            raise _unavailable(error) from None


def _unavailable(error: StorageError) -> APIError:
    reason = type(getattr(error, "storage_error", None) or error).__name__
    return APIError(503, "sign-in is unavailable for now: the store that counts failed sign-ins does "
                    "not answer; try again shortly", headers={"Retry-After": "5"},
                    reason=f"sign-in counters unavailable ({reason})")
