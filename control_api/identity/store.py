"""Accounts, sign-in sessions and API tokens in the API's database.

Tokens are random; only their SHA-256 is stored (a visible prefix for API tokens), so the database
never holds a credential that works. Passwords are argon2id hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from control_api.db import api_tokens, row_dict, sessions, users
from control_api.identity import passwords, permissions

SESSION_PREFIX = "ocs_"
TOKEN_PREFIX = "oct_"
VISIBLE = 12  # characters of an API token shown in lists (its prefix and 8 random ones)


class IdentityError(Exception):
    """A request about accounts that cannot be done: `field` names what is wrong."""

    def __init__(self, status: int, message: str, field: str):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclasses.dataclass(frozen=True)
class Identity:
    """The caller of one request."""

    name: str
    display_name: str
    role: str
    kind: str  # person, service
    auth: str  # session, token, service-token
    credential: str | None = None  # the session's hash or the token's id
    expires_at: datetime | None = None

    @property
    def permissions(self) -> frozenset[str]:
        return permissions.permissions(self.role)


def now() -> datetime:
    return datetime.now(UTC)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def present_user(row: dict) -> dict:
    return {k: row[k] for k in ("username", "display_name", "role", "kind", "created_at", "disabled",
                                "last_login_at")}


def present_token(row: dict) -> dict:
    return {k: row[k] for k in ("id", "name", "owner", "role", "prefix", "created_at", "created_by",
                                "expires_at", "last_used_at", "revoked_at")}


def _enabled_admins(conn) -> int:
    """Counted under a lock held to the end of the transaction, so two admins demoting each other
    at once cannot both pass: the rows of the enabled admins (PostgreSQL), the write lock (SQLite)."""
    admin = (users.c.role == "admin") & users.c.disabled.is_(False)
    if conn.dialect.name == "sqlite":
        conn.execute(users.update().where(admin).values(role=users.c.role))
        return conn.execute(sa.select(sa.func.count()).select_from(users).where(admin)).scalar()
    return len(conn.execute(sa.select(users.c.username).where(admin).with_for_update()).all())


class IdentityStore:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # -- users ---------------------------------------------------------------------------------
    def user(self, username: str) -> dict | None:
        with self.engine.connect() as conn:
            return row_dict(conn.execute(sa.select(users).where(users.c.username == username)).first())

    def users(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(sa.select(users).order_by(users.c.username))]

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(users)).scalar()

    def create_user(self, username: str, role: str, *, display_name: str | None = None,
                    password: str | None = None, kind: str = "person", created_by: str | None = None
                    ) -> dict:
        if kind == "person" and not password:
            raise IdentityError(422, "a person needs a password (a service account does not)",
                                "password")
        if kind == "service" and password:
            raise IdentityError(422, "a service account signs in with tokens only, not a password",
                                "password")
        row = {"username": username, "display_name": display_name or username, "role": role,
               "kind": kind, "password_hash": passwords.hash_password(password) if password else None,
               "created_at": now(), "created_by": created_by, "disabled": False}
        try:
            with self.engine.begin() as conn:
                conn.execute(users.insert().values(**row))
        except sa.exc.IntegrityError:
            raise IdentityError(409, f"user `{username}` already exists", "username") from None
        return self.user(username)

    def update_user(self, username: str, *, display_name: str | None = None, role: str | None = None,
                    disabled: bool | None = None, password: str | None = None) -> tuple[dict, bool]:
        """Apply the changes; return the user and whether its credentials must be re-checked
        (role, disabled or password changed: its sessions are ended)."""
        current = self.user(username)
        if current is None:
            raise IdentityError(404, f"no user `{username}`", "username")
        values: dict = {}
        if display_name is not None:
            values["display_name"] = display_name
        if role is not None and role != current["role"]:
            values["role"] = role
        if disabled is not None and disabled != current["disabled"]:
            values["disabled"] = disabled
        if password is not None:
            if current["kind"] != "person":
                raise IdentityError(409, "a service account has no password", "password")
            values["password_hash"] = passwords.hash_password(password)
        demotes = values.get("role", "admin") != "admin" or values.get("disabled", False)
        with self.engine.begin() as conn:
            was_admin = current["role"] == "admin" and not current["disabled"]
            if was_admin and demotes and _enabled_admins(conn) <= 1:
                raise IdentityError(409, "the last enabled admin cannot be disabled or demoted",
                                    "role" if "role" in values else "disabled")
            if values:
                conn.execute(users.update().where(users.c.username == username).values(**values))
            revoke = bool({"role", "disabled", "password_hash"} & set(values))
            if revoke:
                conn.execute(sessions.update().where(sessions.c.username == username,
                                                     sessions.c.revoked_at.is_(None))
                             .values(revoked_at=now()))
        return self.user(username), revoke

    # -- sessions ------------------------------------------------------------------------------
    def sign_in(self, username: str, password: str, hours: float) -> tuple[str, dict] | None:
        """A new session token and the user, or None when the name or password is wrong.
        Raises IdentityError(403) for a disabled account with the right password."""
        user = self.user(username)
        if not passwords.verify(user and user["password_hash"], password):
            return None
        if user["disabled"]:
            raise IdentityError(403, "this account is disabled; ask an admin", "username")
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(sessions.insert().values(token_hash=digest(token), username=username,
                                                  created_at=stamp,
                                                  expires_at=stamp + timedelta(hours=hours)))
            values = {"last_login_at": stamp}
            if passwords.needs_rehash(user["password_hash"]):
                values["password_hash"] = passwords.hash_password(password)
            conn.execute(users.update().where(users.c.username == username).values(**values))
        return token, self.user(username)

    def sign_out(self, token_hash: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(sessions.update().where(
                sessions.c.token_hash == token_hash, sessions.c.revoked_at.is_(None))
                .values(revoked_at=now())).rowcount)

    # -- API tokens ----------------------------------------------------------------------------
    def create_token(self, owner: str, name: str, role: str, days: int, created_by: str
                     ) -> tuple[str, dict]:
        user = self.user(owner)
        if user is None:
            raise IdentityError(404, f"no user `{owner}`", "owner")
        if user["disabled"]:
            raise IdentityError(409, f"user `{owner}` is disabled", "owner")
        if permissions.rank(role) > permissions.rank(user["role"]):
            raise IdentityError(422, f"a token's role cannot be above its owner's ({user['role']})",
                                "role")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id, stamp = uuid.uuid4().hex[:12], now()
        with self.engine.begin() as conn:
            conn.execute(api_tokens.insert().values(
                id=token_id, token_hash=digest(token), prefix=token[:VISIBLE], name=name, owner=owner,
                role=role, created_by=created_by, created_at=stamp,
                expires_at=stamp + timedelta(days=days)))
        return token, self.token(token_id)

    def token(self, token_id: str) -> dict | None:
        with self.engine.connect() as conn:
            return row_dict(conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).first())

    def tokens(self, owner: str | None = None) -> list[dict]:
        query = sa.select(api_tokens).order_by(api_tokens.c.created_at.desc())
        if owner is not None:
            query = query.where(api_tokens.c.owner == owner)
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(query)]

    def revoke_token(self, token_id: str) -> dict:
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(api_tokens.c.revoked_at).where(api_tokens.c.id == token_id)
                                 ).first()
            if found is None:
                raise IdentityError(404, f"no token `{token_id}`", "token_id")
            if found.revoked_at is None:
                conn.execute(api_tokens.update().where(api_tokens.c.id == token_id)
                             .values(revoked_at=now()))
        return self.token(token_id)

    def touch_token(self, token_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(api_tokens.update().where(api_tokens.c.id == token_id)
                         .values(last_used_at=now()))

    # -- resolving a bearer token ------------------------------------------------------------------
    def lookup(self, token: str) -> Identity | None:
        """The identity a session or API token stands for, or None (unknown, revoked, expired, or its
        user disabled)."""
        token_hash, stamp = digest(token), now()
        with self.engine.connect() as conn:
            if token.startswith(SESSION_PREFIX):
                row = conn.execute(
                    sa.select(sessions.c.expires_at, users.c.username, users.c.display_name,
                              users.c.role, users.c.kind)
                    .join(users, users.c.username == sessions.c.username)
                    .where(sessions.c.token_hash == token_hash, sessions.c.revoked_at.is_(None),
                           users.c.disabled.is_(False))).first()
                auth, credential, role = "session", token_hash, None
            elif token.startswith(TOKEN_PREFIX):
                row = conn.execute(
                    sa.select(api_tokens.c.id, api_tokens.c.expires_at, api_tokens.c.role.label("token_role"),
                              users.c.username, users.c.display_name, users.c.role, users.c.kind)
                    .join(users, users.c.username == api_tokens.c.owner)
                    .where(api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None),
                           users.c.disabled.is_(False))).first()
                auth = "token"
                credential, role = (row.id, row.token_role) if row else (None, None)
            else:
                return None
        if row is None:
            return None
        values = row_dict(row)
        if values["expires_at"] <= stamp:
            return None
        effective = permissions.lower(role, values["role"]) if role else values["role"]
        return Identity(values["username"], values["display_name"], effective, values["kind"], auth,
                        credential, values["expires_at"])
