"""`python -m control_api.identity.bootstrap`: the first admin account, with no manual step.

When no account exists, creates `admin` with the password in OPCON_ADMIN_PASSWORD, or a random one,
and writes that password to $OPCON_HOME/admin_password (mode 0600). Prints the file's path, never
the password. Does nothing once any account exists.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from pydantic import SecretStr

from control_api import db
from control_api.identity.passwords import MIN_LENGTH
from control_api.identity.store import IdentityError, IdentityStore
from control_api.settings import from_env
from ml.config import EnvSettings, SettingsError

ADMIN = "admin"


class BootstrapSettings(EnvSettings):
    admin_password: SecretStr | None = None  # OPCON_ADMIN_PASSWORD: the first admin's password


def password_path(state_dir: Path) -> Path:
    return state_dir / "admin_password"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def ensure_admin(store: IdentityStore, state_dir: Path, password: str | None = None) -> bool:
    """True when the account was created now."""
    if store.count_users():
        return False
    password = password or secrets.token_urlsafe(18)
    if len(password) < MIN_LENGTH:
        raise ValueError(f"OPCON_ADMIN_PASSWORD must have at least {MIN_LENGTH} characters")
    try:
        store.create_user(ADMIN, "admin", display_name="Administrator", password=password,
                          created_by="bootstrap")
    except IdentityError:  # another process created it meanwhile
        return False
    _write_private(password_path(state_dir), password)
    return True


def main() -> int:
    try:
        settings, given = from_env(), BootstrapSettings.load()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    store = IdentityStore(db.connect(settings.database_url))
    password = given.admin_password.get_secret_value() if given.admin_password else None
    try:
        created = ensure_admin(store, settings.state_dir, password)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    path = password_path(settings.state_dir)
    if created:
        print(f"console admin   user `{ADMIN}`, password in {path} (mode 0600)")
    elif path.exists():
        print(f"console admin   user `{ADMIN}`, first password in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
