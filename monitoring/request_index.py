"""Which request ids the prediction log holds, and how many rows each: a SQLite file in the log's
directory, so that looking a request up costs the same however large the log grows.

An append hands its request to the index (PredictionLog); a thread of the process writes what was
handed over in one transaction every FLUSH_SECONDS, from as many processes as write the log
(SQLite's lock; WAL, so readers never wait): a transaction per prediction would cost more than the
model, and a request would wait for the disk whenever SQLite checkpoints. A
request's entry counts its rows, which the log numbers 0..n-1: (request_id, row) is logged exactly
when row < n.

What the index covers of each log file is kept too: so many bytes of a JSON-lines segment, all of
a Parquet file. `refresh()` indexes whatever lies beyond: a missing index file is rebuilt from the
whole log that way, and so is what is not written yet (handed to another process's index, lost
with a process that died, or refused by a locked database). A lookup that does not find every id
refreshes first, so a request is found the moment its rows are in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from filelock import FileLock

from monitoring import log_files

log = logging.getLogger("opcon.prediction_log")

INDEX_NAME = "requests.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (request_id TEXT PRIMARY KEY, rows INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS covered (file TEXT PRIMARY KEY, bytes INTEGER NOT NULL DEFAULT 0,
                                    complete INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
"""
UPSERT = ("INSERT INTO requests (request_id, rows) VALUES (?, ?) ON CONFLICT (request_id) "
          "DO UPDATE SET rows = max(rows, excluded.rows)")
QUERY_CHUNK = 500  # ids per SELECT ... IN (...)
BUSY_TIMEOUT_S = 5.0
FLUSH_SECONDS = 0.5  # how often the process's thread writes what was handed over
FLUSH_ENTRIES = 20_000  # more waiting than this (the thread is behind): the append writes them


class RequestIndex:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / INDEX_NAME
        self._build_lock = FileLock(self.directory / f"{INDEX_NAME}.lock")
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._opened: tuple[int, int] | None = None  # (pid, inode) of the open connection
        self._built = False
        self._pending: list[tuple[str, int, str, int, int]] = []  # handed over, not written yet
        self._pending_pid = os.getpid()

    # -- the connection ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """This process's connection to the index file there now (a new one when it was replaced)."""
        if self._connection is None or self._opened != (os.getpid(), _inode(self.path)):
            if self._connection is not None and self._opened[0] == os.getpid():
                self._connection.close()
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # as durable as the log: no fsync
            connection.executescript(SCHEMA)
            self._connection, self._built = connection, False
            self._opened = (os.getpid(), os.stat(self.path).st_ino)
        return self._connection

    @contextlib.contextmanager
    def _transaction(self):
        with self._lock:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------------
    def record_segment(self, request_id: str, rows: int, segment: Path, start: int, end: int) -> None:
        """A request whose rows are bytes [start, end) of a JSON-lines segment, handed over in the
        order of its bytes; written with the others waiting at most FLUSH_SECONDS later."""
        with self._lock:
            if self._pending_pid != os.getpid():  # a forked process writes only its own
                self._pending, self._pending_pid = [], os.getpid()
            first = not self._pending
            self._pending.append((request_id, rows, segment.stem, start, end))
            behind = len(self._pending) >= FLUSH_ENTRIES
        if first:
            _WRITER.watch(self)
        if behind:
            self.flush()

    def flush(self) -> None:
        """Write the entries handed over so far, in one transaction."""
        with self._lock:
            waiting, self._pending = self._pending, []
        if not waiting:
            return
        try:
            with self._transaction() as connection:
                connection.executemany(UPSERT, [(request_id, rows) for request_id, rows, *_ in waiting])
                connection.executemany("INSERT OR IGNORE INTO covered (file) VALUES (?)",
                                       [(stem,) for stem in dict.fromkeys(e[2] for e in waiting)])
                # only contiguous coverage moves the mark: a gap stays for refresh() to fill
                connection.executemany("UPDATE covered SET bytes = ? WHERE file = ? AND bytes = ?",
                                       _runs(waiting))
        except sqlite3.Error as error:
            log.warning("prediction log index not updated (%s); lookups read the log's rows instead",
                        type(error).__name__)

    def record_file(self, request_id: str, rows: int, path: Path) -> None:
        """A request that is the whole of a Parquet file."""
        try:
            with self._transaction() as connection:
                connection.execute(UPSERT, (request_id, rows))
                connection.execute("INSERT INTO covered (file, complete) VALUES (?, 1) ON CONFLICT (file) "
                                   "DO UPDATE SET complete = 1", (path.stem,))
        except sqlite3.Error as error:
            log.warning("prediction log index not updated (%s); lookups read the log's rows instead",
                        type(error).__name__)

    # -- reading -----------------------------------------------------------------------------------
    def rows(self, request_ids: Iterable[str]) -> dict[str, int]:
        """{request id: its number of logged rows} for the ids the log holds."""
        wanted = list(dict.fromkeys(request_ids))
        self._ensure_built()
        self.flush()
        found = self._query(wanted)
        if len(found) < len(wanted):
            self.refresh()
            found = self._query(wanted)
        return found

    def _query(self, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        with self._lock:
            connection = self._connect()
            for first in range(0, len(ids), QUERY_CHUNK):
                chunk = ids[first:first + QUERY_CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(connection.execute(
                    f"SELECT request_id, rows FROM requests WHERE request_id IN ({marks})", chunk))
        return found

    def _ensure_built(self) -> None:
        """A new index file (none before, or deleted) covers the whole log before it answers."""
        if self._built and self._opened == (os.getpid(), _inode(self.path)):
            return
        with self._lock:
            built = self._connect().execute("SELECT value FROM meta WHERE key = 'built'").fetchone()
        if built is None:
            with self._build_lock:  # one process builds; the others wait, then find it built
                with self._lock:
                    built = self._connect().execute(
                        "SELECT value FROM meta WHERE key = 'built'").fetchone()
                if built is None:
                    self.refresh()
                    with self._transaction() as connection:
                        connection.execute("INSERT OR REPLACE INTO meta VALUES ('built', '1')")
        self._built = True

    # -- catching up with the log ------------------------------------------------------------------
    def refresh(self) -> int:
        """Index whatever part of the log the index does not cover; returns the rows read."""
        with self._lock:
            covered = {file: (done, complete) for file, done, complete in
                       self._connect().execute("SELECT file, bytes, complete FROM covered")}
        names = set(os.listdir(self.directory))
        read = 0
        for name in sorted(names):
            stem, suffix = os.path.splitext(name)
            done, complete = covered.get(stem, (0, 0))
            if suffix == ".parquet" and not complete:
                read += self._cover_parquet(self.directory / name)
            elif (suffix == ".jsonl" and log_files.SEGMENT.match(name)
                  and f"{stem}.parquet" not in names):
                read += self._cover_segment(self.directory / name, done)
        return read

    def _cover_parquet(self, path: Path) -> int:
        try:
            table = pq.read_table(path, columns=["request_id", "row"])
        except FileNotFoundError:
            return 0
        self._store(table, path.stem, "INSERT INTO covered (file, complete) VALUES (?, 1) "
                    "ON CONFLICT (file) DO UPDATE SET complete = 1", (path.stem,))
        return table.num_rows

    def _cover_segment(self, path: Path, done: int) -> int:
        try:
            with open(path, "rb") as handle:
                handle.seek(done)
                data = handle.read()
        except FileNotFoundError:  # compacted meanwhile: its Parquet copy is covered next time
            return 0
        data = data[:data.rfind(b"\n") + 1]
        if not data:
            return 0
        table = _requests_of_lines(data)
        self._store(table, path.stem, "UPDATE covered SET bytes = ? WHERE file = ? AND bytes = ?",
                    (done + len(data), path.stem, done))
        return table.num_rows

    def _store(self, table: pa.Table, stem: str, mark: str, arguments: tuple) -> None:
        """The requests of `table` (request_id, row) and the mark of what it covered, in one step."""
        counts = []
        if table.num_rows and {"request_id", "row"} <= set(table.column_names):
            grouped = table.select(["request_id", "row"]).group_by("request_id").aggregate(
                [("row", "max")])
            counts = [(str(request_id), int(last) + 1) for request_id, last in
                      zip(grouped["request_id"].to_pylist(), grouped["row_max"].to_pylist(), strict=True)
                      if request_id is not None and last is not None]
        with self._transaction() as connection:
            connection.executemany(UPSERT, counts)
            connection.execute("INSERT OR IGNORE INTO covered (file) VALUES (?)", (stem,))
            connection.execute(mark, arguments)


def _runs(entries: list[tuple[str, int, str, int, int]]) -> list[tuple[int, str, int]]:
    """(end, file, start) of each run of entries whose bytes follow each other in one file."""
    runs: list[list] = []
    for _, _, stem, start, end in entries:
        if runs and runs[-1][1] == stem and runs[-1][0] == start:
            runs[-1][0] = end
        else:
            runs.append([end, stem, start])
    return [tuple(run) for run in runs]


class _Writer:
    """The one thread of a process that writes every index's waiting entries (started by the
    first append of the process: a forked worker starts its own)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._indexes: weakref.WeakSet = weakref.WeakSet()
        self._pid: int | None = None

    def watch(self, index: RequestIndex) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._indexes = os.getpid(), weakref.WeakSet()
                threading.Thread(target=self._run, name="request-index-writer", daemon=True).start()
            self._indexes.add(index)

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            with self._lock:
                indexes = list(self._indexes)
                self._indexes.clear()  # an index with nothing waiting is watched again when it has
            for index in indexes:
                index.flush()


_WRITER = _Writer()
_REQUEST_COLUMNS = pa.schema([("request_id", pa.string()), ("row", pa.int64())])


def _requests_of_lines(data: bytes) -> pa.Table:
    """The request_id and row of whole JSON lines (a torn one, from a crash, left out)."""
    options = pa_json.ParseOptions(explicit_schema=_REQUEST_COLUMNS, unexpected_field_behavior="ignore")
    try:
        return pa_json.read_json(pa.BufferReader(data), parse_options=options,
                                 read_options=pa_json.ReadOptions(block_size=8 << 20))
    except pa.ArrowInvalid:
        rows = []
        for line in data.splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                if isinstance(found := orjson.loads(line), dict):
                    rows.append({"request_id": found.get("request_id"), "row": found.get("row")})
        return pa.Table.from_pylist(rows, schema=_REQUEST_COLUMNS)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
