"""Data versions: the raw data's DVC versions, and appending a validated labelled batch to it.

The version of the data is the one its DVC pointer (`<raw>.dvc`) names; a version is described
(rows, class balance, validation) once, when it first appears, and read from the database after.

A batch is validated a chunk of rows at a time (Great Expectations on each chunk; ID uniqueness over
the whole file from the ID columns alone), so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from control_api import csv_input, csv_output
from control_api.db import data_versions, row_dict
from ml.errors import DataError
from ml.params import Params
from ml.schema import Schema
from ml.tables import read_csv
from ml.validation import ValidationReport, validate_frame
from ml.versioning import data_version, pointer_version

CHUNK_ROWS = 50_000  # rows per Great Expectations run
UNIQUE = "expect_column_values_to_be_unique"
ROW_EXPECTATIONS = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
                    "expect_column_values_to_be_in_type_list", "expect_column_values_to_be_between"}


class BatchRejectedError(Exception):
    def __init__(self, report: ValidationReport, stage: str):
        super().__init__(report.summary())
        self.report, self.stage = report, stage


class DuplicateColumnError(DataError):
    """A header that names a column twice (a reader would rename one copy, `name.1`)."""

    def __init__(self, names: list[str]):
        super().__init__("; ".join(f"duplicate column `{name}`" for name in names))
        self.names = names


def uploads_dir(state_dir: Path) -> Path:
    """Where uploaded batches wait for their `dataset_upload` job (never in the project)."""
    return state_dir / "uploads"


def upload_path(state_dir: Path, job_id: str) -> Path:
    return uploads_dir(state_dir) / f"{job_id}.csv"


def current_version(project: Path, params: Params) -> str | None:
    """The data version the DVC pointer names (the pointer is read; the data is not)."""
    return pointer_version(project / params.dataset.raw)


def _describe(frame: pd.DataFrame, params: Params) -> dict:
    balance = frame[params.schema.target.name].value_counts(normalize=True).sort_index()
    return {"rows": len(frame), "class_balance": {str(k): round(float(v), 6) for k, v in balance.items()}}


def _stored(engine: sa.Engine, md5: str) -> dict | None:
    with engine.connect() as conn:
        found = conn.execute(sa.select(data_versions).where(data_versions.c.md5 == md5)).first()
    return None if found is None else row_dict(found)


def record(engine: sa.Engine, project: Path, params: Params, source: str, *,
           validation: dict | None = None, frame: pd.DataFrame | None = None) -> dict | None:
    """Remember the version the pointer names, once per md5. The data is read only for a version
    not recorded yet, and only when the workspace holds that version (None otherwise).
    `frame`: the data already in memory (it is the pointer's version)."""
    raw = project / params.dataset.raw
    md5 = pointer_version(raw)
    if md5 is None:
        return None
    if (found := _stored(engine, md5)) is not None:
        return found
    if frame is None:
        if data_version(raw) != md5:
            return None  # the workspace holds other data than the pointer names: nothing to describe
        frame = pd.read_csv(raw, usecols=[params.schema.target.name])  # all that is described
    if validation is None:
        path = project / "data" / "validation.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        validation = ({"success": report["success"], "failures": report.get("failures", [])}
                      if report.get("data_version") == md5 else {"success": None, "failures": []})
    row = {"md5": md5, "path": params.dataset.raw, **_describe(frame, params),
           "created_at": datetime.now(UTC), "validation": validation, "source": source,
           "pointer": Path(f"{raw}.dvc").read_text()}
    try:
        with engine.begin() as conn:
            conn.execute(data_versions.insert().values(**row))
    except sa.exc.IntegrityError:
        pass  # another worker recorded it first
    return row


def listing(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(data_versions).order_by(data_versions.c.created_at.desc()))
        return [row_dict(r) for r in rows]


def check_upload(project: Path, params: Params, upload: Path) -> int:
    """Validate a stored batch on its own, then with the data; returns its rows. Raises DataError
    for a file that is not a readable CSV (DuplicateColumnError for a header naming a column twice),
    BatchRejectedError for failed expectations (the batch's, else those of the data with it)."""
    schema = params.schema
    names = _header(upload)
    if repeated := csv_input.duplicates(names):
        raise DuplicateColumnError(repeated)
    failures, rows, ids = _chunk_failures(upload, schema)
    failures += _duplicated(ids)
    if failures:
        raise BatchRejectedError(ValidationReport(False, rows, failures, []), "batch")
    failures, raw_rows, raw_ids = _chunk_failures(project / params.dataset.raw, schema)
    failures += _duplicated({c: raw_ids[c] + ids[c] for c in raw_ids if c in ids})
    if failures:
        raise BatchRejectedError(ValidationReport(False, raw_rows + rows, failures, []),
                                 "data with the batch")
    return rows


def checked_batch(project: Path, params: Params, upload: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the batch, the data with it) in memory, once `check_upload` passed."""
    check_upload(project, params, upload)
    schema = params.schema
    batch = read_csv(upload, schema)
    merged = pd.concat([read_csv(project / params.dataset.raw, schema), batch[schema.columns]],
                       ignore_index=True)
    return batch, merged


def _header(path: Path) -> list[str]:
    with open(path, "rb") as stream:
        try:
            return csv_input.header(stream)
        except csv_input.UnreadableCSVError as error:
            raise DataError(f"`{path}`: {error}") from None


def _chunks(path: Path, schema: Schema) -> Iterator[pd.DataFrame]:
    """The file's rows CHUNK_ROWS at a time, read as ml.tables.read_csv reads a whole file."""
    try:
        with pd.read_csv(path, dtype={c: str for c in schema.categorical}, encoding="utf-8",
                         chunksize=CHUNK_ROWS) as reader:
            yield from reader
    except UnicodeDecodeError:
        raise DataError(f"`{path}` is not a UTF-8 CSV file (binary or another encoding)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"`{path}` is not a readable CSV file: {error}") from None


def _chunk_failures(path: Path, schema: Schema) -> tuple[list[dict], int, dict[str, list[pa.Array]]]:
    """The schema's expectations (but ID uniqueness) on each chunk of a file, its rows, and its ID
    columns' values (a few bytes a row). A failure is listed once; in a file of several chunks, a
    failure about values says which rows its count is of."""
    found: dict[tuple, dict] = {}
    rows, ids = 0, {}
    for index, chunk in enumerate(_chunks(path, schema)):
        if index:
            _give_back_memory()  # what the previous chunk's validation used
        for failure in validate_frame(chunk, schema).failures:
            if failure["expectation"] == UNIQUE:
                continue  # over the whole file: _duplicated
            entry = found.setdefault((failure["column"], failure["expectation"]),
                                     {**failure, "rows": (rows + 1, rows + len(chunk)), "chunks": 0})
            entry["chunks"] += 1
        for column in schema.id_columns:
            if column in chunk.columns:
                ids.setdefault(column, []).append(pa.array(chunk[column], from_pandas=True))
        rows += len(chunk)
    failures = []
    for entry in found.values():
        (first, last), chunks = entry.pop("rows"), entry.pop("chunks")
        if rows > CHUNK_ROWS and entry["expectation"] in ROW_EXPECTATIONS:
            more = f"; {chunks - 1} later chunk(s) of {CHUNK_ROWS:,} rows too" if chunks > 1 else ""
            entry["message"] += f" (in rows {first:,} to {last:,}{more})"
        failures.append(entry)
    return failures, rows, ids


def _give_back_memory() -> None:
    """What validating a chunk used, returned before the next: Great Expectations leaves reference
    cycles that hold the chunk until a full collection, and glibc keeps freed memory unless asked."""
    gc.collect()
    if (trim := getattr(_libc(), "malloc_trim", None)) is not None:
        trim(0)


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to ask
        return None


def _duplicated(ids: dict[str, list[pa.Array]]) -> list[dict]:
    """ID values found more than once (empty cells aside), as the schema's uniqueness expectation
    reports them. A column that is numbers in every chunk compares as numbers (`7` is `7.0`), one
    that is text anywhere as text, as pandas reads the whole column."""
    failures = []
    for column, parts in ids.items():
        numeric = all(pa.types.is_integer(p.type) or pa.types.is_floating(p.type) for p in parts)
        keys = pa.concat_arrays([p.cast(pa.float64() if numeric else pa.string()) for p in parts])
        keys = keys.drop_null()
        ordered = keys.take(pc.array_sort_indices(keys))  # sorted: equal values side by side
        repeated = pc.unique(ordered[1:].filter(pc.equal(ordered[1:], ordered[:-1])))
        if not len(repeated):
            continue
        involved = pc.is_in(keys, value_set=repeated)
        examples = pc.unique(keys.filter(involved))[:3].to_pylist()
        shown = ", ".join(f"{int(v)}" if numeric and v.is_integer() else repr(v) for v in examples)
        failures.append({"column": column, "expectation": UNIQUE, "message": f"column `{column}`: "
                         f"{pc.sum(involved).as_py()} duplicated ID value(s) (e.g. {shown})"})
    return failures


def append_batch(project: Path, params: Params, upload: Path,
                 track: Callable[[str], None]) -> None:
    """The raw file with a checked batch's rows after its own, then `track(target)` (DVC add and
    push). The data's rows stay byte for byte; the batch's follow in the raw file's column order,
    cells as they came. Any failure puts the raw file and its DVC pointer back as they were. The
    caller holds the DVC lock."""
    raw = project / params.dataset.raw

    def stage(staged: Path) -> None:
        columns = _header(raw)
        shutil.copyfile(raw, staged)
        with open(staged, "rb+") as out, open(upload, "rb") as batch:
            if not _ends_a_line(out):
                out.write(b"\n")
            for block in csv_input.blocks(batch, _header(upload), columns):
                out.write(csv_output.lines(list(block.columns)))

    _replace(raw, stage, params.dataset.raw, track)


def _ends_a_line(out) -> bool:
    """Whether the file ends with a line break; the stream is left at its end."""
    size = out.seek(0, 2)
    if not size:
        return True
    out.seek(size - 1)
    return out.read(1) in (b"\n", b"\r")


def replace_raw(project: Path, params: Params, merged: pd.DataFrame,
                track: Callable[[str], None]) -> None:
    """Write the data with the batch as the raw file, then `track(target)` (DVC add and push).
    Any failure puts the raw file and its DVC pointer back as they were. The caller holds the DVC
    lock."""
    _replace(project / params.dataset.raw,
             lambda staged: merged.to_csv(staged, index=False, lineterminator="\n"),
             params.dataset.raw, track)


def _replace(raw: Path, stage: Callable[[Path], None], target: str,
             track: Callable[[str], None]) -> None:
    pointer = Path(f"{raw}.dvc")
    with tempfile.TemporaryDirectory(dir=raw.parent) as tmp:
        backup_raw, backup_pointer = Path(tmp) / "raw", Path(tmp) / "pointer"
        shutil.copy2(raw, backup_raw)
        shutil.copy2(pointer, backup_pointer)
        staged = Path(tmp) / "staged.csv"
        stage(staged)
        try:
            staged.replace(raw)
            track(target)
        except BaseException:
            shutil.copy2(backup_raw, raw)
            shutil.copy2(backup_pointer, pointer)
            raise
