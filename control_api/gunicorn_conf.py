"""gunicorn settings for the control API (`make run` uses them)."""

import importlib.util
import os
import shutil
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from ml.config import EnvSettings, current


class ServerSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="API_")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    access_log: str | None = None  # gunicorn's access log (a path, or - for stdout), off unless set


def _worker_class():
    """control_api/gunicorn_worker.py's worker, loaded by path: importing it as a module would import
    the control_api package into the master, and every worker a HUP starts would run that old code."""
    spec = importlib.util.spec_from_file_location("opcon_gunicorn_worker",
                                                  Path(__file__).with_name("gunicorn_worker.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ApiWorker.run_dir = STATE_DIR / "api-workers"  # where each says it is ready
    return module.ApiWorker


STATE_DIR = current().state_dir  # $OPCON_HOME (made by whoever first writes into it)
server = ServerSettings.load()
bind = f"{server.host}:{server.port}"
workers = server.workers
# a sync worker that hands over on a reload, answers what is queued when it stops, and refuses
# in JSON
worker_class = _worker_class()
timeout = 300  # a 1,000,000-row batch takes a while
graceful_timeout = 20
accesslog = server.access_log
errorlog = "-"
loglevel = "info"
# gunicornc's socket: this instance's own (the default, one per user, is shared by every instance)
control_socket = str(STATE_DIR / "gunicorn.ctl")
pidfile = str(STATE_DIR / "gunicorn.pid")  # the master, for `kill -HUP` (see README, deploying)


def on_starting(server):
    """The state dir for the pid file; Prometheus multiprocess mode: one directory of value files,
    emptied at each start."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def post_worker_init(worker):
    """A worker loads the champion before it takes a connection: the requests a restarted worker
    takes do not wait behind a model load (a sync worker answers one at a time)."""
    services = getattr(worker.wsgi, "extensions", {}).get("opcon")
    if services is not None:
        services.champion.refresh()
        services.shadow.refresh()  # the challenger, if any, shadows from the first request on


def child_exit(server, worker):
    worker_class.forget(server.pid, worker.pid)  # one killed could not remove its ready file
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # prometheus_client's own function, not the Flask exporter's: that one would import Flask
        # into the master, and the workers a HUP starts would inherit it
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(worker.pid)
