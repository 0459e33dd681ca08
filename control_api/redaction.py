"""What may be repeated back or written down: secrets never, other values only in short."""

from __future__ import annotations

SECRET_KEYS = ("password", "token", "secret", "authorization", "cookie", "api_key")
SHORT = 200  # characters of a client's text (a bad value, a field or column name) an error repeats


def is_secret(name: str) -> bool:
    name = name.lower().rsplit(".", 1)[-1]
    return name in SECRET_KEYS or name.endswith(("password", "_secret", "_token"))


def short(value, limit: int = SHORT):
    """A string cut to `limit` characters, the last an ellipsis; anything else as it is."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit - 1] + "…"
    return value
