"""The one permission table: four roles, each with everything the one before it has.

Routes name the permission they need (control_api.identity.routing); nothing else decides access.
"""

from __future__ import annotations

from typing import Literal

ROLES = ("viewer", "operator", "engineer", "admin")
Role = Literal["viewer", "operator", "engineer", "admin"]

# what each role adds to the one before it
ADDS: dict[str, tuple[str, ...]] = {
    "viewer": ("read",),  # every dashboard and read endpoint
    "operator": ("predict", "feedback:write"),
    "engineer": ("jobs:start", "jobs:cancel", "datasets:upload"),
    "admin": ("models:promote", "models:rollback", "models:approve", "users:manage", "tokens:manage",
              "audit:read"),
}

PUBLIC = "public"  # no credentials needed (signing in)
SIGNED_IN = "signed-in"  # any valid credentials (who am I, signing out)


def _cumulative() -> dict[str, frozenset[str]]:
    granted, table = set(), {}
    for role in ROLES:
        granted |= set(ADDS[role])
        table[role] = frozenset(granted)
    return table


GRANTS = _cumulative()
ALL = GRANTS["admin"]


def permissions(role: str) -> frozenset[str]:
    return GRANTS.get(role, frozenset())


def allows(role: str, permission: str) -> bool:
    return permission == SIGNED_IN or permission in permissions(role)


def rank(role: str) -> int:
    return ROLES.index(role)


def lower(first: str, second: str) -> str:
    """The lesser of two roles (a token never acts above its owner)."""
    return first if rank(first) <= rank(second) else second
