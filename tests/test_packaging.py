"""Packaging: pyproject.toml declares the package `operator-console` and its runtime dependencies by
name; requirements.txt pins them exactly, requirements-dev.txt adds the test, benchmark and lint
tools; the image installs the runtime pins only; `make setup` installs this checkout editable.
And what a fresh machine gets from `make test`: PostgreSQL and Redis, and no test skipped under CI."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ml.config import REPO_ROOT

RUNTIME = REPO_ROOT / "requirements.txt"
DEV = REPO_ROOT / "requirements-dev.txt"
DISTRIBUTION = "operator-console"
PACKAGES = ("control_api", "ml", "monitoring", "ui")
INCLUDE_RUNTIME = "-r requirements.txt"


def lines(path) -> list[str]:
    """The requirement lines of a file, without comments and blank lines."""
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip()]


def pins(path) -> dict[str, str]:
    """{canonical name: version} of a requirements file's own pins (an -r line is not one)."""
    found = {}
    for line in lines(path):
        if line == INCLUDE_RUNTIME:
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name not in found, f"{path.name}: {requirement.name} pinned twice"
        found[name] = next(iter(requirement.specifier)).version
    return found


def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_every_requirement_is_an_exact_pin():
    for path in (RUNTIME, DEV):
        for line in lines(path):
            if path == DEV and line == INCLUDE_RUNTIME:
                continue
            requirement = Requirement(line)
            specifiers = list(requirement.specifier)
            assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{path.name}: {line}"
            assert "*" not in specifiers[0].version, f"{path.name}: {line}"
            assert not (requirement.url or requirement.marker or requirement.extras), f"{path.name}: {line}"
            assert line == f"{requirement.name}=={specifiers[0].version}", f"{path.name}: {line}"


def test_the_dev_pins_start_from_the_runtime_pins_and_share_no_package():
    assert lines(DEV)[0] == INCLUDE_RUNTIME
    assert lines(DEV).count(INCLUDE_RUNTIME) == 1
    assert pins(DEV).keys() & pins(RUNTIME).keys() == set()
    assert {"pytest", "ruff", "playwright"} <= pins(DEV).keys()
    assert {"flask", "gunicorn", "mlflow", "dvc", "streamlit"} <= pins(RUNTIME).keys()


def test_pyproject_names_exactly_the_runtime_requirements_and_the_four_packages():
    project = pyproject()["project"]
    assert project["name"] == DISTRIBUTION
    declared = [Requirement(text) for text in project["dependencies"]]
    assert all(not (r.specifier or r.url or r.marker) for r in declared), "by name: the pins are elsewhere"
    names = [canonicalize_name(r.name) for r in declared]
    assert len(names) == len(set(names))
    assert set(names) == pins(RUNTIME).keys()
    included = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(included) == sorted(f"{package}*" for package in PACKAGES)
    assert re.fullmatch(r"setuptools==[\d.]+", "".join(pyproject()["build-system"]["requires"]))


def test_the_image_installs_the_runtime_pins_only():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY requirements\.txt \.$", dockerfile, re.M)
    assert re.search(r"^RUN pip install -r requirements\.txt$", dockerfile, re.M)
    assert "requirements-dev" not in re.sub(r"#.*", "", dockerfile)
    assert "requirements-dev.txt" in (REPO_ROOT / ".dockerignore").read_text().split()


def test_make_setup_installs_both_pin_files_then_the_package_without_dependencies():
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("$(VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    assert "requirements-dev.txt" in recipe.splitlines()[0]  # a change to the pins reinstalls
    assert re.search(r"pip install -q -r requirements-dev\.txt$", recipe, re.M)
    assert re.search(r"pip install -q --no-deps --editable \.$", recipe, re.M)
    assert ".pth', 'w')" not in recipe and "pip check" in recipe


def test_the_installed_distribution_is_this_checkout_seen_from_outside_it(tmp_path):
    probe = """
import importlib.metadata, importlib.util, json
dist = importlib.metadata.distribution("operator-console")
print(json.dumps({
    "version": dist.version,
    "requires": dist.requires,
    "packages": {name: importlib.util.find_spec(name).origin
                 for name in ("control_api", "ml", "monitoring", "ui")},
    "tests": getattr(importlib.util.find_spec("tests"), "submodule_search_locations", None) and
             list(importlib.util.find_spec("tests").submodule_search_locations),
}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["version"] == pyproject()["project"]["version"]
    for name, origin in found["packages"].items():
        assert origin == str(REPO_ROOT / name / "__init__.py"), (name, origin)
    # only the four packages are installed, not the whole checkout
    assert not any(str(REPO_ROOT) in location for location in found["tests"] or [])
    # the metadata is that of the current pyproject.toml (make setup reinstalls when it changes)
    assert {canonicalize_name(Requirement(r).name) for r in found["requires"]} == pins(RUNTIME).keys()


def test_the_environment_holds_exactly_the_pinned_versions():
    wrong = {}
    for name, version in {**pins(RUNTIME), **pins(DEV)}.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, f"pinned vs installed (`make setup` installs the pins): {wrong}"
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_make_test_installs_and_starts_the_servers_the_tests_use():
    makefile = (REPO_ROOT / "Makefile").read_text()
    prerequisites = re.search(r"^test:([^#\n]*)", makefile, re.M).group(1).split()
    assert {"data", "system-packages", "services"} <= set(prerequisites)
    assert re.search(r"^services:.*\n\t@?bash tests/services\.sh$", makefile, re.M)
    script = (REPO_ROOT / "tests" / "services.sh").read_text()
    for package, port in (("postgresql", 5432), ("redis-server", 6379)):
        assert re.search(rf"^\s*.*install {package}\b", script, re.M), package
        assert f"answers {port}" in script  # started only when nothing answers there


def test_under_ci_a_skipped_test_fails(tmp_path):
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\n\ndef test_needs_a_server():\n    pytest.skip('no server here')\n\n\n"
        "def test_runs():\n    pass\n")

    def outcome(ci: str) -> str:
        env = {**os.environ, "CI": ci}
        command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                   str(tmp_path)]
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        return done.stdout.strip().splitlines()[-1]

    assert "1 failed, 1 passed" in outcome("true")
    assert "1 passed, 1 skipped" in outcome("")
