"""Real servers for tests, on free loopback ports: gunicorn running the API and job workers, and
Prometheus scraping them. `wait_until` is how a test waits for any of them."""

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
import yaml

from ml.config import REPO_ROOT
from tests.helpers import binary

TOKEN = "live-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def job_processes(job_id: str) -> list[int]:
    """Pids of the processes a job started (each has OPCON_JOB_ID=<id> in its environment)."""
    marker = f"OPCON_JOB_ID={job_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


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

    def wait_workers_ready(self, count: int, timeout: float = 120) -> None:
        """Until `count` job workers (in all, since the log began) said they are ready."""
        wait_until(lambda: self.tail("worker.log", 100_000).count("worker ready") >= count, timeout,
                   f"{count} job worker(s) are ready", interval=0.3)

    def wait_ready(self, timeout: float = 90) -> dict:
        answers = []  # none while it is not listening yet; 503 while it loads the model

        def ready():
            answers[:] = [requests.get(f"{self.url}/ready", timeout=2)]
            return answers[0].json() if answers[0].status_code == 200 else None

        return wait_until(ready, timeout, "the API is ready", interval=0.3,
                          details=lambda: f"{answers[0].text if answers else 'no answer'}\n"
                                          f"{self.tail('api.log')}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.url + path, timeout=120, **kwargs)

    def wait_job(self, job_id: str, until=("succeeded", "failed", "cancelled", "interrupted"),
                 timeout: float = 240) -> dict:
        seen = []

        def done():
            seen[:] = [self.get(f"/api/v1/jobs/{job_id}").json()]
            return seen[0] if seen[0]["status"] in until else None

        def details() -> str:
            job = seen[0] if seen else {"status": "unknown", "log_tail": ""}
            return f"job {job_id} is {job['status']}:\n{job['log_tail']}\n{self.tail('worker.log')}"

        return wait_until(done, timeout, f"job {job_id} is {' or '.join(until)}", interval=0.5,
                          details=details)

    def api_worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.api.pid)], capture_output=True, text=True,
                             check=False).stdout
        return [int(pid) for pid in out.split()]

    def wait_healthy(self, timeout: float = 90) -> None:
        """The API answers /health (it needs no champion, unlike /ready)."""

        def healthy() -> bool:
            assert self.api.poll() is None, f"the API exited:\n{self.tail('api.log')}"
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200

        wait_until(healthy, timeout, "the API answers /health", details=lambda: self.tail("api.log"))

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

        def holder() -> int | None:
            inode = self._server_inode(client_port)
            if inode:
                wanted = f"socket:[{inode}]"
                for pid in pids:
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                        for fd in Path(f"/proc/{pid}/fd").iterdir():
                            with contextlib.suppress(FileNotFoundError):
                                if os.readlink(fd) == wanted:
                                    return pid
            return None

        return wait_until(holder, timeout, f"one of the API workers {pids} accepts a connection",
                          interval=0.01)

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


class PrometheusServer:
    """The real Prometheus on a loopback port, on a copy of prometheus.yml aimed at one API."""

    def __init__(self, tmp_path, api_target: str):
        config = yaml.safe_load((REPO_ROOT / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str((REPO_ROOT / path).resolve()) for path in config["rule_files"]]
        config.pop("alerting")  # no Alertmanager here
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [api_target]}]
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = tmp_path / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary("prometheus"), f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait(lambda: requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200, "ready")

    def _wait(self, condition, what: str, timeout: float = 30):
        return wait_until(condition, timeout, f"Prometheus is {what}", interval=0.3,
                          details=lambda: self.log.read_text()[-3000:])

    def api(self, path: str, **params) -> dict:
        body = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5).json()
        assert body["status"] == "success", body
        return body["data"]

    def scalar(self, query: str) -> float | None:
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, query: str, expected: float) -> None:
        self._wait(lambda: self.scalar(query) == expected, f"answering {query} == {expected}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def running(project, extra_env: dict | None = None, ready: bool = True):
    """The API under gunicorn and one job worker on a built project (tests.helpers.Project), ready
    (a champion loaded) or, with `ready=False`, only healthy; stopped when the block ends."""
    services = Services(project.path, project.state, extra_env)
    services.project = project
    services.start_api()
    services.start_worker()
    try:
        services.wait_ready() if ready else services.wait_healthy()
        yield services
    finally:
        services.stop()


def wait_until(condition, timeout: float, what: str, interval: float = 0.2, details=None):
    """Poll `condition()` until it returns something truthy, and return that. A request that fails
    (nothing listening yet) counts as not yet. After `timeout` seconds, fail naming `what`, with
    `details()` (a log tail, say) below."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except requests.RequestException:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g} s waiting until {what}"
            raise AssertionError(f"{message}\n{details()}" if details else message)
        time.sleep(interval)
