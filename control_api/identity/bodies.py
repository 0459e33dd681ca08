"""Request and response bodies of sign-in, users, tokens and the audit trail (the OpenAPI spec)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from control_api.identity.passwords import MAX_LENGTH, MIN_LENGTH
from control_api.identity.permissions import Role
from control_api.parameters import Parameters
from control_api.timestamps import IsoDatetime

USERNAME = r"^[a-z][a-z0-9._-]{1,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class UserOut(BaseModel):
    username: str
    display_name: str
    role: Role
    kind: Literal["person", "service"]
    created_at: datetime
    disabled: bool
    last_login_at: datetime | None


class LoginOut(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`; shown once")
    expires_at: datetime
    user: UserOut
    permissions: list[str]


class LogoutOut(BaseModel):
    signed_out: bool


class MeOut(BaseModel):
    username: str
    display_name: str
    role: Role
    kind: Literal["person", "service"]
    auth: Literal["session", "token", "service-token"]
    permissions: list[str]
    expires_at: datetime | None


class UserList(BaseModel):
    items: list[UserOut]


# a person signs in with a password, a service account with tokens only (kind defaults to person)
_ONE_KIND = {"oneOf": [
    {"properties": {"kind": {"const": "person"}, "password": {"type": "string"}}, "required": ["password"]},
    {"properties": {"kind": {"const": "service"}, "password": {"type": "null"}}, "required": ["kind"]}]}


class UserCreate(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_ONE_KIND)
    username: str = Field(pattern=USERNAME, description="lower case: letters, digits, . _ -")
    display_name: str | None = Field(None, min_length=1, max_length=128)
    role: Role
    kind: Literal["person", "service"] = "person"
    password: str | None = Field(None, min_length=MIN_LENGTH, max_length=MAX_LENGTH,
                                 description=f"people only; at least {MIN_LENGTH} characters")


class UserChange(_Strict):
    display_name: str | None = Field(None, min_length=1, max_length=128)
    role: Role | None = None
    disabled: bool | None = Field(None, strict=True)
    password: str | None = Field(None, min_length=MIN_LENGTH, max_length=MAX_LENGTH,
                                 description="a new password (ends the user's sessions)")


class UserPath(BaseModel):
    username: str = Field(min_length=1, max_length=64)


class TokenOut(BaseModel):
    id: str
    name: str
    owner: str
    role: Role
    prefix: str = Field(description="the token's first characters, to recognise it")
    created_at: datetime
    created_by: str
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown this once, never again")


class TokenList(BaseModel):
    items: list[TokenOut]


class TokenCreate(_Strict):
    owner: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    role: Role
    expires_days: int = Field(90, ge=1, le=365, strict=True)


class TokenQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    owner: str | None = Field(None, max_length=64)


class TokenPath(BaseModel):
    token_id: str = Field(min_length=1, max_length=36)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AuditQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    actor: str | None = Field(None, max_length=64)
    action: str | None = Field(None, max_length=64)
    target: str | None = Field(None, max_length=256, description="events whose target contains this")
    since: IsoDatetime | None = None
    until: IsoDatetime | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31 - 1)

    _zone = field_validator("since", "until")(classmethod(lambda cls, value: _utc(value)))


class AuditEvent(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str | None
    action: str
    target: str
    request_id: str | None
    client: str | None
    outcome: str
    status: int | None
    params: dict[str, Any]
    prev_hash: str
    hash: str = Field(description="SHA-256 of this event's content and the previous event's hash")


class AuditPage(BaseModel):
    items: list[AuditEvent]
    total: int
    limit: int
    offset: int


class AuditVerifyOut(BaseModel):
    intact: bool
    rows: int
    first_broken: int | None
    problem: str | None
    last_hash: str | None = Field(description="the newest event's hash: note it elsewhere to detect "
                                  "a removal of the newest rows later")
