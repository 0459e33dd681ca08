"""The files of the prediction log: what each holds (time bounds), reading a few columns, compaction."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import socket
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

SEGMENT = re.compile(r"^rows-(?:(?P<host>.+)-)?(?P<pid>\d+)-(?P<start>\d+)\.jsonl$")
# a row's time is taken just before its segment may be created: the name can be a bit later
START_SLACK_S = 1.0


@dataclasses.dataclass
class LogFile:
    path: Path
    oldest: float  # no row is older (epoch seconds)
    newest: float  # no row is newer

    @property
    def is_segment(self) -> bool:
        return self.path.suffix == ".jsonl"

    def overlaps(self, since: float | None, until: float | None) -> bool:
        return (since is None or self.newest >= since) and (until is None or self.oldest < until)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The file's rows as a table of `columns` (those it has), or of every column."""
        if self.is_segment:
            try:
                table = read_segment(self.path)
            except FileNotFoundError:  # compacted meanwhile
                table = pq.read_table(self.path.with_suffix(".parquet"))
            return table if columns is None else table.select([c for c in columns
                                                               if c in table.column_names])
        names = pq.read_schema(self.path).names
        return pq.read_table(self.path, columns=None if columns is None
                             else [c for c in columns if c in names])


def concat(tables: list[pa.Table]) -> pa.Table:
    """One table from tables with different column sets: a column a file lacks is null there; one
    with different types in different files (text and numbers) becomes text."""
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return pa.table({})
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        types: dict[str, set] = {}
        for table in tables:
            for field in table.schema:
                types.setdefault(field.name, set()).add(field.type)
        clashing = {name for name, found in types.items() if len(found - {pa.null()}) > 1}
        tables = [t.cast(pa.schema([pa.field(f.name, pa.string()) if f.name in clashing else f
                                    for f in t.schema])) for t in tables]
        return pa.concat_tables(tables, promote_options="permissive")


def _parquet_entry(path: Path) -> LogFile | None:
    try:
        metadata = pq.read_metadata(path)
        stat = path.stat()
    except FileNotFoundError:
        return None
    oldest, newest = -math.inf, stat.st_mtime
    names = metadata.schema.names
    if "ts" in names and metadata.num_row_groups:
        index = names.index("ts")
        bounds = [metadata.row_group(g).column(index).statistics for g in range(metadata.num_row_groups)]
        if all(s is not None and s.has_min_max for s in bounds):
            oldest = min(s.min for s in bounds)
            newest = max(s.max for s in bounds)
    return LogFile(path, oldest, newest)


def _segment_entry(path: Path) -> LogFile | None:
    match = SEGMENT.match(path.name)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return LogFile(path, int(match["start"]) / 1e9 - START_SLACK_S, mtime)


def listing(directory: Path) -> list[LogFile]:
    """Every file holding rows; a segment that has a Parquet copy is left out (the copy counts)."""
    names = set(os.listdir(directory))
    entries = []
    for name in sorted(names):
        if name.endswith(".parquet"):
            entry = _parquet_entry(directory / name)
        elif SEGMENT.match(name) and name.removesuffix(".jsonl") + ".parquet" not in names:
            entry = _segment_entry(directory / name)
        else:
            continue
        if entry is not None:
            entries.append(entry)
    return entries


def read_segment(path: Path) -> pa.Table:
    """A JSON-lines segment as a table; a line still being written is left for the next read."""
    with open(path, "rb") as handle:
        data = handle.read()
    data = data[:data.rfind(b"\n") + 1]
    if not data:
        return pa.table({})
    try:
        return pa_json.read_json(pa.BufferReader(data),
                                 read_options=pa_json.ReadOptions(block_size=8 << 20))
    except pa.ArrowInvalid:  # a torn line from a crash: keep every line that parses
        import orjson

        rows = []
        for line in data.splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                rows.append(orjson.loads(line))
        return pa.Table.from_pylist(rows)


def host_name() -> str:
    """This machine (or container) as it appears in segment names."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _alive(host: str | None, pid: int) -> bool:
    """Whether a writer may still be running. Another host's processes cannot be seen from here:
    their segments are sealed only by rotation."""
    if host not in (None, host_name()):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sealed_segments(directory: Path) -> list[Path]:
    """Segments no process writes to any more: all but the newest of each writer (host, pid), and
    the newest of a writer of this host that is gone. (A reused pid only delays compaction: its
    new process starts a newer segment.)"""
    newest: dict[tuple[str | None, int], tuple[int, Path]] = {}
    sealed = []
    for name in os.listdir(directory):
        match = SEGMENT.match(name)
        if not match:
            continue
        writer, entry = (match["host"], int(match["pid"])), (int(match["start"]), directory / name)
        if writer in newest:
            sealed.append(min(newest[writer], entry)[1])
            newest[writer] = max(newest[writer], entry)
        else:
            newest[writer] = entry
    sealed += [path for (host, pid), (_, path) in newest.items() if not _alive(host, pid)]
    return sealed


def compact(directory: Path) -> int:
    """Parquet copies of sealed segments, renamed into place, then the segments removed.
    Safe to run in several processes at once: each step is idempotent."""
    done = 0
    for path in sealed_segments(directory):
        target = path.with_suffix(".parquet")
        if not target.exists():
            try:
                table = read_segment(path)
            except FileNotFoundError:
                continue
            if table.num_rows:
                partial = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
                pq.write_table(table, partial)
                os.replace(partial, target)
                done += 1
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return done
