"""Restarts and alias moves under traffic, against the API under gunicorn (started as `make run`
starts it): a HUP reload and rolling worker restarts fail no request and lose no logged row, and the
old workers serve until new ones are ready; across a promotion and a rollback the version a response
names never goes back; a stop (SIGTERM) answers every request already sent; a request gunicorn
refuses gets the API's JSON error body."""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from control_api import db
from control_api.errors import APIError
from control_api.serving import Champion
from ml import in_process, registry
from monitoring.prediction_log import PredictionLog
from tests.helpers import build_project, typical_record
from tests.live import TOKEN, Services, wait_until

pytestmark = pytest.mark.live
TRAFFIC_SECONDS = 30
CLIENTS = 4
PACE_SECONDS = 0.05  # each client's steady rate: 20 requests a second (the machine has other work)
ROWS = 2  # records per request
BOOT_SECONDS = 180  # a worker's start (importing the API, loading the model) on a busy machine


@pytest.fixture(scope="module")
def live(module_state):
    """The API alone (no job worker: these tests start no job), on a project trained meanwhile
    whose model has two versions (version 2: version 1 registered again)."""
    project = build_project(module_state, rows=600, params_changes={
        "train": {"hyperparameters": {"random_forest": {"n_estimators": 10}}}})
    # the default poll interval (tests/live.py's is 1 s): a worker may see a move 2 s after another
    services = Services(project.path, project.state, {"OPCON_MODEL_POLL_SECONDS": "2",
                                                      "OPCON_MODEL_SWITCH_LEAD_SECONDS": "3"})
    services.project, services.record = project, typical_record(project.params.schema)
    name = project.params.registry.model_name
    assert registry.champion(name) is None  # the MLflow store made before the API opens it too
    services.start_api()  # it starts while the pipeline trains; it serves the champion once there is one
    try:
        in_process.run(project.path, record=False)  # the pipeline's stages, without a process each
        first = registry.client().get_model_version(name, "1")
        assert registry.register(first.source, name, first.run_id, dict(first.tags)) == "2"
        services.wait_ready(timeout=BOOT_SECONDS)
        yield services
    finally:
        services.stop()


# -- the server, raw HTTP --------------------------------------------------------------------------

def up(live) -> None:
    """The module's API, started again if a test stopped it."""
    if live.api.poll() is not None:
        live.start_api()
        live.wait_ready(timeout=BOOT_SECONDS)


def _listening_inode(port: int) -> int:
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # LISTEN
            return int(fields[9])
    return 0


def _holds(pid: int, inode: int) -> bool:
    wanted = f"socket:[{inode}]"
    try:
        return any(os.readlink(fd) == wanted for fd in Path(f"/proc/{pid}/fd").iterdir())
    except FileNotFoundError:
        return False


def _predict_request(record: dict) -> tuple[bytes, bytes]:
    """A /predict request as raw HTTP: the head, and the body."""
    body = json.dumps({"records": [record] * ROWS}).encode()
    head = (f"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head, body


def _response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of the response on `sock` (the server closes after it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _answer_and_close(sock: socket.socket) -> tuple[int, dict, bytes]:
    """The response, then the connection closed (gunicorn waits for the client to close first)."""
    try:
        return _response(sock)
    finally:
        sock.close()


# -- what gunicorn refuses -------------------------------------------------------------------------

@pytest.mark.parametrize(("request_bytes", "status", "field"), [
    (b"GET /api/v1/models?q=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "request line"),
    (b"GET /health HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431, "headers"),
    (b"GET /health HTTP/1.1\r\nHost: a\r\n" + b"X-A: 1\r\n" * 120 + b"\r\n", 431, "headers"),
    (b"NOT HTTP\r\n\r\n", 400, "request line"),
])
def test_a_request_gunicorn_refuses_gets_the_json_error_body(live, request_bytes, status, field):
    up(live)
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        sock.sendall(request_bytes)
        answered, headers, body = _response(sock)
    assert answered == status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert isinstance(error["error"], str) and error["error"]
    assert [item["field"] for item in error["details"]] == [field]
    assert b"xxxxx" not in body and b"yyyyy" not in body  # what was sent is not echoed


# -- traffic through a reload, rolling restarts and alias moves ------------------------------------

@dataclasses.dataclass(frozen=True)
class Answer:
    client: int
    sent: float  # time.monotonic() in this process
    received: float
    version: str
    request_id: str


class Traffic:
    """Client threads, each sending a /predict on a new connection every PACE_SECONDS (or as soon as
    the previous one is answered, when that takes longer)."""

    def __init__(self, live, clients: int = CLIENTS):
        self.live, self.answers, self.failures = live, [], []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def _client(self, number: int) -> None:
        url, body = f"{self.live.url}/api/v1/predict", {"records": [self.live.record] * ROWS}
        headers = {"Authorization": f"Bearer {TOKEN}", "Connection": "close"}
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                response = requests.post(url, json=body, headers=headers, timeout=60)
            except requests.RequestException as error:
                self.failures.append(f"client {number}: {type(error).__name__}: {error}")
                continue
            received = time.monotonic()
            if response.status_code != 200:
                self.failures.append(f"client {number}: {response.status_code} {response.text[:300]}")
                continue
            answered = response.json()
            self.answers.append(Answer(number, sent, received, answered["model"]["version"],
                                       answered["request_id"]))
            self.stopping.wait(PACE_SECONDS - (received - sent))

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def wait_for(self, count: int, what: str, version: str | None = None, sent_after: float = 0.0):
        """Until `count` more answers (of `version`, to requests sent after `sent_after`) came."""
        def matching() -> int:
            return sum(1 for a in list(self.answers) if (version is None or a.version == version)
                       and a.sent >= sent_after)

        target = matching() + count
        wait_until(lambda: matching() >= target, BOOT_SECONDS, what, interval=0.1,
                   details=lambda: f"failures: {self.failures[-5:]}\n{self.live.tail('api.log')}")


@dataclasses.dataclass
class Rollout:
    traffic: Traffic
    moves: list[tuple[float, str]]  # (when the request moving the alias was sent, the new champion)
    logged: dict[str, int]  # request id: rows in the prediction log
    reloaded: set[int]  # the workers a HUP replaced
    taken_by: int  # the worker that took a request sent while the new ones started


def ready_workers(live) -> int:
    """How many API workers say they are ready (control_api/gunicorn_worker.py)."""
    return len(list((live.project.state / "api-workers").glob(f"{live.api.pid}-*.ready")))


def move(moves: list, live, traffic: Traffic, version: str, route: str) -> None:
    """Move the champion alias through `route` to `version`, until responses name it."""
    moves.append((time.monotonic(), version))
    moved = live.post(route, json={"reason": "rollout test"})
    assert moved.status_code == 200, moved.text
    traffic.wait_for(20, f"version {version} answers after the move", version=version,
                     sent_after=moves[-1][0])


@pytest.fixture(scope="module")
def rollout(live) -> Rollout:
    """30 s of traffic through: a HUP reload (and a request sent while its new workers start); a
    promotion while it hands over; then, with two workers, a rollback and a promotion; one worker
    stopped (a rolling restart)."""
    up(live)
    moves = [(float("-inf"), "1")]
    started = time.monotonic()
    with Traffic(live) as traffic:
        traffic.wait_for(20, "traffic is answered")
        reloaded = set(live.api_worker_pids())
        live.api.send_signal(signal.SIGHUP)
        wait_until(lambda: len(set(live.api_worker_pids()) - reloaded) == 2, 60,
                   "two new workers are forked")
        head, body = _predict_request(live.record)
        with socket.create_connection(("127.0.0.1", live.port), timeout=60) as sock:
            sock.sendall(head + body[:10])  # the rest once we know which worker took it
            taken_by = live.accepted_by(sock, live.api_worker_pids(), timeout=BOOT_SECONDS)
            sock.sendall(body[10:])
            assert _response(sock)[0] == 200

        move(moves, live, traffic, "2", "/api/v1/models/2/promote")  # while the reload hands over
        wait_until(lambda: not set(live.api_worker_pids()) & reloaded and ready_workers(live) == 2,
                   BOOT_SECONDS, "the two new workers replace the old ones",
                   details=lambda: live.tail("api.log"))
        move(moves, live, traffic, "1", "/api/v1/models/rollback")  # two workers switch
        move(moves, live, traffic, "2", "/api/v1/models/2/promote")
        os.kill(min(live.api_worker_pids()), signal.SIGTERM)  # a rolling restart: one worker
        traffic.wait_for(20, "the other worker and the new one answer")
        wait_until(lambda: time.monotonic() - started >= TRAFFIC_SECONDS, TRAFFIC_SECONDS,
                   f"{TRAFFIC_SECONDS} s of traffic", interval=0.5)
    ids = [answer.request_id for answer in traffic.answers]
    return Rollout(traffic, moves, PredictionLog(live.project.state / "predictions").logged_rows(ids),
                   reloaded, taken_by)


def test_a_hup_reload_and_rolling_restarts_fail_no_request(rollout):
    assert rollout.traffic.failures == []
    assert len(rollout.traffic.answers) > 200


def test_the_old_workers_answer_while_a_reloads_new_workers_start(rollout):
    """On a HUP the old workers go on serving until a new one is ready (its app and model loaded:
    seconds), so no request waits for the new ones."""
    assert rollout.taken_by in rollout.reloaded


def test_every_answered_row_is_in_the_prediction_log(rollout):
    missing = [a.request_id for a in rollout.traffic.answers if rollout.logged.get(a.request_id) != ROWS]
    assert missing == [], f"{len(missing)} of {len(rollout.traffic.answers)} answers not fully logged"


def test_the_served_version_never_goes_back(rollout):
    """Once a response naming a move's version has been received, no request sent later is answered
    by an earlier one (requests under way at the same instant are not ordered)."""
    moves, answers = rollout.moves, sorted(rollout.traffic.answers, key=lambda a: a.received)

    def phase(answer: Answer) -> int:  # the latest move to this version made before it was sent
        return max(n for n, (made, version) in enumerate(moves)
                   if version == answer.version and made <= answer.sent)

    phases = [phase(a) for a in answers]
    assert set(phases) == set(range(len(moves))), "every move served"
    received = [a.received for a in answers]
    highest, going_back = [], []
    for value in phases:
        highest.append(max(value, highest[-1]) if highest else value)
    for answer, value in zip(answers, phases, strict=True):
        seen = bisect.bisect_left(received, answer.sent)  # answers received before this was sent
        if seen and highest[seen - 1] > value:
            going_back.append((answer, highest[seen - 1]))
    assert going_back == [], f"{len(going_back)} answers went back, the first: {going_back[:3]}"


# -- workers of one deployment, in this process ----------------------------------------------------

def model_versions(model: str, suffix: str, tmp_path: Path, count: int = 2) -> tuple[str, object]:
    """A model of its own (not the one the live server follows) with versions 1 (the champion) to
    `count`, all `model`'s version 1, and a database of switches for the Champions of one test."""
    name = f"{model}-{suffix}"
    source = registry.client().get_model_version(model, "1")
    for _ in range(count):
        registry.register(source.source, name, source.run_id, dict(source.tags))
    registry.promote(name, "1")
    return name, db.connect(f"sqlite:///{tmp_path / 'switches.db'}")


def test_a_worker_started_while_a_switch_is_pending_serves_the_old_version_until_it(live, tmp_path):
    """Two Champions on one database are two workers; the second starts after a move was recorded,
    before its instant. It answers with the old version, and once the first answers with the new
    one, so does it. A rollback is a move of its own."""
    params = live.project.params
    name, engine = model_versions(params.registry.model_name, "switch", tmp_path)

    def worker() -> Champion:
        return Champion(name, params.schema, 0, engine=engine, lead_seconds=3.0)

    first = worker()
    assert first.get().version == "1"
    for before, after, move in (("1", "2", lambda: registry.promote(name, "2")),
                                ("2", "1", lambda: registry.rollback(name))):
        move()
        assert first.refresh() is True  # the new version loaded, its switch recorded
        assert first.get().version == before
        fresh = worker()
        assert fresh.get().version == before  # not the alias's: the switch is pending
        wait_until(lambda after=after: first.get().version == after, 30,
                   f"the first worker serves version {after}", interval=0.01)
        assert fresh.get().version == after
    engine.dispose()



def test_a_worker_still_loading_the_new_version_at_its_instant_answers_with_no_older_one(live, tmp_path):
    """Both workers load a newly promoted version; the second is slower than the move's lead. From
    the instant the first serves it on, the second's requests wait for its load: none gets the old
    version."""
    params = live.project.params
    name, engine = model_versions(params.registry.model_name, "slow", tmp_path)
    loads_version_2 = threading.Event()

    class SlowToLoad(Champion):
        def _load(self, version):
            if version == "2":
                assert loads_version_2.wait(120)
            return super()._load(version)

    first, slow = (kind(name, params.schema, 0, engine=engine, lead_seconds=3.0, wait_seconds=90)
                   for kind in (Champion, SlowToLoad))
    assert first.get().version == slow.get().version == "1"
    registry.promote(name, "2")
    with concurrent.futures.ThreadPoolExecutor(2) as pool, contextlib.ExitStack() as cleanup:
        cleanup.callback(loads_version_2.set)  # a failed assertion does not leave the load waiting
        following = pool.submit(slow.refresh)  # loads version 2 until the event is set
        assert first.refresh() is True  # loaded, and the move recorded 3 s ahead
        wait_until(lambda: first.get().version == "2", 30, "the first worker serves version 2",
                   interval=0.01)
        assert slow.ready() is None  # due, still loading: the fast path leaves it to the route
        answer = pool.submit(slow.get)  # the route's request waits for the load
        assert concurrent.futures.wait([answer, following], timeout=1).done == set()  # both wait
        loads_version_2.set()
        assert answer.result(timeout=60).version == "2"
        assert following.result(timeout=60) is True
    assert slow.get().version == "2" and first.get().version == "2"
    engine.dispose()


def test_a_worker_whose_watcher_missed_the_move_reads_it_in_the_request(live, tmp_path):
    """The second worker never refreshes (its watcher blocked, say): once the first serves the new
    version, the second's next request reads the recorded move itself and waits for that version."""
    params = live.project.params
    name, engine = model_versions(params.registry.model_name, "missed", tmp_path)
    first, missing = (Champion(name, params.schema, 0, engine=engine, lead_seconds=2.0, wait_seconds=90)
                      for _ in range(2))
    assert first.get().version == missing.get().version == "1"
    registry.promote(name, "2")
    assert first.refresh() is True  # loaded, and the move recorded 2 s ahead
    wait_until(lambda: first.get().version == "2", 30, "the first worker serves version 2", interval=0.01)
    assert missing.get().version == "2"  # never refreshed: the request read the move and waited
    engine.dispose()

def test_a_worker_that_failed_a_due_version_never_answers_with_the_one_before(live, tmp_path):
    """The second worker cannot load version 2 (its watcher blocked meanwhile): once 2 is due, its
    requests get a 503. When version 3 is promoted, until 3's instant they still do; none gets
    version 1, which 2 replaced everywhere."""
    params = live.project.params
    name, engine = model_versions(params.registry.model_name, "failed", tmp_path, count=3)

    class CannotLoad2(Champion):
        def _load(self, version):
            if version == "2":
                raise OSError("the artifact of version 2 is unreadable here")
            return super()._load(version)

    first = Champion(name, params.schema, 0, engine=engine, lead_seconds=6.0)
    broken = CannotLoad2(name, params.schema, 0, engine=engine, lead_seconds=2.0, wait_seconds=30)
    assert first.get().version == broken.get().version == "1"
    registry.promote(name, "2")
    assert first.refresh() is True
    wait_until(lambda: first.get().version == "2", 30, "the first worker serves version 2", interval=0.01)
    with pytest.raises(APIError, match="version 2 of the model is not served yet") as refused:
        broken.get()  # its request read the due move and waited for a load that failed
    assert refused.value.status == 503

    registry.promote(name, "3")
    assert first.refresh() is True  # version 3 everywhere in 6 s
    answers = []

    def answered_with_3() -> bool:
        try:
            answers.append(broken.get().version)
        except APIError as error:
            answers.append(error.status)
        return answers[-1] == "3"

    wait_until(answered_with_3, 60, "the second worker serves version 3", interval=0.05)
    assert first.get().version == "3"
    assert "1" not in answers and set(answers) == {503, "3"}, answers
    engine.dispose()


def test_a_newer_move_read_while_the_due_version_still_loads_keeps_its_requests_waiting(live, tmp_path):
    """The second worker is still loading version 2, due, when its watcher reads the move to 3:
    until 3's instant its requests wait for 2 (and get it once loaded), never get version 1."""
    params = live.project.params
    name, engine = model_versions(params.registry.model_name, "overtaken", tmp_path, count=3)
    loads_version_2 = threading.Event()

    class SlowToLoad2(Champion):
        def _load(self, version):
            if version == "2":
                assert loads_version_2.wait(120)
            return super()._load(version)

    first = Champion(name, params.schema, 0, engine=engine, lead_seconds=4.0)
    slow = SlowToLoad2(name, params.schema, 0, engine=engine, lead_seconds=2.0, wait_seconds=90)
    assert first.get().version == slow.get().version == "1"
    registry.promote(name, "2")
    with concurrent.futures.ThreadPoolExecutor(4) as pool, contextlib.ExitStack() as cleanup:
        cleanup.callback(loads_version_2.set)
        assert first.refresh() is True
        wait_until(lambda: first.get().version == "2", 30, "the first worker serves version 2",
                   interval=0.01)
        waiting = pool.submit(slow.get)  # reads the due move, waits for the load of 2
        wait_until(lambda: slow._next is not None and slow._next.version == "2", 30,
                   "the second worker loads version 2", interval=0.01)
        registry.promote(name, "3")
        assert first.refresh() is True  # version 3 everywhere in 4 s
        assert slow.refresh() is True  # its watcher: version 3 loaded for its instant
        assert slow.ready() is None  # still waiting for 2: the fast path leaves it to the route
        later = pool.submit(slow.get)
        assert concurrent.futures.wait([waiting, later], timeout=0.5).done == set()  # both wait
        loads_version_2.set()
        assert {waiting.result(timeout=60).version, later.result(timeout=60).version} <= {"2", "3"}
        answers = []
        wait_until(lambda: answers.append(slow.get().version) or answers[-1] == "3", 60,
                   "the second worker serves version 3", interval=0.05)
        assert "1" not in answers, answers
    engine.dispose()


# -- a stop (last: it leaves the server stopped) ---------------------------------------------------

def test_a_stop_answers_every_request_already_sent(live):
    """Each worker is busy with a request whose body is still coming, six more requests wait in the
    listening socket's queue, and the server is told to stop: all eight are answered."""
    up(live)
    head, body = _predict_request(live.record)
    workers, busy, queued = live.api_worker_pids(), [], []
    try:
        for _ in workers:
            sock = socket.create_connection(("127.0.0.1", live.port), timeout=60)
            busy.append(sock)
            sock.sendall(head + body[:10])
            live.accepted_by(sock, workers, timeout=BOOT_SECONDS)
        for _ in range(6):
            queued.append(socket.create_connection(("127.0.0.1", live.port), timeout=60))
            queued[-1].sendall(head + body)
        listener = _listening_inode(live.port)
        assert listener
        live.api.send_signal(signal.SIGTERM)
        # the master closes its listening socket, then tells the workers to stop
        wait_until(lambda: not _holds(live.api.pid, listener), 30,
                   "gunicorn's master closes its listening socket", interval=0.01)
        for sock in busy:
            sock.sendall(body[10:])
        with concurrent.futures.ThreadPoolExecutor(len(busy + queued)) as pool:
            answers = list(pool.map(_answer_and_close, busy + queued))
    finally:
        for sock in busy + queued:
            sock.close()
        if live.api.poll() is None:
            live.api.send_signal(signal.SIGTERM)
        live.api.wait(timeout=60)  # a test after this one starts it again (`up`)
    assert [status for status, _, _ in answers] == [200] * 8
    log = live.tail("api.log", 100_000)  # each exited by itself (one killed says nothing)
    assert [pid for pid in workers if f"Worker exiting (pid: {pid})" not in log] == []
    ids = [json.loads(answer)["request_id"] for _, _, answer in answers]
    logged = PredictionLog(live.project.state / "predictions").logged_rows(ids)
    assert logged == dict.fromkeys(ids, ROWS)


def test_a_stop_sent_to_the_whole_process_group_lets_every_worker_exit_by_itself(live):
    """systemd (KillMode=control-group) and `kill -TERM -<pgid>` signal the workers with the master:
    a worker told to stop while the master still listens hands over, and ends once it has stopped
    listening, rather than be killed at graceful_timeout."""
    up(live)
    workers = live.api_worker_pids()
    os.killpg(live.api.pid, signal.SIGTERM)
    live.api.wait(timeout=60)
    log = live.tail("api.log", 100_000)
    assert [pid for pid in workers if f"Worker exiting (pid: {pid})" not in log] == []


def test_gunicorns_master_imports_none_of_the_api(tmp_path):
    """The settings file loads as gunicorn loads it, and its hooks run, without importing the API or
    Flask into the master: each worker a HUP starts then imports the code as it is on disk."""
    conf = Path(__file__).resolve().parents[1] / "control_api" / "gunicorn_conf.py"
    script = (
        "import importlib.util, sys, types\n"
        f"spec = importlib.util.spec_from_file_location('__config__', {str(conf)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "module.on_starting(None)\n"
        "module.child_exit(types.SimpleNamespace(pid=1), types.SimpleNamespace(pid=999999))\n"
        "from gunicorn.util import load_class\n"
        "print(load_class(module.worker_class).__name__)  # as gunicorn resolves it\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('control_api', 'monitoring', 'flask', 'werkzeug', 'sklearn', 'mlflow')))\n")
    env = {**os.environ, "OPCON_HOME": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "p")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env=env, check=True)
    assert done.stdout.split("\n")[:2] == ["ApiWorker", "[]"]
