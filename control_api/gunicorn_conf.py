"""gunicorn settings for the control API (`make run` uses them)."""

import os
import shutil
from pathlib import Path

bind = f"{os.environ.get('API_HOST', '127.0.0.1')}:{os.environ.get('API_PORT', '8000')}"
workers = int(os.environ.get("API_WORKERS", "2"))
worker_class = "sync"
timeout = 300  # a 1,000,000-row batch takes a while
graceful_timeout = 20
accesslog = os.environ.get("API_ACCESS_LOG") or None
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
