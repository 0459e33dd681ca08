"""The console's back end and front end on free loopback ports, for UI tests and the UI benchmark.

`Backend`: a trained project (tests/helpers.py `build_project` + `dvc repro`) served by the API
under gunicorn with one job worker (tests/live.py `Services`). `Console`: `streamlit run
ui/streamlit_app.py` pointed at that API. `chromium`: Debian's Chromium driven by Playwright.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from ml.config import REPO_ROOT
from tests.helpers import build_project
from tests.live import Services, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
PASSWORD = "a long test password"  # the API wants at least 12 characters


def start_backend(root: Path, rows: int = 2000, params_changes: dict | None = None) -> Services:
    """A trained champion behind a ready API and a job worker. OPCON_HOME must point under `root`.
    No scheduled drift report: a test's own would otherwise race it (409, or another window)."""
    project = build_project(root, params_changes, rows=rows)
    project.train()
    project.git_commit("first model")
    services = Services(project.path, project.state, {"OPCON_DRIFT_INTERVAL_MINUTES": "0"})
    services.project = project
    services.start_api()
    services.start_worker()
    try:
        services.wait_ready()
    except BaseException:
        services.stop()
        raise
    return services


def console_env(services: Services, api_url: str | None = None,
                mlflow_ui: str = "http://127.0.0.1:5000") -> dict[str, str]:
    """What the console reads: the API's address and the MLflow UI for links. No token: the console
    calls the API as whoever signs in."""
    return {"OPCON_API_URL": api_url or services.url, "OPCON_MLFLOW_UI_URL": mlflow_ui}


def add_user(services: Services, username: str, role: str, password: str = PASSWORD,
             display_name: str | None = None) -> dict:
    """A person account, made with the service token (role admin)."""
    answer = services.post("/api/v1/users", json={"username": username, "role": role, "password": password,
                                                  "display_name": display_name or username.title()})
    assert answer.status_code == 201, answer.text
    return answer.json()


def sign_in(services: Services, username: str, password: str = PASSWORD) -> str:
    """POST /auth/login: the session token, as the console's sign-in gets it."""
    answer = requests.post(f"{services.url}/api/v1/auth/login",
                           json={"username": username, "password": password}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


class Console:
    """`streamlit run ui/streamlit_app.py`, headless, on a free loopback port."""

    def __init__(self, services: Services, api_url: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = services.logs / "streamlit.log"
        self.env = {k: v for k, v in os.environ.items() if k != "OPCON_API_TOKEN"}
        self.env.update(console_env(services, api_url))
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Console:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "ui/streamlit_app.py", "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"streamlit exited:\n{self.tail()}")
            return requests.get(f"{self.url}/_stcore/health", timeout=2).text == "ok"

        try:
            wait_until(healthy, timeout, "streamlit answers its health check", interval=0.3,
                       details=self.tail)
        except AssertionError:
            self.stop()
            raise
        return self

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextlib.contextmanager
def api_for_console(project: Path, state: Path, username: str, role: str):
    """The API under gunicorn on a trained project (no job worker), the console's variables pointing
    at it, and a person signed in: yields the Services, with `session_token`."""
    services = Services(project, state, {"OPCON_DRIFT_INTERVAL_MINUTES": "0"})
    services.start_api()
    try:
        services.wait_ready()
        with pytest.MonkeyPatch.context() as patch:
            for name, value in console_env(services).items():
                patch.setenv(name, value)
            add_user(services, username, role)
            services.session_token = sign_in(services, username)
            yield services
    finally:
        services.stop()


def console_page(token: str, page: str):
    """A console page in Streamlit's AppTest for a signed-in session token (the variables of
    console_env must point the console at the API)."""
    from streamlit.testing.v1 import AppTest

    from ui.components import session

    app = AppTest.from_file(REPO_ROOT / "ui" / "streamlit_app.py", default_timeout=60)
    app.session_state[session.TOKEN] = token
    app = app.run().switch_page(f"app_pages/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def start_streamlit(services: Services, api_url: str | None = None) -> Console:
    return Console(services, api_url).start()


def port_no_connection_takes() -> int:
    """A free loopback port below the kernel's range for outgoing connections' own ports, so none
    takes it while the forwarder is stopped and `start()` can bind it again."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 8_000), low), 200):
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port below {low}")


class Forwarder:
    """A TCP forwarder from a free loopback port to the API: `stop()` takes the API away from the
    console (open connections are cut), `start()` brings it back on the same address."""

    def __init__(self, target_port: int):
        self.target_port, self.port = target_port, port_no_connection_takes()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener: socket.socket | None = None
        self.open: list[socket.socket] = []

    def start(self) -> Forwarder:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        for connection in self.open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self.open = []


def chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
