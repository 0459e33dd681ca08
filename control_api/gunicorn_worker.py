"""The API's gunicorn worker: gunicorn's sync worker, with what it lacks for restarts and refusals.

A reload hands over. On a HUP, gunicorn starts new workers and at once tells the old ones to stop
(SIGTERM); the new ones take seconds to import the API and load the model, and meanwhile nobody
answers. So a worker told to stop while the master still listens (a reload, a rolling restart, not
a stop of the server) keeps serving until another worker says it is ready (a file in `run_dir`,
written once its app and model are loaded), then stops. Each removes its own file before it looks
for the others' (a moment later), so the old workers go on until a new one is ready, and even when
one of them looks too early the last of them waits for a new one.

A stop answers what is queued. The kernel completes a client's connection before any worker takes
it, and the client sends its request at once; the connection then waits in the listening socket's
queue. When the last process holding that socket exits, the kernel resets every connection still
queued: requests that were sent and never answered. So a stopping worker finishes its request, then
answers what is queued until nothing is, and only then closes its copy of the socket.

A request gunicorn refuses before the app sees it (a request line over `limit_request_line`, too
many or too large headers, a request that is not HTTP) gets the API's JSON error body, not
gunicorn's HTML page; neither the body nor the log line quotes what the client sent.

gunicorn_conf.py loads this file by its path, so gunicorn's master process imports nothing of the
API and each worker a HUP starts imports the API's code as it is on disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from datetime import datetime
from pathlib import Path

from gunicorn import util
from gunicorn.http import errors
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

NOTHING_WAITING = (errno.EAGAIN, errno.EWOULDBLOCK)
HAND_OVER_SECONDS = 120.0  # at most this long serving after a SIGTERM, waiting for another worker
LOOK_SECONDS = 0.1  # how often a worker handing over looks for another one

INVALID = (400, "Bad Request", "headers", "not a valid HTTP request", "not valid HTTP/1.1")
INVALID_LINE = (400, "Bad Request", "request line", "not a valid HTTP request", "not valid HTTP/1.1")
# what gunicorn refused: (status, reason phrase, field, error, problem); `problem` may name a limit
REFUSALS = {
    errors.LimitRequestLine: (414, "URI Too Long", "request line", "the request line is too long",
                              "longer than {cfg.limit_request_line} bytes: shorten the URL"),
    errors.LimitRequestHeaders: (431, "Request Header Fields Too Large", "headers",
                                 "the request headers are too large",
                                 "at most {cfg.limit_request_fields} header fields of at most "
                                 "{cfg.limit_request_field_size} bytes each"),
    errors.UnsupportedTransferCoding: (501, "Not Implemented", "headers",
                                       "this Transfer-Encoding is not supported",
                                       "Transfer-Encoding: only chunked is supported"),
    errors.ExpectationFailed: (417, "Expectation Failed", "headers", "the Expect header cannot be met",
                               "Expect: only 100-continue is supported"),
    errors.ForbiddenProxyRequest: (403, "Forbidden", "proxy protocol",
                                   "the PROXY protocol is not accepted from this address",
                                   "not allowed from this address"),
    errors.InvalidProxyLine: (400, "Bad Request", "proxy protocol", "not a valid PROXY protocol line",
                              "not valid PROXY protocol"),
    errors.InvalidRequestLine: INVALID_LINE,
    errors.InvalidRequestMethod: INVALID_LINE,
    errors.InvalidHTTPVersion: INVALID_LINE,
}


class ApiWorker(SyncWorker):
    run_dir: Path | None = None  # set by gunicorn_conf.py; None: no hand-over
    quick_exit = False
    handing_over_until: float | None = None  # told to stop, serving until another worker is ready
    _next_look = 0.0

    def run(self):
        ready = self.ready_file(self.ppid, self.pid)
        if ready is not None and self.alive:  # app and model loaded (post_worker_init)
            ready.parent.mkdir(parents=True, exist_ok=True)
            ready.touch()
        try:
            super().run()  # returns once the worker is to stop (or its master is gone)
            if not self.quick_exit:
                self.answer_queued()
        finally:
            self.forget(self.ppid, self.pid)

    @classmethod
    def ready_file(cls, master: int, worker: int) -> Path | None:
        return None if cls.run_dir is None else cls.run_dir / f"{master}-{worker}.ready"

    @classmethod
    def forget(cls, master: int, worker: int) -> None:
        """The worker is no longer ready (the master calls this for a worker that died)."""
        if (ready := cls.ready_file(master, worker)) is not None:
            ready.unlink(missing_ok=True)

    def handle_exit(self, sig, frame):
        if not self.alive or self.handing_over_until is not None:
            return  # the master repeats its SIGTERM every second until the worker is gone
        self.forget(self.ppid, self.pid)
        if self.booted and self.run_dir is not None and self._master_listens():
            self.handing_over_until = time.monotonic() + HAND_OVER_SECONDS
            # the first look a moment later: workers told to stop with this one have then removed
            # their files too (a reload stops all the old ones at once)
            self._next_look = time.monotonic() + LOOK_SECONDS
            self.log.info("told to stop: serving until another worker is ready")
        else:
            self.alive = False

    def handle_quit(self, sig, frame):
        self.quick_exit = True  # SIGINT / SIGQUIT: stop now, answer nothing more
        super().handle_quit(sig, frame)

    def notify(self):
        super().notify()  # called before each accept and each wait
        if self.handing_over_until is None or time.monotonic() < self._next_look:
            return
        self._next_look = time.monotonic() + LOOK_SECONDS
        if (time.monotonic() >= self.handing_over_until or self._another_ready()
                or not self._master_listens()):
            self.handing_over_until, self.alive = None, False

    def wait(self, timeout):
        if not self.alive:  # the hand-over ended in this loop's notify(): no wait for a client
            return []
        return super().wait(LOOK_SECONDS if self.handing_over_until is not None else timeout)

    def _another_ready(self) -> bool:
        for ready in self.run_dir.glob(f"{self.ppid}-*.ready"):
            with contextlib.suppress(ValueError, ProcessLookupError):
                worker = int(ready.stem.split("-")[1])
                if worker != self.pid:
                    os.kill(worker, 0)  # alive
                    return True
        return False

    def _master_listens(self) -> bool:
        """Whether the master still holds the listening sockets (it closes them first on a stop)."""
        wanted = {f"socket:[{os.fstat(listener.fileno()).st_ino}]" for listener in self.sockets}
        held = set()
        with contextlib.suppress(OSError):  # no /proc: a stop, as far as we can tell
            for fd in Path(f"/proc/{self.ppid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    held.add(os.readlink(fd))
        return wanted <= held

    def answer_queued(self) -> None:
        """Answer the connections waiting in the listening socket's queue, then close it."""
        deadline = time.monotonic() + self.cfg.graceful_timeout / 2  # the master kills at the end
        waiting = True
        while waiting and time.monotonic() < deadline:
            waiting = False
            for listener in self.sockets:
                self.notify()
                try:
                    self.accept(listener)  # non-blocking: raises when nothing is waiting
                    waiting = True
                except OSError as error:
                    if error.errno == errno.ECONNABORTED:
                        waiting = True
                    elif error.errno not in NOTHING_WAITING:
                        raise
        for listener in self.sockets:
            listener.close()

    def handle_error(self, req, client, addr, exc):
        started = datetime.now()
        status, reason, body = refusal(exc, self.cfg)
        peer = addr[0] if addr else ""
        if status == 500:
            self.log.exception("error handling a request from %s", peer)
        else:  # the kind only: what the client sent may hold a credential
            self.log.warning("refused a request from %s: %d %s", peer, status, type(exc).__name__)
        if req is not None:
            response = Response(req, client, self.cfg)
            response.status, response.response_length = f"{status} {reason}", len(body)
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = peer, str(addr[1] if addr else "")
            self.log.access(response, req, environ, datetime.now() - started)
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:  # the client is gone: nothing to tell it
            self.log.debug("could not send the error response")


def refusal(exc: BaseException, cfg) -> tuple[int, str, bytes]:
    """The status, reason phrase and JSON body answering a request gunicorn could not take."""
    if not isinstance(exc, errors.ParseException) or isinstance(exc, errors.ConfigurationProblem):
        return 500, "Internal Server Error", _body("internal error", [])
    status, reason, field, error, problem = next(
        (found for kind, found in REFUSALS.items() if isinstance(exc, kind)), INVALID)
    return status, reason, _body(error, [{"field": field, "problem": problem.format(cfg=cfg)}])


def _body(error: str, details: list[dict]) -> bytes:
    return json.dumps({"error": error, "details": details}).encode()
