"""A warm stage host: `dvc repro` stages started as forks of a process that has imported them already.

Each stage of dvc.yaml is a fresh `python -m ml.<stage>` process, and most of its time is imports
(Great Expectations, MLflow, scikit-learn: seconds per stage). While a host runs for the state
dir ($OPCON_HOME/run/stage-host.sock), a stage process hands its work to the host instead: the host
forks a child that already holds every library, the child runs the stage with the stage process's
working directory, environment and standard streams, and the stage process exits with the child's
exit code. DVC sees an ordinary stage process, so its bookkeeping (dvc.lock) is unchanged; without
a host, or when the project's ml code is not the code the host imported, the stage runs itself.

    python -m ml.stage_host [--idle-minutes N]     # beside the job worker, for its state dir

When the ml code on disk changes, the host finishes the stages it runs and starts again on the
new code; meanwhile stages run themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from ml import config
from ml.stage_client import MAX_SOCKET_PATH, REQUEST_BYTES, send, socket_path


def _receive_request(connection: socket.socket) -> tuple[dict, list[int]]:
    message, fds, _flags, _address = socket.recv_fds(connection, REQUEST_BYTES, 3)
    return json.loads(message.decode()), fds


def _child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the stage process, run the stage, never return."""
    from ml import in_process
    from ml.stage import run_stage

    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stream
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = run_stage(in_process.stage(request["stage"]), Path(request["cwd"]))
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException as error:  # the child must never return into the host's loop
        print(f"stage `{request.get('stage')}` failed in the stage host: {error!r}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Host:
    def __init__(self, path: Path, idle_seconds: float):
        self.path, self.idle_seconds = path, idle_seconds
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}  # child pid -> its stage process's connection
        self.last_active = time.monotonic()
        self.stale = False

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.unlink(missing_ok=True)
        listener.bind(str(partial))
        os.chmod(partial, 0o600)
        listener.listen(16)
        os.replace(partial, self.path)  # appears only once it answers
        self.inode = os.stat(self.path).st_ino
        self.selector.register(listener, selectors.EVENT_READ, "listener")
        try:
            while self.children or not (self.stale or self._idle()):
                for key, _events in self.selector.select(timeout=0.2):
                    if key.data == "listener":
                        self._accept(listener)
                    else:
                        self._hung_up(key.fileobj, key.data)
                self._reap()
                if not self._still_ours():
                    break
        finally:
            for child in self.children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
            with contextlib.suppress(FileNotFoundError):
                if self._still_ours():
                    self.path.unlink()
            listener.close()

    def _idle(self) -> bool:
        return 0 < self.idle_seconds <= time.monotonic() - self.last_active

    def _still_ours(self) -> bool:
        """False once another host took the socket's path over (or it was removed)."""
        try:
            return os.stat(self.path).st_ino == self.inode
        except FileNotFoundError:
            return False

    def _accept(self, listener: socket.socket) -> None:
        from ml import in_process

        connection, _address = listener.accept()
        self.last_active = time.monotonic()
        fds: list[int] = []
        try:
            request, fds = _receive_request(connection)
            if not in_process.code_matches(in_process.PACKAGE_DIR.parent):
                self.stale = True  # the code on disk moved on: a new host imports it
            warm = (not self.stale and len(fds) == 3 and request.get("stage") in in_process.LIBRARIES
                    and threading.active_count() == 1 and in_process.code_matches(Path(request["cwd"])))
            if not warm:
                send(connection, {"accepted": False})
                connection.close()
                return
            child = os.fork()
            if child == 0:
                for inherited in [listener, connection, *self.children.values()]:
                    inherited.close()
                _child(request, fds)
            self.children[child] = connection
            self.selector.register(connection, selectors.EVENT_READ, child)
            send(connection, {"accepted": True, "pid": child})
            print(f"stage {request['stage']} in {request['cwd']}: child {child}", flush=True)
        except (OSError, ValueError):
            connection.close()
        finally:
            for fd in fds:
                os.close(fd)

    def _hung_up(self, connection: socket.socket, child: int) -> None:
        """The stage process went away (DVC was stopped): so does its child."""
        if connection.recv(1, socket.MSG_PEEK):
            return
        self.selector.unregister(connection)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)

    def _reap(self) -> None:
        for child in list(self.children):
            done, status = os.waitpid(child, os.WNOHANG)
            if done == 0:
                continue
            connection = self.children.pop(child)
            with contextlib.suppress(KeyError):
                self.selector.unregister(connection)
            code = os.waitstatus_to_exitcode(status)
            print(f"child {child} exited with {code}", flush=True)
            with contextlib.suppress(OSError):
                send(connection, {"exit": code})
            connection.close()
            self.last_active = time.monotonic()


def serve(idle_seconds: float = 0.0) -> bool:
    """Import every stage, then serve the state dir's stage processes; stop after `idle_seconds`
    without one (0: never). True when it stopped because the ml code on disk changed."""
    from ml import in_process

    config.quiet_third_parties()
    path = socket_path()
    if len(str(path)) > MAX_SOCKET_PATH:
        raise SystemExit(f"{path} is too long for a socket: no stage host")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    in_process.preload()
    print(f"stage host {os.getpid()} ready at {path}", flush=True)
    host = Host(path, idle_seconds)
    host.serve()
    return host.stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-minutes", type=float, default=0.0,
                        help="stop after this long without a stage (default 0: never)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if serve(args.idle_minutes * 60):
        print("the ml code changed: starting again with the new code", flush=True)
        os.execv(sys.executable, [sys.executable, "-m", "ml.stage_host", *(argv or sys.argv[1:])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
