"""The MLflow server's own login (its `basic-auth` app), set up before the server starts.

`python -m ml.mlflow_auth` (run by `make run`, and by deploy/mlflow.sh in docker compose) writes

    <auth dir>/basic_auth.ini   MLflow's auth config (MLFLOW_AUTH_CONFIG_PATH): default permission READ,
                                the admin's name, the user database
    <auth dir>/server.env       for `mlflow --env-file <it> server --app-name basic-auth`: the config's
                                path and the Flask secret key (generated once)

and makes sure these users exist with these passwords in the user database:

    user     can                              password
    admin    everything (people)              MLFLOW_AUTH_ADMIN_PASSWORD, else <home>/admin_password
    viewer   read, change nothing (people)    OPCON_MLFLOW_VIEWER_PASSWORD, else <home>/viewer_password
    opcon    everything (the API, workers)    OPCON_MLFLOW_SERVICE_PASSWORD; no such user without it

A password file is generated (secrets) the first time and kept; every run sets the users' passwords
to the current ones, so a second run changes nothing and deleting a file makes a new password.
Locally <home> is $OPCON_HOME/mlflow (mode 0700, its SQLite files 0600: the API and the workers
use the tracking store directly) and <auth dir> is <home>/auth with the user database in SQLite;
OPCON_MLFLOW_AUTH_DIR and OPCON_MLFLOW_AUTH_DATABASE_URI (PostgreSQL) place them elsewhere.
Only paths are printed, never a password.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import warnings
from pathlib import Path

from pydantic import Field, SecretStr

from ml import config

ADMIN, VIEWER, SERVICE = "admin", "viewer", "opcon"
ADMIN_PASSWORD_VARIABLE = "MLFLOW_AUTH_ADMIN_PASSWORD"  # MLflow's own name for it
VIEWER_PASSWORD_VARIABLE = "OPCON_MLFLOW_VIEWER_PASSWORD"
SERVICE_PASSWORD_VARIABLE = "OPCON_MLFLOW_SERVICE_PASSWORD"
AUTH_DIR_VARIABLE = "OPCON_MLFLOW_AUTH_DIR"
DATABASE_VARIABLE = "OPCON_MLFLOW_AUTH_DATABASE_URI"
SECRET_KEY_VARIABLE = "MLFLOW_FLASK_SERVER_SECRET_KEY"
MIN_PASSWORD_LENGTH = 12  # MLflow refuses shorter ones


@dataclasses.dataclass(frozen=True)
class Layout:
    home: Path  # the password files
    auth: Path  # config, env file, and the user database when it is SQLite
    database_uri: str

    @property
    def config_file(self) -> Path:
        return self.auth / "basic_auth.ini"

    @property
    def env_file(self) -> Path:
        return self.auth / "server.env"

    def password_file(self, username: str) -> Path:
        return self.home / f"{username}_password"


class AuthSettings(config.EnvSettings):
    """The login's settings, from the MLflow server's environment."""

    auth_dir: Path | None = Field(None, validation_alias=AUTH_DIR_VARIABLE)
    database_uri: str | None = Field(None, validation_alias=DATABASE_VARIABLE)
    admin_password: SecretStr | None = Field(None, validation_alias=ADMIN_PASSWORD_VARIABLE)
    viewer_password: SecretStr | None = Field(None, validation_alias=VIEWER_PASSWORD_VARIABLE)
    service_password: SecretStr | None = Field(None, validation_alias=SERVICE_PASSWORD_VARIABLE)


def layout(settings: AuthSettings | None = None) -> Layout:
    settings = settings or AuthSettings.load()
    if settings.auth_dir:
        home = auth_dir = settings.auth_dir.expanduser().resolve()
    else:
        home = config.state_dir() / "mlflow"
        auth_dir = home / "auth"
    database_uri = settings.database_uri or f"sqlite:///{auth_dir / 'basic_auth.db'}"
    return Layout(home, auth_dir, database_uri)


# --- private files --------------------------------------------------------------------------------

def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _temporary(path: Path, text: str) -> Path:
    """A new file beside `path`, mode 0600 from its creation, holding `text`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return temporary


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step; the file is 0600 and never held anything else."""
    os.replace(_temporary(path, text), path)


def generated_secret(path: Path) -> str:
    """The secret in `path`; a new one, written 0600, when the file is missing or too short."""
    if path.exists():
        path.chmod(0o600)
        if len(value := path.read_text().strip()) >= MIN_PASSWORD_LENGTH:
            return value
        path.unlink()
    temporary = _temporary(path, secrets.token_urlsafe(24) + "\n")
    try:
        os.link(temporary, path)  # fails when a concurrent set-up published one first: use that
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()


def tighten(directory: Path) -> None:
    """`directory` 0700 and its SQLite files 0600 (they are created with the umask's mode)."""
    private_dir(directory)
    for path in directory.glob("*.db*"):
        if path.is_file():
            path.chmod(0o600)


# --- MLflow's config ------------------------------------------------------------------------------

def config_text(database_uri: str) -> str:
    return "\n".join([
        "# MLflow's basic-auth config, written by `python -m ml.mlflow_auth` at every start",
        "[mlflow]",
        "default_permission = READ",
        f"database_uri = {database_uri.replace('%', '%%')}",
        f"admin_username = {ADMIN}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        # a password check (scrypt) costs ~0.1 s of CPU and MLflow makes several per request: each
        # server process keeps a successful login for a minute; ours change at the next start anyway
        "auth_cache_ttl_seconds = 60",
        "",
    ])


def env_text(where: Layout) -> str:
    """The env file of `mlflow --env-file`; its Flask secret key is kept from the previous one."""
    from dotenv import dotenv_values

    previous = dotenv_values(where.env_file) if where.env_file.exists() else {}
    key = previous.get(SECRET_KEY_VARIABLE) or secrets.token_hex(32)
    values = {"MLFLOW_AUTH_CONFIG_PATH": str(where.config_file), SECRET_KEY_VARIABLE: key}
    for name, value in values.items():
        if "'" in value:
            raise SystemExit(f"{name}: a path without a single quote, please ({value})")
    return "".join(f"{name}='{value}'\n" for name, value in values.items())


def ensure_database(uri: str) -> None:
    """Create the PostgreSQL database of `uri` when missing (volumes made before it was in initdb)."""
    import sqlalchemy as sa

    url = sa.engine.make_url(uri)
    if not url.drivername.startswith("postgresql"):
        return
    engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT 1 FROM pg_database WHERE datname = :name")
            if connection.execute(query, {"name": url.database}).scalar() is None:
                quoted = url.database.replace('"', '""')
                connection.execute(sa.text(f'CREATE DATABASE "{quoted}"'))
    finally:
        engine.dispose()


# --- users ----------------------------------------------------------------------------------------

def ensure_user(store, username: str, password: str, is_admin: bool) -> None:
    """`username` exists with `password` and `is_admin`, whatever it was before."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    if not store.has_user(username, use_primary=True):
        try:
            store.create_user(username, password, is_admin=is_admin)
            return
        except MlflowException as error:  # a concurrent set-up created it
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
    if not store.authenticate_user(username, password, use_primary=True):
        store.update_user(username, password=password)
    if store.get_user(username).is_admin != is_admin:
        store.update_user(username, is_admin=is_admin)


def _login_password(where: Layout, username: str, variable: str,
                    given: SecretStr | None) -> tuple[str, str]:
    """(password, where it comes from): the environment variable when set, else the generated file."""
    if given is not None:
        if len(value := given.get_secret_value()) < MIN_PASSWORD_LENGTH:
            raise SystemExit(f"{variable}: MLflow needs at least {MIN_PASSWORD_LENGTH} characters")
        return value, f"${variable}"
    path = where.password_file(username)
    return generated_secret(path), str(path)


def open_store(database_uri: str):
    config.quiet_third_parties()
    with warnings.catch_warnings():  # MLflow's server modules warn about Starlette's at import
        warnings.simplefilter("ignore")
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    if database_uri.startswith("sqlite:///"):
        database = Path(database_uri.removeprefix("sqlite:///"))
        if not database.exists():  # private from the start, not after SQLite made it 0644
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    else:
        ensure_database(database_uri)
    store = SqlAlchemyStore()
    store.init_db(database_uri)
    return store


def set_up(where: Layout | None = None, settings: AuthSettings | None = None) -> dict[str, str]:
    """Config, env file and users of the MLflow server; {username: where its password is}."""
    settings = settings or AuthSettings.load()
    where = where or layout(settings)
    private_dir(where.home)
    private_dir(where.auth)
    logins = {ADMIN: (*_login_password(where, ADMIN, ADMIN_PASSWORD_VARIABLE,
                                       settings.admin_password), True),
              VIEWER: (*_login_password(where, VIEWER, VIEWER_PASSWORD_VARIABLE,
                                        settings.viewer_password), False)}
    if settings.service_password is not None:
        logins[SERVICE] = (*_login_password(where, SERVICE, SERVICE_PASSWORD_VARIABLE,
                                            settings.service_password), True)
    write_private(where.config_file, config_text(where.database_uri))
    write_private(where.env_file, env_text(where))
    store = open_store(where.database_uri)
    try:
        for username, (secret, _, is_admin) in logins.items():
            ensure_user(store, username, secret, is_admin)
    finally:
        store.engine.dispose()
    tighten(where.auth)
    if where.home != where.auth:
        tighten(where.home)  # $OPCON_HOME/mlflow: the tracking store the API uses directly
    return {username: source for username, (_, source, _) in logins.items()}


def main() -> None:
    try:
        settings = AuthSettings.load()
    except config.SettingsError as error:
        raise SystemExit(str(error)) from None
    where = layout(settings)
    sources = set_up(where, settings)
    print("MLflow admin   ", f"user `{ADMIN}`, password in {sources[ADMIN]}")
    print("MLflow viewer  ", f"user `{VIEWER}` (read-only), password in {sources[VIEWER]}")
    if SERVICE in sources:
        print("MLflow service ", f"user `{SERVICE}` (API and workers), password in {sources[SERVICE]}")
    print("MLflow config  ", where.config_file, f"(mlflow --env-file {where.env_file})")


if __name__ == "__main__":
    main()
