"""A PostgreSQL and a Redis server of a test's own, on free loopback ports, that the test may stop,
start and restart without disturbing any other test (the shared servers stay on 5432 and 6379).

    with private_postgres() as pg, private_redis() as redis_server:
        ... pg.url, redis_server.url ...; pg.stop(); pg.start(); redis_server.restart()

PostgreSQL: a new cluster (`initdb`, trust auth for local TCP) in a temp dir, run with `pg_ctl`.
`initdb` refuses to run as root, so under root both run as the `postgres` system user, in a dir it
owns. Redis: `redis-server` without persistence, so a restart loses every key (a lost queue).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.live import free_port, wait_until


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def postgres_binary(name: str) -> str:
    """`initdb`, `pg_ctl`, ... of the newest PostgreSQL installed (Debian keeps them off PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    path = found[-1] if found else shutil.which(name)
    if not path:
        pytest.fail(f"PostgreSQL's `{name}` not found: install the Debian package `postgresql` "
                    "(`make services`)")
    return path


class PrivatePostgres:
    """A PostgreSQL cluster of one test module; `url` is its `postgres` database."""

    def __init__(self):
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="opcon-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root: the `postgres` user runs them
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs the `postgres` system user (package `postgresql`)")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise AssertionError(f"`{' '.join(args)}` failed ({done.returncode}):\n{done.stdout}\n"
                                 f"{done.stderr}\n{tail}")

    def init(self) -> None:
        self._run(postgres_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        # no Unix socket (the default dir belongs to the machine's server); durability is not the
        # point of a throwaway cluster, so no fsync
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(postgres_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")
        wait_until(lambda: _answers(self.port), 30, f"PostgreSQL answers on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: open connections are ended (what a restart of the server does to clients)."""
        self._run(postgres_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            if self.running:
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A Redis server of one test module; it keeps nothing on disk, so a restart empties it."""

    def __init__(self):
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="opcon-redis-"))
        self.log = self.root / "server.log"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.binary = shutil.which("redis-server")
        if not self.binary:
            pytest.fail("`redis-server` not found: install the Debian package `redis-server` "
                        "(`make services`)")

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._up, 30, f"Redis answers on port {self.port}",
                   details=lambda: self.log.read_text(errors="replace")[-2000:])

    def _up(self) -> bool:
        assert self.process.poll() is None, self.log.read_text(errors="replace")[-2000:]
        return _answers(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # with --save '' it writes nothing: every key is gone
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres():
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def private_redis():
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()
