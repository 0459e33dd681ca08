"""Real servers for tests: gunicorn running the API and job workers, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from ml.config import REPO_ROOT

TOKEN = "live-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Services:
    """An API (gunicorn, 2 workers) and job workers for one project and state dir."""

    def __init__(self, project: Path, state: Path, extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "OPCON_HOME": str(state), "OPCON_PROJECT_DIR": str(project),
                    "OPCON_API_TOKEN": TOKEN, "API_PORT": str(self.port), "API_WORKERS": "2",
                    "OPCON_MODEL_POLL_SECONDS": "1",
                    "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"), **(extra_env or {})}
        self.logs = state / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"

    def _start(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.logs / log_name, "ab")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(args, cwd=REPO_ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start_api(self) -> None:
        self.api = self._start([str(Path(sys.executable).parent / "gunicorn"), "-c",
                                "control_api/gunicorn_conf.py", "control_api:create_app()"], "api.log")

    def start_worker(self) -> subprocess.Popen:
        worker = self._start([sys.executable, "-m", "control_api.jobs.worker"], "worker.log")
        self.workers.append(worker)
        return worker

    def wait_ready(self, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = requests.get(f"{self.url}/ready", timeout=2)
                if last.status_code == 200:
                    return last.json()
            except requests.RequestException:  # not listening yet, or still loading the model
                pass
            time.sleep(0.3)
        raise AssertionError(f"API not ready: {last and last.text}\n{self.tail('api.log')}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.url + path, timeout=120, **kwargs)

    def wait_job(self, job_id: str, until=("succeeded", "failed", "cancelled", "interrupted"),
                 timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in until:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {job['status']}:\n{job['log_tail']}\n"
                             f"{self.tail('worker.log')}")

    def api_worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.api.pid)], capture_output=True, text=True,
                             check=False).stdout
        return [int(pid) for pid in out.split()]

    def wait_healthy(self, timeout: float = 90) -> None:
        """The API answers /health (it needs no champion, unlike /ready)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            assert self.api.poll() is None, f"the API exited:\n{self.tail('api.log')}"
            time.sleep(0.2)
        raise AssertionError(f"API not healthy:\n{self.tail('api.log')}")

    # -- which gunicorn worker answers -----------------------------------------------------------
    def _server_inode(self, client_port: int) -> int:
        """The inode of the API's end of a loopback connection from `client_port` (0: not accepted)."""
        local, remote = f"0100007F:{self.port:04X}", f"0100007F:{client_port:04X}"
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[9])
        return 0

    def accepted_by(self, sock: socket.socket, pids: list[int], timeout: float = 60) -> int:
        """The API worker whose process holds the accepted end of `sock` (waits for the accept)."""
        client_port = sock.getsockname()[1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inode = self._server_inode(client_port)
            if inode:
                wanted = f"socket:[{inode}]"
                for pid in pids:
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                        for fd in Path(f"/proc/{pid}/fd").iterdir():
                            with contextlib.suppress(FileNotFoundError):
                                if os.readlink(fd) == wanted:
                                    return pid
            time.sleep(0.01)
        raise AssertionError(f"no API worker of {pids} accepted a connection in {timeout} s")

    @contextlib.contextmanager
    def only_worker(self, pid: int):
        """While inside, requests on new connections are answered by API worker `pid`: every other
        sync worker is kept busy reading a request that never comes (a connection that sends
        nothing), and a sync worker takes one connection at a time."""
        pids = self.api_worker_pids()
        assert pid in pids, (pid, pids)
        held, parked = [], []
        try:
            while len(held) < len(pids) - 1:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                (parked if self.accepted_by(sock, pids) == pid else held).append(sock)
            for sock in parked:  # `pid` took one of these: it reads EOF and is free again
                sock.close()
            parked = []
            yield pid
        finally:
            for sock in held + parked:
                sock.close()

    def each_worker(self):
        """Each API worker in turn, with only it answering (see only_worker)."""
        pids = self.api_worker_pids()
        assert len(pids) >= 2, f"expected several API workers, found {pids}"
        for pid in pids:
            with self.only_worker(pid):
                yield pid

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers, self.api]:
            if process is not None:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll `condition()` until it returns something truthy (returned); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting until {what}")
