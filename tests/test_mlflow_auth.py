"""The MLflow server's login, for real: `mlflow server --app-name basic-auth` after `python -m
ml.mlflow_auth`, on a free loopback port in a temp $OPCON_HOME, as `make run` starts it; and as the
compose service starts it (deploy/mlflow.sh: passwords from the environment, users in the local
PostgreSQL, the service account the API and workers use)."""

from __future__ import annotations

import os
import secrets
import signal
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from ml import mlflow_auth
from ml.config import REPO_ROOT
from tests.live import free_port, wait_until

pytestmark = pytest.mark.live
BIN = Path(sys.executable).parent
MODEL = "machine-failure-classifier"
ALIAS = "/api/2.0/mlflow/registered-models/alias"
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
LOGIN_VARIABLES = (mlflow_auth.ADMIN_PASSWORD_VARIABLE, mlflow_auth.VIEWER_PASSWORD_VARIABLE,
                   mlflow_auth.SERVICE_PASSWORD_VARIABLE, mlflow_auth.AUTH_DIR_VARIABLE,
                   mlflow_auth.DATABASE_VARIABLE, "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_TRACKING_URI",
                   "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")


def clean_env(**values: str) -> dict[str, str]:
    # MLflow's set_tracking_uri/set_registry_uri export what an earlier test in this process set
    inherited = (*LOGIN_VARIABLES, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **values}


def set_up(env: dict[str, str]) -> str:
    """`python -m ml.mlflow_auth` as `make run` and deploy/mlflow.sh run it; its output."""
    done = subprocess.run([sys.executable, "-m", "ml.mlflow_auth"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


class Server:
    """An MLflow server started by `args` in its own process group."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.args, self.env, self.log = args, env, log
        self.start()

    def start(self) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen([*self.args, "--host", "127.0.0.1", "--port",
                                             self.url.rsplit(":", 1)[1]],
                                            cwd=REPO_ROOT, env=self.env, stdout=output,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 120) -> None:
        def healthy() -> bool:
            assert self.process.poll() is None, f"mlflow server exited:\n{self.tail()}"
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200

        wait_until(healthy, timeout, "the mlflow server answers /health", details=self.tail)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def champion(self, auth) -> str:
        answer = requests.get(self.url + ALIAS, params={"name": MODEL, "alias": "champion"}, auth=auth,
                              timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["model_version"]["version"]

    def move_champion(self, version: str, auth=None) -> requests.Response:
        return requests.post(self.url + ALIAS, json={"name": MODEL, "alias": "champion", "version": version},
                             auth=auth, timeout=10)

    def get_model(self, auth=None) -> requests.Response:
        return requests.get(f"{self.url}/api/2.0/mlflow/registered-models/get", params={"name": MODEL},
                            auth=auth, timeout=10)


def register_two_versions(client) -> None:
    """The registry as the pipeline leaves it: two versions, the second one champion."""
    client.create_registered_model(MODEL)
    for _ in range(2):  # any source will do: nothing loads them here
        client.create_model_version(MODEL, source="s3://nowhere/model", run_id=None)
    client.set_registered_model_alias(MODEL, "champion", "2")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- as `make run` starts it ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local(module_state):
    from mlflow import MlflowClient

    home = module_state / "state"
    store = home / "mlflow" / "mlflow.db"
    store.parent.mkdir(parents=True)
    uri = f"sqlite:///{store}"
    # the registry before the set-up, as `make model` leaves it before `make run` sets up the login
    register_two_versions(MlflowClient(tracking_uri=uri, registry_uri=uri))
    env = clean_env(OPCON_HOME=str(home))
    output = set_up(env)
    auth = home / "mlflow" / "auth"
    server = Server([str(BIN / "mlflow"), "--env-file", str(auth / "server.env"), "server", "--app-name",
                     "basic-auth", "--backend-store-uri", uri, "--default-artifact-root",
                     str(home / "mlflow" / "artifacts"), "--workers", "1"], env, module_state / "mlflow.log")
    try:
        server.wait_healthy()
        server.home, server.output = home, output
        yield server
    finally:
        server.stop()


def login(home: Path, username: str) -> tuple[str, str]:
    return username, (home / "mlflow" / f"{username}_password").read_text().strip()


def test_set_up_prints_paths_only_and_keeps_every_secret_in_a_private_file(local):
    mlflow_dir = local.home / "mlflow"
    admin, viewer = login(local.home, "admin")[1], login(local.home, "viewer")[1]
    assert f"user `admin`, password in {mlflow_dir / 'admin_password'}\n" in local.output
    assert f"user `viewer` (read-only), password in {mlflow_dir / 'viewer_password'}\n" in local.output
    key = (mlflow_dir / "auth" / "server.env").read_text().split("MLFLOW_FLASK_SERVER_SECRET_KEY=")[1]
    for secret in (admin, viewer, key.strip().strip("'")):
        assert secret not in local.output
    assert admin != "password1234" and len(admin) >= 12 and len(viewer) >= 12 and admin != viewer
    assert mode(mlflow_dir) == mode(mlflow_dir / "auth") == 0o700
    for name in ("admin_password", "viewer_password", "mlflow.db", "auth/basic_auth.ini", "auth/server.env",
                 "auth/basic_auth.db"):
        assert mode(mlflow_dir / name) == 0o600, name
    config = (mlflow_dir / "auth" / "basic_auth.ini").read_text()
    assert "default_permission = READ" in config and admin not in config


def test_an_unauthenticated_request_cannot_move_the_champion(local):
    admin = login(local.home, "admin")
    refused = local.move_champion("1")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    assert local.champion(admin) == "2"
    assert local.get_model().status_code == 401  # nor read anything
    assert local.move_champion("1", auth=("admin", "password1234")).status_code == 401
    assert local.champion(admin) == "2"


def test_the_viewer_reads_the_registry_but_cannot_move_the_champion(local):
    viewer = login(local.home, "viewer")
    assert local.move_champion("1", auth=viewer).status_code == 403
    assert local.champion(login(local.home, "admin")) == "2"
    model = local.get_model(auth=viewer)
    assert model.status_code == 200
    assert {"alias": "champion", "version": "2"} in model.json()["registered_model"]["aliases"]
    assert local.champion(viewer) == "2"


def test_the_same_call_with_the_admin_login_moves_it(local):
    admin = login(local.home, "admin")
    assert local.move_champion("1", auth=admin).status_code == 200
    assert local.champion(admin) == "1"
    assert local.move_champion("2", auth=admin).status_code == 200
    assert local.champion(admin) == "2"


def test_a_second_set_up_keeps_the_passwords_and_the_secret_key(local):
    mlflow_dir = local.home / "mlflow"
    files = ("admin_password", "viewer_password", "auth/server.env", "auth/basic_auth.ini")
    before = {name: (mlflow_dir / name).read_text() for name in files}
    set_up(local.env)
    assert {name: (mlflow_dir / name).read_text() for name in files} == before
    assert all(mode(mlflow_dir / name) == 0o600 for name in files)
    assert local.get_model(auth=login(local.home, "viewer")).status_code == 200
    assert local.get_model(auth=login(local.home, "admin")).status_code == 200


def test_a_deleted_password_file_makes_a_new_password_at_the_next_start(local):
    old = login(local.home, "viewer")
    (local.home / "mlflow" / "viewer_password").unlink()
    local.stop()  # as Ctrl-C and a second `make run` do
    set_up(local.env)
    local.restart()
    new = login(local.home, "viewer")
    assert new[1] != old[1] and mode(local.home / "mlflow" / "viewer_password") == 0o600
    assert local.get_model(auth=old).status_code == 401
    assert local.get_model(auth=new).status_code == 200


# --- as the compose service `mlflow` starts it ----------------------------------------------------------

@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    root = tmp_path_factory.mktemp("compose")
    database = f"opcon_test_auth_{uuid.uuid4().hex[:12]}"  # missing: the set-up creates it
    passwords = {variable: secrets.token_urlsafe(24) for variable in (
        mlflow_auth.ADMIN_PASSWORD_VARIABLE, mlflow_auth.VIEWER_PASSWORD_VARIABLE,
        mlflow_auth.SERVICE_PASSWORD_VARIABLE)}
    env = clean_env(**passwords, OPCON_HOME=str(root / "unused"), **{
        mlflow_auth.AUTH_DIR_VARIABLE: str(root / "auth"),
        mlflow_auth.DATABASE_VARIABLE: f"{POSTGRES}/{database}"})
    server = Server(["sh", "deploy/mlflow.sh", "mlflow", "--env-file", str(root / "auth" / "server.env"),
                     "server", "--app-name", "basic-auth", "--backend-store-uri",
                     f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
                     "--workers", "1"], env, root / "mlflow.log")
    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    try:
        server.wait_healthy()
        server.passwords, server.root, server.database = passwords, root, database
        yield server
    finally:
        server.stop()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def test_compose_server_keeps_its_users_in_a_postgres_database_it_created(composed):
    with sa.create_engine(f"{POSTGRES}/{composed.database}").connect() as connection:
        users = dict(connection.execute(sa.text("SELECT username, is_admin FROM users")).all())
    assert users == {"admin": True, "viewer": False, "opcon": True}
    assert not (composed.root / "unused").exists(), "nothing written to $OPCON_HOME"
    assert mode(composed.root / "auth") == 0o700
    assert all(mode(composed.root / "auth" / name) == 0o600 for name in ("basic_auth.ini", "server.env"))


def test_the_service_account_drives_the_registry_through_the_mlflow_client(composed):
    script = ("import mlflow\n"  # as the API and workers do: credentials from MLFLOW_TRACKING_*
              f"client, name = mlflow.MlflowClient(), {MODEL!r}\n"
              "client.create_registered_model(name)\n"
              "for _ in range(2):\n"
              "    client.create_model_version(name, source='s3://nowhere/model', run_id=None)\n"
              "client.set_registered_model_alias(name, 'champion', '2')\n")
    env = {**composed.env, "MLFLOW_TRACKING_URI": composed.url, "MLFLOW_TRACKING_USERNAME": "opcon",
           "MLFLOW_TRACKING_PASSWORD": composed.passwords[mlflow_auth.SERVICE_PASSWORD_VARIABLE]}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    viewer = ("viewer", composed.passwords[mlflow_auth.VIEWER_PASSWORD_VARIABLE])
    assert composed.champion(viewer) == "2"
    assert composed.move_champion("1").status_code == 401
    assert composed.move_champion("1", auth=viewer).status_code == 403
    assert composed.champion(("admin", composed.passwords[mlflow_auth.ADMIN_PASSWORD_VARIABLE])) == "2"


def test_a_changed_password_in_the_env_file_applies_at_the_next_start(composed):
    old = composed.passwords[mlflow_auth.VIEWER_PASSWORD_VARIABLE]
    new = secrets.token_urlsafe(24)
    composed.env = {**composed.env, mlflow_auth.VIEWER_PASSWORD_VARIABLE: new}
    composed.restart()  # `docker compose up -d` after editing .env: deploy/mlflow.sh again
    assert composed.get_model(auth=("viewer", old)).status_code == 401
    assert composed.get_model(auth=("viewer", new)).status_code == 200


def test_a_short_password_is_refused_with_its_variable_named(composed):
    done = subprocess.run([sys.executable, "-m", "ml.mlflow_auth"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**composed.env, mlflow_auth.VIEWER_PASSWORD_VARIABLE: "short"})
    assert done.returncode != 0
    assert f"{mlflow_auth.VIEWER_PASSWORD_VARIABLE}: MLflow needs at least 12 characters" in done.stderr
