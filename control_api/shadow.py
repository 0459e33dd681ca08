"""The challenger on live traffic: every /predict request is also scored by the registry's
`challenger`, off the response path, and logged in the shadow log under the challenger's version.

A request only appends its feature columns to a deque (no lock, no I/O, no model call). One
thread per worker takes what has gathered, scores it with the challenger in one call, and appends
the rows to the shadow log in one write: the prediction log's row layout plus `shadow: true`, no
request index. A CSV batch hands over the path of its logged Parquet file once it is answered; the
thread reads the features back from it a block at a time and writes the challenger's rows as one
Parquet file of the shadow log. A failure there is counted and kept for the status; it never
reaches a request. What is still waiting when a worker dies is not shadowed (it was served and
logged as usual). The thread's own CPU time is counted (`cpu_seconds`,
opcon_shadow_cpu_seconds_total): what shadowing costs a worker, beside the hand-over in the request.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from control_api import batch_scoring, serving
from ml import config as ml_config
from ml import registry
from ml.schema import Schema
from monitoring.prediction_log import PredictionLog

log = logging.getLogger(__name__)
RETRY_FAILED_LOAD_SECONDS = 60.0
QUEUE_LIMIT = 10_000  # requests waiting to be shadowed; beyond it a request is skipped and counted
DRAIN = 256  # requests scored in one model call at most (larger groups run out of cache: slower per row)
# after the first request of a quiet spell, the thread waits this long for more: one wake-up, model
# call and write per group of requests instead of per request (the worker's CPU serves meanwhile)
GATHER_SECONDS = 0.25


class Shadow:
    def __init__(self, name: str, schema: Schema, shadow_log: PredictionLog, *, enabled: bool,
                 poll_seconds: float, onnx_max_rows: int = 2_000, max_batch_rows: int = 100_000):
        self.name, self.schema, self.log = name, schema, shadow_log
        self.max_batch_rows = max_batch_rows
        self.enabled, self.poll_seconds, self.onnx_max_rows = enabled, poll_seconds, onnx_max_rows
        self.metrics = None  # monitoring.metrics.ServiceMetrics, set by create_app
        self.model: serving.ServedModel | None = None
        self.rows = self.failures = self.skipped = 0
        self.cpu_seconds = 0.0
        self.last_error: str | None = None  # of scoring
        self.load_error: str | None = None  # of the last registry read or load, until one succeeds
        self._waiting: collections.deque = collections.deque()  # append/popleft: atomic, no lock
        self._asleep = False  # the thread waits for work: the next hand-over wakes it
        self._wake = threading.Event()
        self._busy = False  # the thread holds requests it took off the deque
        self._idle = threading.Condition()  # notified after each group of requests (drain)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._refreshed = 0.0
        self._load_tried: tuple[str, float] | None = None  # a load not done yet: (version, begun)

    # -- per request: one queue put ------------------------------------------------------------
    def submit(self, request_id: str, served_version: str, columns: dict[str, np.ndarray],
               rows: int) -> None:
        self._put((request_id, served_version, columns, rows))

    def submit_batch(self, request_id: str, served_version: str, logged: Path) -> None:
        """A batch answered and logged in `logged` (its Parquet file in the prediction log)."""
        self._put((request_id, served_version, logged, None))

    def _put(self, item: tuple) -> None:
        if not self.enabled:
            return
        if self._thread is None:
            self.start()
        if len(self._waiting) >= QUEUE_LIMIT:
            self.skipped += 1
            return
        self._waiting.append(item)
        if self._asleep:
            self._wake.set()

    # -- the shadow thread ---------------------------------------------------------------------
    def start(self) -> None:
        with self._start_lock:
            if self._thread is None and self.enabled:
                self._thread = ml_config.thread(self._run, name="shadow-scorer")
                self._thread.start()

    def _run(self) -> None:
        cpu_mark = time.thread_time()
        while True:
            self._sleep_until_work()
            if self._waiting and len(self._waiting) < DRAIN:
                time.sleep(GATHER_SECONDS)
            self._busy = True
            waiting = [self._waiting.popleft() for _ in range(min(len(self._waiting), DRAIN))]
            if time.monotonic() - self._refreshed >= self.poll_seconds:
                self.refresh()
            rows = [item for item in waiting if item[3] is not None]
            if rows:
                self._score(rows)
            for request_id, served_version, logged, _ in (i for i in waiting if i[3] is None):
                self._score_batch(request_id, served_version, logged)
            cpu_mark = self._count_cpu(cpu_mark)
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _sleep_until_work(self) -> None:
        """Until a hand-over wakes the thread, or the challenger is due to be looked up again."""
        if self._waiting:
            return
        self._asleep = True  # set before the check: a hand-over after it sees it and wakes us
        if not self._waiting:
            due = self._refreshed + (self.poll_seconds or 1.0) - time.monotonic()
            self._wake.wait(max(due, 0.0))
        self._asleep = False
        self._wake.clear()

    def _count_cpu(self, mark: float) -> float:
        now = time.thread_time()
        self.cpu_seconds += now - mark
        if self.metrics is not None:
            self.metrics.shadow_cpu.inc(now - mark)
        return now

    def _score(self, waiting: list[tuple]) -> None:
        """The queued requests scored together (one model call, one log write)."""
        model = self.model
        waiting = [item for item in waiting if model is not None and item[1] != model.version]
        if not waiting:
            return  # no challenger, or it is the version that answered
        names = self.schema.feature_names
        try:
            columns = {n: np.concatenate([item[2][n] for item in waiting]) for n in names}
            rows = sum(item[3] for item in waiting)
            proba, path = model.predict_proba(columns, rows)
            values = {**{n: columns[n].tolist() for n in names},
                      **{n: v.tolist() for n, v in model.outputs(proba).items()}, "shadow": [True] * rows}
            self.log.append_columns([(item[0], item[3]) for item in waiting], model.version, path, values)
        except Exception as error:  # the challenger is under test: its faults are reported, not raised
            self._failed(model, len(waiting), error)
            return
        self._scored(model, rows)

    def _score_batch(self, request_id: str, served_version: str, logged: Path) -> None:
        """A logged batch scored from its file, a block at a time, into one file of the shadow log
        (rows numbered as in the served batch): its first `max_batch_rows` rows."""
        model = self.model
        if model is None or model.version == served_version or self.max_batch_rows == 0:
            return
        names = self.schema.feature_names
        try:
            with pq.ParquetFile(logged) as source, self.log.batch(request_id, model.version) as shadowed:
                rows = min(source.metadata.num_rows, self.max_batch_rows)  # chooses the model's path
                left = rows
                for whole in source.iter_batches(batch_size=batch_scoring.CHUNK_ROWS, columns=names):
                    if left <= 0:
                        break
                    block, left = whole.slice(0, left), left - whole.num_rows
                    columns = {n: block.column(n).to_numpy(zero_copy_only=False) for n in names}
                    proba, path = model.predict_proba(columns, rows)
                    result, _ = batch_scoring.outputs(model, proba)
                    shadowed.write({**{n: block.column(n) for n in names}, **result,
                                    "shadow": pa.repeat(pa.scalar(True), block.num_rows)}, path)
                shadowed.commit()
        except Exception as error:  # a fault of the challenger, or the batch's file gone meanwhile
            self._failed(model, 1, error)
            return
        self._scored(model, rows)

    def _failed(self, model: serving.ServedModel, requests: int, error: Exception) -> None:
        self.failures += requests
        self.last_error = f"{type(error).__name__}: {str(error)[:200]}"
        log.warning("the challenger (version %s) failed on %d request(s): %s", model.version,
                    requests, type(error).__name__)
        if self.metrics is not None:
            self.metrics.shadow_failures.inc(requests)

    def _scored(self, model: serving.ServedModel, rows: int) -> None:
        self.rows += rows
        if self.metrics is not None:
            self.metrics.shadow_rows.labels(model_version=model.version).inc(rows)

    def refresh(self) -> None:
        """Follow the `challenger` alias (None when there is none). Once it names another version,
        the one loaded before shadows no more, also while the new one cannot be loaded."""
        self._refreshed = time.monotonic()
        try:
            found = registry.challenger(self.name)
        except Exception as error:  # keep the challenger we have; the served answers do not depend on it
            self.load_error = f"could not read the challenger: {str(error)[:200]}"
            log.warning("challenger refresh failed: %s", type(error).__name__)
            return
        version = None if found is None else str(found.version)
        if self.model is not None and self.model.version != version:
            self.model = None
        if version is None:
            self.load_error = None
        elif self.model is None and self._may_load(version):
            try:
                self.model = serving.load(self.name, version, self.schema, self.onnx_max_rows)
            except Exception as error:  # its requests are not shadowed; tried again after a while
                self.load_error = f"could not load the challenger: {str(error)[:200]}"
                log.warning("challenger version %s failed to load: %s", version, type(error).__name__)
                return
            self._load_tried = self.load_error = None
            log.info("shadowing live traffic with %s version %s", self.name, version)

    def _may_load(self, version: str) -> bool:
        """A version whose load failed is tried again after RETRY_FAILED_LOAD_SECONDS, not at every
        poll (each try reads its artifacts)."""
        tried = self._load_tried
        if tried is not None and tried[0] == version and \
                time.monotonic() - tried[1] < RETRY_FAILED_LOAD_SECONDS:
            return False
        self._load_tried = (version, time.monotonic())  # cleared once it has loaded
        return True

    def drain(self, timeout: float = 30.0) -> bool:
        """Until every submitted request is shadowed (tests, and a clean shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._waiting and not self._busy, timeout)

    def status(self) -> dict:
        model = self.model
        return {"enabled": self.enabled, "challenger_version": model.version if model else None,
                "rows_scored": self.rows, "failures": self.failures, "skipped": self.skipped,
                "cpu_seconds": round(self.cpu_seconds, 3),
                "max_batch_rows": self.max_batch_rows,
                "last_error": self.load_error or self.last_error}
