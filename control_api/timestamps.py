"""The date-time that requests carry: ISO 8601 text, what the spec calls `format: date-time`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def _iso_8601(value):
    """A datetime from ISO 8601 text (or one already): not from a number, nor from a number's
    text, which pydantic alone would read as seconds since 1970."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "expected an ISO 8601 date-time string")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("datetime_parsing", "not an ISO 8601 date-time, e.g. "
                                  "2025-01-31T12:00:00Z") from None


# for query strings and JSON bodies alike (strict or not)
IsoDatetime = Annotated[datetime, BeforeValidator(_iso_8601)]
