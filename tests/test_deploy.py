"""The docker compose deployment, checked statically (Docker does not run on these machines):
services, images, health checks, restart policies, ports, volumes and dependencies; every
environment variable the code reads set for the services that run that code; no secrets in the
files; the Dockerfile; Prometheus targets, Grafana provisioning and the CI workflow against them."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from ml import mlflow_auth
from ml.config import REPO_ROOT
from tests.helpers import EXPORTED_METRICS, metric_names

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
GRAFANA = REPO_ROOT / "deploy" / "grafana"

# the port each service listens on inside its container
LISTENS_ON = {"api": 8000, "ui": 8501, "mlflow": 5000, "postgres": 5432, "redis": 6379,
              "prometheus": 9090, "alertmanager": 9093, "grafana": 3000}
PUBLISHED = {"api", "ui", "mlflow", "prometheus", "alertmanager", "grafana"}
ONE_SHOT = {"init"}

SCANNED_PACKAGES = ("control_api", "ml", "monitoring", "ui")
# the packages the processes of each service import
SERVICE_CODE = {"init": {"ml"}, "api": {"control_api", "ml", "monitoring"},
                "worker": {"control_api", "ml", "monitoring"}, "ui": {"ui"}}
# files that only some services run, whatever their package
ONLY_IN = {
    "control_api/gunicorn_conf.py": {"api"},  # gunicorn's settings file
    "control_api/metrics.py": {"api"},  # /metrics, registered by create_app
    "ml/mlflow_auth.py": {"mlflow"},  # the MLflow server's login, set up by deploy/mlflow.sh
    "control_api/identity/bootstrap.py": {"init"},  # the first admin, made by deploy/bootstrap.sh
}
OPTIONAL = {
    "API_ACCESS_LOG": "gunicorn's access log, off unless set",
    "OPCON_DRIFT_INTERVAL_SECONDS": "a test shortcut overriding OPCON_DRIFT_INTERVAL_MINUTES",
    "OPCON_GIT_COMMIT": "set in the image by the Dockerfile's build argument (no .git inside)",
    "OPCON_ACTOR": "set by the job worker for the pipeline processes it starts (who a promotion is for)",
    "OPCON_JOB_ID": "set by the job worker for every process it starts (whose job the process is)",
    "OPCON_JOB_LEASE": "set by the job worker for the stage process it starts (the lease it writes under)",
}
NOT_NEEDED: dict[tuple[str, str], str] = {}  # (service, variable) read but not needed there: why
SECRET_NAME = re.compile(r"PASSWORD|TOKEN(?!_ROLE)|SECRET|(^|_)KEY$")
REFERENCE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --- reading the files -------------------------------------------------------------------------------

def env_example() -> dict[str, str]:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} with `values` as the .env file."""
    def replace(match: re.Match) -> str:
        value = values.get(match["name"], "")
        if not value and match["op"] and match["op"].endswith("-"):
            return match["arg"]
        assert value or not (match["op"] or "").endswith("?"), f"{match['name']} is required"
        return value
    return REFERENCE.sub(replace, text.replace("$$", "\0")).replace("\0", "$")


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def env_files(service: dict) -> list[str]:
    files = service.get("env_file") or []
    return [files] if isinstance(files, str) else [f if isinstance(f, str) else f["path"] for f in files]


def variables_set(service: dict) -> set[str]:
    from_files = set(env_example()) if ".env" in env_files(service) else set()
    return set(environment(service)) | from_files


def mounts(service: dict) -> list[tuple[str, str]]:
    pairs = []
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2] if isinstance(volume, str) else (volume["source"],
                                                                                volume["target"])
        pairs.append((source, target))
    return pairs


def command(service: dict) -> list[str]:
    value = service.get("command") or []
    return value.split() if isinstance(value, str) else [str(part) for part in value]


def strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (str(key), *strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [str(node)]


# --- the environment variables the code reads ------------------------------------------------------

def _is_environ(node) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")


def _read_name(node) -> ast.expr | None:
    """The variable-name argument of os.environ[...], os.environ.get(...), os.getenv(...), `in os.environ`."""
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
        return node.slice
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        if node.func.attr == "get" and _is_environ(node.func.value):
            return node.args[0]
        if (node.func.attr == "getenv" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "os"):
            return node.args[0]
    if (isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn)
            and _is_environ(node.comparators[0])):
        return node.left
    return None


def _identifier(node) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


SETTINGS_BASES = {"BaseSettings", "EnvSettings"}  # pydantic-settings', and ml.config's on it


def settings_classes(trees: dict[str, ast.Module]) -> dict[str, list[str]]:
    """{file: [the pydantic-settings classes it defines]}, subclasses in other files included."""
    known, found, grown = set(SETTINGS_BASES), {}, True
    while grown:
        grown = False
        for path, tree in trees.items():
            for node in tree.body:
                if (isinstance(node, ast.ClassDef) and node.name not in known
                        and any(_identifier(base) in known for base in node.bases)):
                    known.add(node.name)
                    found.setdefault(path, []).append(node.name)
                    grown = True
    return found


def settings_variables(cls) -> set[str]:
    """The variables a settings class reads, from its fields: ml.config.EnvSettings says which
    (`variables()`); otherwise pydantic-settings' rule, the validation alias or prefix + name."""
    if hasattr(cls, "variables"):
        return set(cls.variables().values())
    prefix = cls.model_config.get("env_prefix", "")
    return {f.validation_alias if isinstance(f.validation_alias, str) else f"{prefix}{name}".upper()
            for name, f in cls.model_fields.items()}


def _module(path: str):
    """The module of `path`, imported (its root on sys.path)."""
    import importlib

    return importlib.import_module(path.removesuffix(".py").replace("/", "."))


def env_reads(root: Path, packages=SCANNED_PACKAGES) -> tuple[dict[str, set[str]], list[str]]:
    """({variable: {file}}, [reads whose name is not a constant]) for the Python files of `packages`.

    Follows module-level string constants, helpers that read the variable named by one of
    their parameters (`def _env_float(name, default): ... os.environ.get(name) ...`), and the
    fields of pydantic-settings classes (a class reads its variables in the file defining it)."""
    trees = {path.relative_to(root).as_posix(): ast.parse(path.read_text(), str(path))
             for package in packages for path in sorted((root / package).rglob("*.py"))}
    constants, helpers, inside_helpers = {}, {}, set()
    for tree in trees.values():
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)):
                constants[node.targets[0].id] = node.value.value
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            parameters = [argument.arg for argument in function.args.args]
            for node in ast.walk(function):
                name = _read_name(node)
                if isinstance(name, ast.Name) and name.id in parameters:
                    helpers[function.name] = (parameters.index(name.id), name.id)
                    inside_helpers.add(id(node))

    def resolve(node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return constants.get(_identifier(node))

    reads: dict[str, set[str]] = {}
    unresolved: list[str] = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if id(node) in inside_helpers:
                continue  # counted at the helper's calls
            argument = _read_name(node)
            if argument is None and isinstance(node, ast.Call) and _identifier(node.func) in helpers:
                position, keyword = helpers[_identifier(node.func)]
                argument = (node.args[position] if len(node.args) > position else
                            next((k.value for k in node.keywords if k.arg == keyword), None))
            if argument is None:
                continue
            if (name := resolve(argument)) is None:
                unresolved.append(f"{path}:{node.lineno}")
            else:
                reads.setdefault(name, set()).add(path)
    for path, names in settings_classes(trees).items():
        module = _module(path)
        for name in names:
            for variable in settings_variables(getattr(module, name)):
                reads.setdefault(variable, set()).add(path)
    return reads, unresolved


def test_env_reads_follows_constants_helpers_and_settings_classes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # the settings classes are imported to read their fields
    package = tmp_path / "scanned_pkg"
    package.mkdir()
    (package / "a.py").write_text(
        "import os\nNAME = 'FROM_CONSTANT'\n"
        "def number(name, default):\n    return float(os.environ.get(name) or default)\n"
        "x = os.environ['DIRECT'], os.getenv('GETENV'), 'IN_CHECK' in os.environ, os.environ.get(NAME)\n"
        "y = number('VIA_HELPER', 1), number(default=2, name='VIA_KEYWORD')\n"
        "os.environ['WRITTEN'] = '1'\nos.environ.setdefault('DEFAULTED', '1')\n"
        "z = os.environ.get(compute())\n")
    (package / "settings.py").write_text(
        "from typing import ClassVar\n"
        "from pydantic import Field\n"
        "from pydantic_settings import BaseSettings, SettingsConfigDict\n"
        "from ml.config import EnvSettings\n"
        "class Plain(BaseSettings):\n"
        "    model_config = SettingsConfigDict(env_prefix='plain_')\n"
        "    size: int = 1\n"
        "    url: str = Field('', validation_alias='ALIASED_URL')\n"
        "class Ours(EnvSettings):\n"
        "    not_from_env: ClassVar[frozenset[str]] = frozenset({'testing'})\n"
        "    limit: int = 1\n"
        "    testing: bool = False\n")
    (package / "more.py").write_text(
        "from pydantic import Field\n"
        "from scanned_pkg.settings import Ours\n"
        "class Derived(Ours):\n"
        "    home: str = Field('', validation_alias='SOME_HOME')\n")
    reads, unresolved = env_reads(tmp_path, ("scanned_pkg",))
    assert set(reads) == {"FROM_CONSTANT", "DIRECT", "GETENV", "IN_CHECK", "VIA_HELPER", "VIA_KEYWORD",
                          "PLAIN_SIZE", "ALIASED_URL", "OPCON_LIMIT", "SOME_HOME"}
    assert reads["DIRECT"] == {"scanned_pkg/a.py"}
    # a subclass reads its parent's variables too; a field not from the environment reads none
    assert reads["OPCON_LIMIT"] == {"scanned_pkg/settings.py", "scanned_pkg/more.py"}
    assert unresolved == ["scanned_pkg/a.py:9"]


def test_every_environment_variable_the_code_reads_is_set_for_the_services_running_it():
    reads, unresolved = env_reads(REPO_ROOT)
    assert unresolved == [], "environment reads whose variable name is not a constant"
    assert {"OPCON_HOME", "OPCON_API_TOKEN", "API_PORT"} <= set(reads)  # the scan sees the code
    missing = []
    for variable, files in sorted(reads.items()):
        if variable in OPTIONAL:
            continue
        for path in sorted(files):
            runners = ONLY_IN.get(path) or {name for name, packages in SERVICE_CODE.items()
                                            if path.split("/")[0] in packages}
            for service in sorted(runners):
                if (service, variable) not in NOT_NEEDED and variable not in variables_set(
                        SERVICES[service]):
                    missing.append(f"{variable} (read in {path}) is not set for `{service}`")
    assert missing == []


# --- services ----------------------------------------------------------------------------------------

def test_the_stack_has_every_service():
    assert set(SERVICES) == {"init", "api", "worker", "ui", "mlflow", "postgres", "redis", "prometheus",
                             "alertmanager", "grafana"}


def test_the_console_gets_no_server_credentials():
    """People sign in to the console; it must never call the API as the service."""
    variables = set(environment(SERVICES["ui"]))
    assert not {v for v in variables if SECRET_NAME.search(v)}, variables
    assert env_files(SERVICES["ui"]) == [], "the console would get every secret of .env"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_a_pinned_image_or_our_build(name):
    service = SERVICES[name]
    if "build" in service:
        assert service["build"] in (".", {"context": "."}), "our services build the Dockerfile"
        return
    image = service["image"]
    repository, _, tag = image.rpartition(":")
    assert repository and re.search(r"\d", tag) and "latest" not in tag, f"{image}: pin a version tag"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_a_health_check_and_a_restart_policy(name):
    service = SERVICES[name]
    if name in ONE_SHOT:
        assert service["restart"] == "no"
        dependents = [other for other in SERVICES.values() if name in (other.get("depends_on") or {})]
        assert dependents and all(other["depends_on"][name]["condition"] == "service_completed_successfully"
                                  for other in dependents)
        return
    assert service["restart"] in ("unless-stopped", "always")
    check = service["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL") and len(check) > 1 and not service["healthcheck"].get("disable")
    if check[0] == "CMD" and any("://127.0.0.1:" in part for part in check):
        port = int(re.search(r"://127\.0\.0\.1:(\d+)", " ".join(check)).group(1))
        assert port == LISTENS_ON[name], "the health check asks the port the service listens on"


def test_dependencies_exist_and_wait_for_health():
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES and dependency != name, f"{name} -> {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits for {dependency}'s health"
    assert set(SERVICES["api"]["depends_on"]) == {"init", "postgres", "redis", "mlflow"}
    assert SERVICES["worker"]["depends_on"] == SERVICES["api"]["depends_on"]


def test_volumes_are_declared_used_and_shared_where_the_code_needs_it():
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for source, _ in mounts(service):
            if source.startswith(("./", "/")):
                assert (REPO_ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared
    # the prediction log, job state and DVC project are written by the API and read by the workers
    state = {target: source for source, target in mounts(SERVICES["api"])}
    assert state[environment(SERVICES["api"])["OPCON_HOME"]] == "opcon-state"
    for name in ("worker", "init"):
        assert mounts(SERVICES[name]) == mounts(SERVICES["api"])
        own = {"OPCON_ADMIN_PASSWORD"} if name == "init" else set()  # the first admin is made there
        assert {k: v for k, v in environment(SERVICES[name]).items() if k not in own}.items() <= \
            environment(SERVICES["api"]).items()
    project = Path(environment(SERVICES["api"])["OPCON_PROJECT_DIR"])
    assert any(project.is_relative_to(target) for _, target in mounts(SERVICES["api"]))


def test_published_ports_are_the_ones_services_listen_on():
    values = env_example()
    published = {}
    for name, service in SERVICES.items():
        for port in service.get("ports") or []:
            *address, host, container = interpolate(str(port), values).split(":")
            assert address == ["127.0.0.1"], f"{name}: by default only this host reaches {port}"
            published[name] = (int(host), int(container))
    assert set(published) == PUBLISHED  # PostgreSQL and Redis stay inside the compose network
    assert all(published[name] == (LISTENS_ON[name],) * 2 for name in PUBLISHED)
    assert environment(SERVICES["api"])["API_PORT"] == str(LISTENS_ON["api"])
    ui, mlflow = command(SERVICES["ui"]), command(SERVICES["mlflow"])
    assert ui[ui.index("--server.port") + 1] == str(LISTENS_ON["ui"])
    assert mlflow[mlflow.index("--port") + 1] == str(LISTENS_ON["mlflow"])


def test_services_run_the_documented_commands():
    assert command(SERVICES["api"]) == ["gunicorn", "-c", "control_api/gunicorn_conf.py",
                                        "control_api:create_app()"]
    assert command(SERVICES["worker"])[:5] == ["python", "-m", "control_api.jobs.worker", "--workers",
                                               "${JOB_WORKERS:-2}"]
    ui = command(SERVICES["ui"])
    assert ui[:3] == ["streamlit", "run", "ui/streamlit_app.py"]
    assert {"--server.address": "0.0.0.0", "--server.headless": "true"}.items() <= dict(
        zip(ui[3::2], ui[4::2], strict=True)).items()
    for path in ("control_api/gunicorn_conf.py", "ui/streamlit_app.py", "deploy/bootstrap.sh"):
        assert (REPO_ROOT / path).is_file(), path
    mlflow = SERVICES["mlflow"]
    assert mlflow["build"] == SERVICES["api"]["build"], "MLflow runs from our image (psycopg2 in it)"
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which is not installed
    assert environment(mlflow)["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert re.search(r"^psycopg2-binary==", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    assert environment(SERVICES["api"])["MLFLOW_TRACKING_URI"] == f"http://mlflow:{LISTENS_ON['mlflow']}"
    assert environment(SERVICES["api"])["REDIS_URL"].startswith(f"redis://redis:{LISTENS_ON['redis']}/")


def imports_of(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def test_files_run_by_some_services_only_are_imported_by_no_other_code():
    for path in ONLY_IN:
        assert (REPO_ROOT / path).is_file(), path
    module = "ml.mlflow_auth"
    importers = [path.relative_to(REPO_ROOT).as_posix() for package in SCANNED_PACKAGES
                 for path in sorted((REPO_ROOT / package).rglob("*.py"))
                 if module in imports_of(ast.parse(path.read_text()))]
    assert importers == [], f"{module} runs in the `mlflow` service only"


# --- the MLflow server's login -------------------------------------------------------------------------

def reference(value: str) -> re.Match:
    match = REFERENCE.fullmatch(value)
    assert match and match["op"] == ":?", f"{value}: a required ${{VAR:?...}} from .env"
    return match


def test_mlflow_server_runs_its_basic_auth_app_after_the_login_set_up():
    mlflow = SERVICES["mlflow"]
    env = environment(mlflow)
    auth_dir = Path(env[mlflow_auth.AUTH_DIR_VARIABLE])
    where = mlflow_auth.Layout(auth_dir, auth_dir, env[mlflow_auth.DATABASE_VARIABLE])
    assert command(mlflow)[:6] == ["mlflow", "--env-file", str(where.env_file), "server", "--app-name",
                                   "basic-auth"]
    assert mlflow["entrypoint"] == ["sh", "deploy/mlflow.sh"]
    script = (REPO_ROOT / "deploy" / "mlflow.sh").read_text()
    assert re.search(r"^set -eu$(.|\n)*^python -m ml\.mlflow_auth$\n^exec \"\$@\"$", script, re.M)
    # the config holds the database password: never where the artifact proxy serves files from
    served = Path(command(mlflow)[command(mlflow).index("--artifacts-destination") + 1])
    assert not auth_dir.is_relative_to(served) and not served.is_relative_to(auth_dir)
    assert auth_dir not in {Path(target) for _, target in mounts(mlflow)}, "written at every start"
    # the users live in PostgreSQL, in a database of their own, which initdb creates
    database = where.database_uri
    assert database.startswith("postgresql+psycopg2://") and database.endswith("@postgres:5432/mlflow_auth")
    initdb = "".join(path.read_text() for path in (REPO_ROOT / "deploy/postgres/initdb").glob("*.sql"))
    assert re.search(r"^CREATE DATABASE mlflow_auth;$", initdb, re.M)


def test_mlflow_logins_come_from_distinct_required_secrets():
    env = environment(SERVICES["mlflow"])
    secrets = [reference(env[variable])["name"] for variable in (
        mlflow_auth.ADMIN_PASSWORD_VARIABLE, mlflow_auth.VIEWER_PASSWORD_VARIABLE,
        mlflow_auth.SERVICE_PASSWORD_VARIABLE)]
    assert len(set(secrets)) == 3 and all(SECRET_NAME.search(name) for name in secrets)
    assert "env_file" not in SERVICES["mlflow"], "the MLflow server gets its own secrets only"


@pytest.mark.parametrize("name", sorted(SERVICE_CODE.keys() - {"ui"}))
def test_services_reach_mlflow_with_the_service_account(name):
    env, mlflow = environment(SERVICES[name]), environment(SERVICES["mlflow"])
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{LISTENS_ON['mlflow']}"
    assert env["MLFLOW_TRACKING_USERNAME"] == mlflow_auth.SERVICE
    assert (reference(env["MLFLOW_TRACKING_PASSWORD"])["name"]
            == reference(mlflow[mlflow_auth.SERVICE_PASSWORD_VARIABLE])["name"])


def make_recipe(target: str) -> list[str]:
    """The recipe lines of `target` in the Makefile, continuation lines joined."""
    text = (REPO_ROOT / "Makefile").read_text().replace("\\\n", " ")
    block = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M)
    return [line.strip() for line in block[1].splitlines()]


def test_make_run_sets_up_the_mlflow_login_before_starting_the_server():
    text = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^MLFLOW_AUTH := \$\(OPCON_HOME\)/mlflow/auth$", text, re.M)
    recipe = make_recipe("run")
    token = next(i for i, line in enumerate(recipe) if "token_path" in line)
    assert recipe[token + 1] == "@$(PY) -m control_api.identity.bootstrap"
    assert recipe[token + 2] == "@$(PY) -m ml.mlflow_auth"
    servers = recipe[token + 3]
    server = re.search(r"\$\(VENV\)/bin/mlflow (.*?) &", servers)[1].split()
    assert server[:5] == ['--env-file', '"$(MLFLOW_AUTH)/server.env"', "server", "--app-name", "basic-auth"]
    where = mlflow_auth.Layout(Path("H/mlflow"), Path("H/mlflow/auth"), "")
    assert where.env_file.as_posix() == "H/mlflow/auth/server.env"
    assert f"password in $(OPCON_HOME)/mlflow/{where.password_file('viewer').name}" in servers


# --- secrets and the env file ------------------------------------------------------------------------

def test_no_secret_values_in_the_compose_file():
    for name, service in SERVICES.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                match = REFERENCE.fullmatch(value)
                assert match and match["op"] in (None, ":?"), f"{name}.{key}: only a ${{VAR}} reference"
    for text in strings(COMPOSE):
        references = list(REFERENCE.finditer(text))
        tokens = REFERENCE.sub(lambda _: "\0", text)  # one character per ${...}
        for url in re.finditer(r"://[^/\s:@]+:([^@\s]+)@", tokens):
            assert url[1] == "\0", f"a password in {text}"
            reference = references[tokens[:url.start(1)].count("\0")]
            assert reference["op"] in (None, ":?"), f"a default password in {text}"
    assert {source for service in SERVICES.values() for source in env_files(service)} == {".env"}


def test_env_example_documents_every_variable_compose_uses():
    values = env_example()
    references = [match for text in strings(COMPOSE) for match in REFERENCE.finditer(text)]
    assert {match["name"] for match in references} <= set(values)
    reads, _ = env_reads(REPO_ROOT)  # settings classes' fields included
    unused = set(values) - {match["name"] for match in references} - set(reads)
    assert unused == set(), "documented in .env.example, but neither compose nor the code uses them"
    for match in references:
        if match["op"] == ":-":
            assert values[match["name"]] == match["arg"], f"{match['name']}: two different defaults"
        if SECRET_NAME.search(match["name"]):
            assert values[match["name"]] == "", f"{match['name']}: no secret in the example"


# --- Dockerfile ---------------------------------------------------------------------------------------

def test_dockerfile_is_pinned_slim_non_root_and_installs_the_pins():
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    assert "latest" not in DOCKERFILE
    user = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK\s", DOCKERFILE, re.M)
    assert re.search(r"^RUN pip install -r requirements\.txt$", DOCKERFILE, re.M)
    assert re.search(r"^COPY \. \.$", DOCKERFILE, re.M)


def test_dockerignore_keeps_state_secrets_and_the_virtualenv_out():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".opcon", ".venv", ".env", ".git"} <= ignored  # .opcon holds the API token


# --- Prometheus, Alertmanager, Grafana ------------------------------------------------------------------

def service_at(address: str) -> str:
    host, port = address.rsplit(":", 1)
    assert host in SERVICES and int(port) == LISTENS_ON[host], address
    return host


def test_prometheus_targets_and_rules_match_the_compose_services():
    config = yaml.safe_load((REPO_ROOT / "prometheus.yml").read_text())
    targets = [target for job in config["scrape_configs"] for group in job["static_configs"]
               for target in group["targets"]]
    assert [service_at(target) for target in targets] == ["api"]
    alertmanagers = [target for entry in config["alerting"]["alertmanagers"]
                     for group in entry["static_configs"] for target in group["targets"]]
    assert [service_at(target) for target in alertmanagers] == ["alertmanager"]
    prometheus = SERVICES["prometheus"]
    mounted = {target: source for source, target in mounts(prometheus)}
    config_path = next(Path(target) for target, source in mounted.items() if source == "./prometheus.yml")
    assert f"--config.file={config_path}" in command(prometheus)
    for rule_file in config["rule_files"]:
        in_container = (config_path.parent / rule_file).as_posix()
        target = next(t for t in mounted if in_container.startswith(t + "/"))
        source = REPO_ROOT / mounted[target] / Path(in_container).relative_to(target)
        assert source.resolve() == (REPO_ROOT / rule_file).resolve()


def test_alertmanager_routes_to_declared_receivers():
    config = yaml.safe_load((REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert all(route.get("receiver", config["route"]["receiver"]) in receivers for route in routes)


def test_grafana_provisions_prometheus_and_a_dashboard_of_exported_metrics():
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "opcon.yml").read_text())
    uids = {source["uid"]: source for source in sources["datasources"]}
    assert uids["prometheus"]["url"] == f"http://{service_at('prometheus:9090')}:9090"
    assert service_at(uids["alertmanager"]["url"].removeprefix("http://")) == "alertmanager"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "opcon.yml").read_text())
    mounted = {source: target for source, target in mounts(SERVICES["grafana"])}
    assert provider["providers"][0]["options"]["path"] == mounted["./deploy/grafana/dashboards"]
    assert mounted["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"

    dashboard = json.loads((GRAFANA / "dashboards" / "opcon.json").read_text())
    queries = [(panel["title"], target) for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    assert len(queries) >= 10
    used = set()
    for title, target in queries:
        assert target["datasource"]["uid"] in uids, title
        names = metric_names(target["expr"])
        assert names and names <= EXPORTED_METRICS, f"{title}: {names - EXPORTED_METRICS}"
        used |= names
    assert {"opcon_predictions_total", "flask_http_request_duration_seconds_bucket", "opcon_drift_share",
            "opcon_drift_feature_drifted", "opcon_jobs_total"} <= used


def test_ci_workflow_lints_tests_reproduces_and_builds_the_image():
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "bash .ci/run" in runs and "dvc repro" in runs
    assert "make lint" in (REPO_ROOT / ".ci" / "run").read_text()
    assert any(step.get("uses", "").startswith("docker/build-push-action") for step in steps)
    assert any(step.get("uses", "").startswith("actions/cache") and "pip" in step["with"]["path"]
               for step in steps)
