"""The prediction log as files: rotation, windows (last N, time range) across JSON-lines segments and
batch Parquet files, compaction of sealed segments, and what a crash can leave behind."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid

import orjson
import pandas as pd
import pytest

from ml.config import REPO_ROOT
from monitoring import log_files, request_index
from monitoring.prediction_log import PredictionLog


def rows(count: int, start: int = 0) -> list[dict]:
    return [{"x": float(start + i), "kind": "ab"[i % 2], "label": i % 2, "probability": 0.5}
            for i in range(count)]


@pytest.fixture
def log(tmp_path) -> PredictionLog:
    return PredictionLog(tmp_path / "predictions", segment_bytes=4_000)


def fill(log: PredictionLog, requests: int = 12, per_request: int = 10) -> list[str]:
    """Requests of JSON lines, with a batch file in the middle; returns the request ids in order."""
    ids = []
    for index in range(requests):
        ids.append(str(uuid.uuid4()))
        if index == requests // 2:
            log.append_frame(ids[-1], "1", "sklearn", pd.DataFrame(rows(per_request, index * per_request)))
        else:
            log.append(ids[-1], "1", "onnx", rows(per_request, index * per_request))
        time.sleep(0.002)  # distinct timestamps per request
    return ids


def test_segments_rotate_and_every_row_reads_back_in_order(log):
    fill(log)
    segments = [f for f in log.files() if f.is_segment]
    assert len(segments) >= 3  # 4,000-byte segments
    frame = log.read()
    assert frame["x"].tolist() == [float(i) for i in range(120)]
    assert frame["ts"].is_monotonic_increasing
    assert set(frame.columns) >= {"request_id", "row", "ts", "model_version", "served_by", "x", "kind"}


def test_last_rows_and_time_ranges_read_only_what_they_need(log):
    ids = fill(log)
    last = log.read(["x"], last=25)
    assert last["x"].tolist() == [float(i) for i in range(95, 120)]
    assert list(last.columns) == ["ts", "x"]
    everything = log.read(["x", "request_id"])
    stamps = everything.groupby("request_id")["ts"].first()
    since, until = stamps[ids[3]], stamps[ids[8]]
    window = log.read(["x"], since=since, until=until)
    assert window["x"].tolist() == [float(i) for i in range(30, 80)]  # until is exclusive
    assert log.read(["x"], last=1_000)["x"].size == 120
    assert log.read(["x"], since=time.time() + 60).empty


def test_requests_given_column_wise_read_back_as_if_appended_one_by_one(tmp_path):
    """The shadow log's write: several requests' rows in one call, numbered per request."""
    shadow = PredictionLog(tmp_path / "shadow", indexed=False)
    shadow.append_columns([("a", 2), ("b", 1)], "2", "onnx",
                          {"x": [0.1, 0.2, 0.3], "label": [1, 0, 1], "shadow": [True] * 3})
    frame = shadow.read(["request_id", "row", "model_version", "served_by", "x", "label", "shadow"])
    assert frame[["request_id", "row", "x", "label"]].to_dict(orient="list") == {
        "request_id": ["a", "a", "b"], "row": [0, 1, 0], "x": [0.1, 0.2, 0.3], "label": [1, 0, 1]}
    assert set(frame["model_version"]) == {"2"} and set(frame["served_by"]) == {"onnx"}
    assert frame["shadow"].all()
    with pytest.raises(ValueError, match="one request a write"):
        PredictionLog(tmp_path / "served").append_columns([("a", 1)], "1", "onnx", {"x": [1.0]})


def test_a_column_a_file_lacks_reads_as_missing(log):
    log.append("a", "1", "onnx", [{"x": 1.0, "threshold": 0.3}])
    log.append_frame("b", "1", "sklearn", pd.DataFrame({"x": [2.0]}))
    frame = log.read(["x", "threshold"])
    assert frame["x"].tolist() == [1.0, 2.0]
    assert frame["threshold"].iloc[0] == 0.3 and pd.isna(frame["threshold"].iloc[1])


def test_compaction_keeps_every_row_once_and_leaves_the_live_segment(log):
    fill(log)
    before = log.read()
    live = max((f for f in log.files() if f.is_segment), key=lambda f: f.oldest)
    converted = log.compact()
    assert converted >= 2
    remaining = [f for f in log.files() if f.is_segment]
    assert [f.path for f in remaining] == [live.path]  # this process still writes it
    after = log.read()
    pd.testing.assert_frame_equal(after[before.columns], before, check_dtype=False)
    assert log.compact() == 0  # nothing more to do
    log.append("late", "1", "onnx", rows(1))  # the live segment still takes rows
    assert log.read(["x"], last=1)["x"].tolist() == [0.0]


def test_a_finished_process_segment_is_sealed_and_compacted(log):
    code = ("import sys; from monitoring.prediction_log import PredictionLog; "
            f"PredictionLog(sys.argv[1]).append('gone', '1', 'onnx', {rows(5)!r})")
    subprocess.run([sys.executable, "-c", code, str(log.directory)], cwd=REPO_ROOT, check=True)
    assert [f.path.suffix for f in log.files()] == [".jsonl"]
    assert log.compact() == 1
    assert [f.path.suffix for f in log.files()] == [".parquet"]
    assert log.find("gone")["row"].tolist() == [0, 1, 2, 3, 4]


def test_a_torn_line_is_left_out_and_a_removed_segment_is_replaced(log):
    log.append("first", "1", "onnx", rows(3))
    segment = next(f.path for f in log.files() if f.is_segment)
    with open(segment, "ab") as handle:
        handle.write(b'{"request_id": "torn", "x": 1')  # a write cut short
    assert log.read()["request_id"].tolist() == ["first"] * 3
    segment.unlink()  # e.g. compacted by a worker that could not see this process
    log.append("second", "1", "onnx", rows(2))
    assert log.read()["request_id"].tolist() == ["second"] * 2


def test_segment_names_carry_host_and_pid(log):
    log.append("a", "1", "onnx", rows(1))
    name = next(f.path.name for f in log.files() if f.is_segment)
    match = log_files.SEGMENT.match(name)
    assert match["host"] == log_files.host_name() and int(match["pid"]) > 0


# -- the index of request ids ----------------------------------------------------------------------

APPENDER = """
import sys, uuid
import pandas as pd
from monitoring.prediction_log import PredictionLog
log = PredictionLog(sys.argv[1], segment_bytes=4_000)
for index in range(int(sys.argv[2])):
    request_id = str(uuid.uuid4())
    if index % 5 == 0:
        log.append_frame(request_id, "1", "sklearn", pd.DataFrame({"x": [float(i) for i in range(7)]}))
        print(request_id, 7)
    else:
        log.append(request_id, "1", "onnx", [{"x": float(i)} for i in range(index % 4 + 1)])
        print(request_id, index % 4 + 1)
"""


def appended_by_processes(directory, processes: int = 2, requests: int = 60) -> dict[str, int]:
    """Several processes appending at once; {request id: rows} of all they logged."""
    running = [subprocess.Popen([sys.executable, "-c", APPENDER, str(directory), str(requests)],
                                cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    logged = {}
    for process in running:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        logged |= {request_id: int(rows) for request_id, rows in
                   (line.split() for line in output.splitlines())}
    assert len(logged) == processes * requests
    return logged


def test_requests_appended_by_two_processes_at_once_are_found_by_id(log):
    logged = appended_by_processes(log.directory)
    assert log.logged_rows(logged) == logged
    assert log.logged_rows(["no-such-request", "other"]) == {}
    some = next(iter(logged))
    assert log.logged_rows([some, "no-such-request", some]) == {some: logged[some]}
    assert log.index.refresh() == 0  # the index covers the whole log now: nothing left to read
    frame = log.read(["request_id", "row"])
    assert frame.groupby("request_id")["row"].max().add(1).to_dict() == logged  # what the log holds


def test_a_missing_index_is_rebuilt_from_the_log(log):
    logged = appended_by_processes(log.directory)
    log.append("here", "1", "onnx", rows(3))  # this process's live segment
    log.compact()
    for path in log.directory.glob("requests.sqlite*"):
        path.unlink()
    fresh = PredictionLog(log.directory)
    assert fresh.logged_rows([*logged, "here", "unknown"]) == {**logged, "here": 3}
    assert (log.directory / "requests.sqlite").is_file()
    log.append("after", "1", "onnx", rows(2))  # the old object notices the new file and writes there
    assert fresh.logged_rows(["after"]) == {"after": 2}


def test_rows_a_dead_process_did_not_index_are_found_by_the_next_lookup(log):
    log.append("seen", "1", "onnx", rows(1))
    assert log.logged_rows(["seen"]) == {"seen": 1}  # the index is built and in use
    # what a writer that died before its index entries were written leaves (a pid no process has)
    stranger = log.directory / f"rows-{log_files.host_name()}-999999999-1.jsonl"
    stranger.write_bytes(b"".join(orjson.dumps({"request_id": "lost", "row": i, "ts": time.time(),
                                                "x": 1.0}) + b"\n" for i in range(4)))
    assert log.logged_rows(["lost", "seen"]) == {"lost": 4, "seen": 1}  # the miss read the segment
    assert log.index.refresh() == 0  # and the index now covers it: nothing left to read
    assert log.compact() == 1  # the worker's periodic task converts the dead writer's segment...
    assert log.logged_rows(["lost", "seen"]) == {"lost": 4, "seen": 1}  # ...found all the same


def _written(directory) -> set[str]:
    indexed = sqlite3.connect(directory / "requests.sqlite")
    try:
        return {request_id for (request_id,) in indexed.execute("SELECT request_id FROM requests")}
    finally:
        indexed.close()


def test_the_process_thread_writes_what_appends_handed_over(log):
    log.append("first", "1", "onnx", rows(2))
    log.logged_rows(["first"])  # the index is built and in use
    log.append("handed-over", "1", "onnx", rows(3))
    deadline = time.monotonic() + 30
    while "handed-over" not in _written(log.directory):  # no lookup: the writer thread's doing
        assert time.monotonic() < deadline, "the index writer did not write the entry"
        time.sleep(0.05)
    assert log.index.refresh() == 0  # its coverage mark moved with it: nothing left to read


def test_appends_are_indexed_in_one_transaction_later_and_found_at_once(log, monkeypatch):
    monkeypatch.setattr(request_index._WRITER, "watch", lambda index: None)  # no writer thread
    log.append("first", "1", "onnx", rows(2))
    log.logged_rows(["first"])  # the index is built and in use
    log.append("waiting", "1", "onnx", rows(3))
    indexed = sqlite3.connect(log.directory / "requests.sqlite")
    try:
        def written() -> set:
            return {r for (r,) in indexed.execute("SELECT request_id FROM requests")}

        assert "waiting" not in written()  # handed over, not written: no transaction per prediction
        assert log.logged_rows(["waiting"]) == {"waiting": 3}  # this process's lookup writes it first
        assert "waiting" in written()
        other = PredictionLog(log.directory)  # another process's view: it never saw the hand-over
        log.append("unwritten", "1", "onnx", rows(4))
        assert other.logged_rows(["unwritten"]) == {"unwritten": 4}  # its miss read the segment
    finally:
        indexed.close()


def test_an_index_write_that_fails_is_caught_up_by_the_next_lookup(log, monkeypatch):
    log.append("before", "1", "onnx", rows(2))
    assert log.logged_rows(["before"]) == {"before": 2}  # the index is built and in use
    monkeypatch.setattr(request_index, "BUSY_TIMEOUT_S", 0.05)
    blocked = PredictionLog(log.directory)  # connects with the short timeout
    holder = sqlite3.connect(log.directory / "requests.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        blocked.append("while-locked", "1", "onnx", rows(3))
        blocked.index.flush()  # refused by the lock: the entry is dropped, the rows stay logged
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert log.read()["request_id"].tolist().count("while-locked") == 3  # the rows were logged
    assert log.logged_rows(["while-locked", "before"]) == {"while-locked": 3, "before": 2}
