"""gunicorn settings for the control API (`make run` uses them)."""

import os
import shutil
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from ml.config import EnvSettings


class ServerSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="API_")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    access_log: str | None = None  # gunicorn's access log (a path, or - for stdout), off unless set


server = ServerSettings.load()
bind = f"{server.host}:{server.port}"
workers = server.workers
worker_class = "sync"
timeout = 300  # a 1,000,000-row batch takes a while
graceful_timeout = 20
accesslog = server.access_log
errorlog = "-"
loglevel = "info"


def on_starting(server):
    """Prometheus multiprocess mode: one directory of value files, emptied at each start."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
