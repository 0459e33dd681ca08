"""Data versions with DVC: the project's DVC set-up, add/push/pull of raw data, version hashes."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import yaml

from ml import child_process, config
from ml.errors import PipelineError

REMOTE_NAME = "opcon"


def file_md5(path: Path) -> str:
    """DVC 3's hash of a file: the md5 of its bytes."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_version(path: Path) -> str | None:
    path = Path(path)
    return file_md5(path) if path.is_file() else None


def pointer_version(path: Path) -> str | None:
    """The hash recorded in `<path>.dvc`, i.e. the version git and DVC know about."""
    pointer = Path(f"{path}.dvc")
    if not pointer.is_file():
        return None
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def tool_env(settings: config.MLSettings | None = None) -> dict[str, str]:
    """Environment for DVC and the stages it starts: this process's environment with `settings`
    (default: those in force) as its variables, no telemetry, this interpreter's bin first on PATH."""
    env = (settings or config.current()).child_env(dict(os.environ))
    for key, value in config.QUIET.items():
        env.setdefault(key, value)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run(args: list[str], cwd: Path, what: str) -> str:
    """`args` in `cwd`, as a child that dies with this process (a killed job leaves no DVC behind)."""
    done = child_process.run(args, cwd=cwd, env=tool_env())
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise PipelineError(f"{what} failed (exit {done.returncode}):\n{detail}")
    return done.stdout


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, f"dvc {args[0]}")


def ensure_project(project: Path) -> None:
    """Make `project` a git + DVC repository whose cache and default remote live in the state dir.

    The remote and cache are written to `.dvc/config.local` (git-ignored), so each checkout points
    at its own $OPCON_HOME; OPCON_DVC_REMOTE selects any DVC remote URL (s3://, gs://, ssh://...).
    """
    project.mkdir(parents=True, exist_ok=True)
    if not (project / ".git").exists():
        run(["git", "init", "-q"], project, "git init")
    if not (project / ".dvc").exists():
        dvc("init", cwd=project)
    dvc("config", "--local", "core.analytics", "false", cwd=project)
    dvc("config", "--local", "cache.dir", str(config.dvc_cache_dir()), cwd=project)
    dvc("remote", "add", "--local", "--force", "--default", REMOTE_NAME, config.dvc_remote_url(),
        cwd=project)


def add_and_push(project: Path, target: str) -> None:
    dvc("add", target, cwd=project)
    dvc("push", f"{target}.dvc", cwd=project)


def pull(project: Path, target: str) -> bool:
    """Restore `target` from the remote; False when the remote does not have it."""
    if not (project / f"{target}.dvc").is_file():
        return False
    try:
        dvc("pull", f"{target}.dvc", cwd=project)
    except PipelineError:
        return False
    return (project / target).is_file()


def repro(project: Path, *args: str) -> str:
    return dvc("repro", *args, cwd=project)


def push(project: Path) -> None:
    """Every tracked file and stage output to the remote, so a fresh clone can `dvc pull` it all."""
    dvc("push", cwd=project)
