"""What may be repeated back or written down: secrets never, other values only in short."""

from __future__ import annotations

SECRET_KEYS = ("password", "token", "secret", "authorization", "cookie", "api_key")
SHORT = 40  # characters of a bad value an error message repeats


def is_secret(name: str) -> bool:
    name = name.lower().rsplit(".", 1)[-1]
    return name in SECRET_KEYS or name.endswith(("password", "_secret", "_token"))


def short(value, limit: int = SHORT):
    """A string cut to `limit` characters (with an ellipsis); anything else as it is."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value
