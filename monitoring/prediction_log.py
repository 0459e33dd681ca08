"""The prediction log: every answered prediction, append-only, read by drift monitoring and feedback.

Layout under its directory: one JSON-lines segment per writing process (`rows-<pid>-<start>.jsonl`,
one line per predicted row) and one Parquet file per batch request (`batch-<request id>.parquet`).

Durability: a row is handed to the kernel (`os.write` on an O_APPEND file, or a Parquet file renamed
into place) before the response is sent, so killing the process right after loses nothing. Without
fsync, a machine crash can lose the rows of the last few seconds that the kernel had not flushed.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import orjson
import pandas as pd

META_COLUMNS = ["request_id", "row", "ts", "model_version", "served_by"]


class PredictionLog:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._pid: int | None = None

    def _segment(self) -> int:
        if self._pid != os.getpid():  # a forked worker gets its own segment
            path = self.directory / f"rows-{os.getpid()}-{time.time_ns()}.jsonl"
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._pid = os.getpid()
        return self._fd

    def append(self, request_id: str, model_version: str, served_by: str,
               rows: list[dict]) -> None:
        """Log rows of one request; each row holds its features and outputs."""
        stamp = time.time()
        lines = [orjson.dumps({"request_id": request_id, "row": i, "ts": stamp,
                               "model_version": model_version, "served_by": served_by, **row},
                              option=orjson.OPT_SERIALIZE_NUMPY)
                 for i, row in enumerate(rows)]
        os.write(self._segment(), b"\n".join(lines) + b"\n")

    def append_frame(self, request_id: str, model_version: str, served_by: str,
                     frame: pd.DataFrame) -> None:
        """Log a batch as one Parquet file, renamed into place once complete."""
        logged = frame.copy()
        logged.insert(0, "served_by", served_by)
        logged.insert(0, "model_version", model_version)
        logged.insert(0, "ts", time.time())
        logged.insert(0, "row", range(len(frame)))
        logged.insert(0, "request_id", request_id)
        final = self.directory / f"batch-{request_id}.parquet"
        partial = final.with_suffix(f".{uuid.uuid4().hex}.tmp")
        logged.to_parquet(partial, index=False)
        os.replace(partial, final)

    def read(self) -> pd.DataFrame:
        """Every logged row, oldest first."""
        parts = []
        for path in sorted(self.directory.glob("rows-*.jsonl")):
            if path.stat().st_size:
                parts.append(pd.read_json(path, lines=True, dtype=False))
        parts += [pd.read_parquet(path) for path in sorted(self.directory.glob("batch-*.parquet"))]
        if not parts:
            return pd.DataFrame(columns=META_COLUMNS)
        return pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable",
                                                                ignore_index=True)

    def find(self, request_id: str) -> pd.DataFrame:
        frame = self.read()
        return frame[frame["request_id"] == request_id]
