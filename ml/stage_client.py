"""A stage process's side of the warm stage host (ml.stage_host): hand the stage over, or run it here.

While a host runs for the state dir, `python -m ml.<stage>` sends it this process's working
directory, environment and standard streams; the host's forked child runs the stage, and this
process exits with the child's exit code. Without a host (or when it refuses), the caller runs
the stage itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

from ml import config

SOCKET_NAME = "stage-host.sock"
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to about 107 bytes
REQUEST_BYTES = 1 << 20


def socket_path() -> Path:
    return config.state_dir() / "run" / SOCKET_NAME


def send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def receive(reader) -> dict | None:
    line = reader.readline()
    return json.loads(line) if line else None


def run_remotely(stage: str, project: Path) -> int | None:
    """The exit code of `stage` run by the state dir's host, or None when no host takes it (then
    the caller runs it). Signals to this process are passed on to the host's child."""
    path = socket_path()
    if len(str(path)) > MAX_SOCKET_PATH or not path.exists():
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
        request = {"stage": stage, "cwd": str(project), "env": dict(os.environ)}
        socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        reader = connection.makefile("r")
        answer = receive(reader)
        if not answer or not answer.get("accepted"):
            return None
        return _wait(reader, int(answer["pid"]))
    except OSError:
        return None
    finally:
        connection.close()


def _wait(reader, child: int) -> int:
    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        answer = receive(reader)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if answer is None or "exit" not in answer:
        print("the stage host stopped while it ran this stage", file=sys.stderr)
        return 1
    return int(answer["exit"])


def main(stage: str, work) -> int:
    """The body of `python -m ml.<stage>`: the stage handed to a warm host, or else `work()` (the
    stage's Stage, imported only then) run here. Its exit code."""
    hosted = run_remotely(stage, Path.cwd())
    if hosted is not None:
        return hosted
    from ml.stage import run_stage

    return run_stage(work())
