"""The prediction log: every answered prediction, append-only, read by drift monitoring and feedback.

Layout under its directory: JSON-lines segments per writing process
(`rows-<host>-<pid>-<start ns>.jsonl`,
one line per predicted row, a new segment every `segment_bytes`), one Parquet file per batch request
(`batch-<request id>.parquet`), and Parquet copies of sealed segments (`rows-...parquet`, made by
`compact()`: a segment is sealed once its process moved on to a newer one or is gone).
A batch's file is written a block of rows at a time and renamed into place when complete.

Durability: a row is handed to the kernel (`os.write` on an O_APPEND file, or a Parquet file renamed
into place) before the response is sent, so killing the process right after loses nothing. Without
fsync, a machine crash can lose the rows of the last few seconds that the kernel had not flushed.

Reads take only the columns asked for and skip files outside the window: a Parquet file's `ts`
range is in its metadata; a segment's rows lie between the time in its name and its mtime.
Which request ids it holds is in an index beside it (monitoring.request_index), which each append
hands its request to (written in batches), so a lookup by id reads at most the newest rows.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from monitoring import log_files
from monitoring.log_files import LogFile
from monitoring.request_index import RequestIndex

META_COLUMNS = ["request_id", "row", "ts", "model_version", "served_by"]
SEGMENT_BYTES = 16 * 1024 * 1024  # about 50,000 rows of a dozen columns


class PredictionLog:
    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES, *, indexed: bool = True):
        """`indexed=False`: no request index (a log nobody looks requests up in, the shadow log)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._fd: int | None = None
        self._path: Path | None = None
        self._pid: int | None = None
        self._written = 0
        self._lock = threading.Lock()  # rotation must not close a segment another thread writes
        self.index = RequestIndex(self.directory) if indexed else None

    # -- writing -------------------------------------------------------------------------------
    def _segment(self) -> tuple[int, Path]:
        # a forked worker gets its own segment; a full one is left for compaction, and so is one
        # that compaction removed (it was taken for a dead writer's: another pid namespace)
        if (self._pid != os.getpid() or self._written >= self.segment_bytes
                or os.fstat(self._fd).st_nlink == 0):
            path = self.directory / f"rows-{log_files.host_name()}-{os.getpid()}-{time.time_ns()}.jsonl"
            previous = self._fd if self._pid == os.getpid() else None
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._pid, self._written, self._path = os.getpid(), 0, path
            if previous is not None:
                os.close(previous)
        return self._fd, self._path

    def append(self, request_id: str, model_version: str, served_by: str,
               rows: list[dict]) -> None:
        """Log rows of one request; each row holds its features and outputs."""
        self.append_requests([(request_id, model_version, served_by, rows)])

    def append_requests(self, requests: list[tuple[str, str, str, list[dict]]]) -> None:
        """Log the rows of several requests (request id, model version, served by, rows) in one
        write; the request index, when kept, gets the first only (one request a call when indexed)."""
        if self.index is not None and len(requests) != 1:
            raise ValueError("an indexed log takes one request a write")
        stamp = time.time()
        lines = [orjson.dumps({"request_id": request_id, "row": i, "ts": stamp,
                               "model_version": model_version, "served_by": served_by, **row},
                              option=orjson.OPT_SERIALIZE_NUMPY)
                 for request_id, model_version, served_by, rows in requests
                 for i, row in enumerate(rows)]
        data = b"\n".join(lines) + b"\n"
        with self._lock:  # held while indexing too: a segment's index entries follow its bytes
            fd, path = self._segment()
            os.write(fd, data)
            start, self._written = self._written, self._written + len(data)
            if self.index is not None:
                self.index.record_segment(requests[0][0], len(requests[0][3]), path, start, self._written)

    def append_columns(self, requests: list[tuple[str, int]], model_version: str, served_by: str,
                       columns: dict[str, list]) -> None:
        """Log the rows of several requests, given column-wise (`requests`: each request's id and
        row count, in the order of the rows), in one write; a log without a request index only."""
        if self.index is not None:
            raise ValueError("an indexed log takes one request a write")
        ids = [request_id for request_id, count in requests for _ in range(count)]
        numbers = [i for _, count in requests for i in range(count)]
        constant = {"ts": time.time(), "model_version": model_version, "served_by": served_by}
        keys = ["request_id", "row", *constant, *columns]
        values = [ids, numbers, *([value] * len(ids) for value in constant.values()), *columns.values()]
        data = b"\n".join(orjson.dumps(dict(zip(keys, row, strict=True)))
                          for row in zip(*values, strict=True)) + b"\n"
        with self._lock:
            fd, _ = self._segment()
            os.write(fd, data)
            self._written += len(data)

    def append_frame(self, request_id: str, model_version: str, served_by: str,
                     frame: pd.DataFrame) -> None:
        """Log a batch as one Parquet file, renamed into place once complete."""
        with self.batch(request_id, model_version) as logged:
            logged.write(pa.Table.from_pandas(frame, preserve_index=False), served_by)
            logged.commit()

    def batch(self, request_id: str, model_version: str) -> BatchLog:
        """A batch request logged block by block into one Parquet file, which joins the log only
        at `commit()` (leaving the `with` block without it discards the rows)."""
        return BatchLog(self, request_id, model_version)

    # -- reading -------------------------------------------------------------------------------
    def files(self) -> list[LogFile]:
        return log_files.listing(self.directory)

    def compact(self) -> int:
        """Turn sealed JSON-lines segments into Parquet; returns how many were converted. The
        index then catches up with whatever it missed (the worker runs this every minute)."""
        converted = log_files.compact(self.directory)
        if self.index is not None:
            self.index.refresh()
        return converted

    def read(self, columns: list[str] | None = None, *, since: float | None = None,
             until: float | None = None, last: int | None = None,
             text_as_category: bool = False) -> pd.DataFrame:
        """Logged rows, oldest first: all of them, those with `since <= ts < until` (epoch
        seconds), and/or the `last` N. `columns` limits what is read (`ts` is always there); a
        column a file lacks reads as missing. `text_as_category` gives text columns as pandas
        categoricals, much faster for a million rows of a few distinct values."""
        wanted = None if columns is None else list(dict.fromkeys(["ts", *columns]))
        chosen = [f for f in self.files() if f.overlaps(since, until)]
        if last is not None:
            chosen.sort(key=lambda f: f.newest, reverse=True)
        parts, rows = [], 0
        for index, entry in enumerate(chosen):
            part = _between(entry.read(wanted), since, until)
            parts.append(part)
            rows += part.num_rows
            if (last is not None and rows >= last and index + 1 < len(chosen)
                    and chosen[index + 1].newest < _nth_newest(parts, last)):
                break  # nothing older can be among the last N
        table = log_files.concat(parts)
        if "ts" not in table.column_names:  # an empty log
            return pd.DataFrame(columns=wanted or META_COLUMNS)
        table = table.sort_by("ts")
        if last is not None and table.num_rows > last:
            table = table.slice(table.num_rows - last)
        frame = table.to_pandas(strings_to_categorical=text_as_category)
        for missing in [c for c in wanted or [] if c not in frame.columns]:
            frame[missing] = pd.Series([None] * len(frame), dtype=object)
        return frame if wanted is None else frame[wanted]

    def find(self, request_id: str) -> pd.DataFrame:
        frame = self.read()
        return frame[frame["request_id"] == request_id]

    def logged_rows(self, request_ids) -> dict[str, int]:
        """{request id: how many rows it logged (rows 0..n-1)} for those of `request_ids` logged."""
        return self.index.rows(request_ids)

    def newest(self) -> float | None:
        """The latest time a row may have been logged (epoch seconds), None for an empty log."""
        files = self.files()
        return max((f.newest for f in files), default=None)


class BatchLog:
    """The Parquet file of one batch request, written a block of rows at a time (one row group
    each); rows are numbered 0..n-1 across the blocks, as /feedback addresses them."""

    def __init__(self, log: PredictionLog, request_id: str, model_version: str):
        self.log, self.request_id, self.model_version = log, request_id, model_version
        self.final = log.directory / f"batch-{request_id}.parquet"
        self.partial = self.final.with_suffix(f".{uuid.uuid4().hex}.tmp")
        self.rows = 0
        self._stamp = time.time()
        self._writer = None

    def __enter__(self) -> BatchLog:
        return self

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.partial.unlink(missing_ok=True)  # committed: already renamed

    def write(self, columns: pa.Table | dict, served_by: str) -> None:
        """Rows of features and outputs: a table, or columns (numpy or Arrow arrays of one length);
        the same columns in every block."""
        table = columns if isinstance(columns, pa.Table) else pa.table(columns)
        rows = table.num_rows
        logged = pa.table({
            "request_id": pa.repeat(pa.scalar(self.request_id, pa.string()), rows),
            "row": pa.array(np.arange(self.rows, self.rows + rows, dtype=np.int64)),
            "ts": pa.repeat(pa.scalar(self._stamp, pa.float64()), rows),
            "model_version": pa.repeat(pa.scalar(self.model_version, pa.string()), rows),
            "served_by": pa.repeat(pa.scalar(served_by, pa.string()), rows),
            **{name: table.column(name) for name in table.column_names}})
        if self._writer is None:  # dictionaries for text, statistics for time (what reads use)
            text = [f.name for f in logged.schema if pa.types.is_string(f.type)]
            self._writer = pq.ParquetWriter(self.partial, logged.schema, use_dictionary=text,
                                            write_statistics=["ts"])
        self._writer.write_table(logged.cast(self._writer.schema))
        self.rows += rows

    def commit(self) -> None:
        """The rows join the log: the file is renamed into place, then indexed."""
        if self._writer is None:
            raise ValueError("a batch with no rows is not logged")
        self._writer.close()
        self._writer = None
        os.replace(self.partial, self.final)
        if self.log.index is not None:
            self.log.index.record_file(self.request_id, self.rows, self.final)


def _between(table, since: float | None, until: float | None):
    import pyarrow.compute as pc

    if not table.num_rows or (since is None and until is None):
        return table
    if since is not None:
        table = table.filter(pc.greater_equal(table["ts"], since))
    if until is not None:
        table = table.filter(pc.less(table["ts"], until))
    return table


def _nth_newest(parts: list, n: int) -> float:
    stamps = np.concatenate([p["ts"].to_numpy() for p in parts if p.num_rows])
    return float(np.partition(stamps, len(stamps) - n)[len(stamps) - n])
