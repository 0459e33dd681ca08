"""A CSV batch scored in one pass over the uploaded file, a chunk of rows at a time.

Each chunk is checked, scored, logged (one Parquet file for the request, its rows numbered across the
chunks) and written out to a spooled file; a thread writes one chunk out while the next is read and
scored. The log file joins the prediction log, and the answer goes out, only once every row passed.
From the first problem on, the rows are only checked, so that the refusal lists every problem (with
counts and first row numbers); a refused batch leaves nothing in the log and counts nothing.

Memory holds a couple of chunks (CHUNK_ROWS rows each) whatever the file's size.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa

from control_api import csv_input
from control_api.csv_output import CsvWriter, JsonWriter
from control_api.errors import APIError, invalid
from control_api.validation import Problems, feature_columns, header_problems

SPOOL_IN_MEMORY_BYTES = 1 << 20  # a small answer stays in memory, a large one goes to a file
CHUNK_ROWS = 50_000  # rows scored at a time (at least)


@dataclasses.dataclass
class Scored:
    request_id: str
    served_by: str
    rows: int
    body: BinaryIO  # at its start
    size: int
    logged: Path  # the batch's file in the prediction log


def output_names(served, explain: int = 0) -> list[str]:
    """The columns a scored CSV adds: label, label text, the probability (or one per class), and
    with `explain` its strongest reasons."""
    if served.positive_index is not None:
        names = ["label", "label_text", "probability"]
    else:
        names = ["label", "label_text", *(f"probability_{klass}" for klass in served.classes)]
    return [f"prediction_{name}" for name in [*names, *(f"reason_{i}" for i in range(1, explain + 1))]]


def reason_columns(served, chunk_columns: dict, codes: np.ndarray, explain: int) -> dict[str, pa.Array]:
    """`reason_1` .. `reason_<explain>`: a row's strongest contributions (SHAP, the served model's own),
    each as `feature = value (+0.123)` towards the class it was given."""
    from ml.explanations import reasons

    schema = served.schema
    frame = pd.DataFrame({name: np.asarray(chunk_columns[name]) for name in schema.feature_names})
    explained = served.explainer().explain(frame, codes.astype(np.int64))
    names = [str(c) for c in served.classes]
    found = reasons(explained, frame, schema, [names[c] for c in codes], top=explain)
    return {f"reason_{i + 1}": pa.array([_short(row[i]) if i < len(row) else None for row in found],
                                        pa.string()) for i in range(explain)}


def _short(reason: dict) -> str:
    value = reason["value"]
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{reason['feature']} = {shown} ({reason['contribution']:+.3f})"


def outputs(served, proba: np.ndarray) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Per-row outputs as Arrow columns (label, text, the probability or one per class), and each
    row's class as its position in `served.classes` (a million rows make no million objects)."""
    codes = pd.Categorical(served.labels(proba), categories=served.classes).codes
    positions = pa.array(codes)
    target = served.schema.target
    out = {"label": pa.array(served.classes).take(positions),
           "label_text": pa.array([target.label(c) for c in served.classes], pa.string()).take(positions)}
    if served.positive_index is not None:
        out["probability"] = pa.array(proba[:, served.positive_index])
    else:
        for index, klass in enumerate(served.classes):
            out[f"probability_{klass}"] = pa.array(proba[:, index])
    return out, codes


def score_upload(stream: BinaryIO, served, log, metrics, *, max_rows: int, onnx_max_rows: int,
                 as_json: bool, raw: bool, explain: int = 0, max_explained_rows: int = 100_000) -> Scored:
    """Every row checked against the schema, scored, logged under one request id and written out
    (with `explain`, its strongest reasons too); raises the 422 (or 413) that says why not, having
    logged nothing."""
    schema = served.schema
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 - the answer reads it
    try:
        names, refused = _checked_header(stream, served, explain)
        missing = {p["field"] for p in refused if p["problem"] == "column is missing"}
        writer = JsonWriter(body) if as_json else CsvWriter(body, names, output_names(served, explain),
                                                                raw=raw)
        request_id, problems, rows = str(uuid.uuid4()), Problems(schema), 0
        per_class, model_seconds, served_by = np.zeros(len(served.classes), np.int64), 0.0, None
        with log.batch(request_id, served.version) as logged, \
                ThreadPoolExecutor(1, thread_name_prefix="batch-writer") as writing:

            def write_out(chunk: pa.RecordBatch, columns: dict, proba: np.ndarray, path: str) -> None:
                result, codes = outputs(served, proba)
                logged.write({**columns, **{name: chunk.column(name) for name in schema.categorical},
                              **result}, path)
                if explain:
                    result.update(reason_columns(served, columns, codes, explain))
                writer.write(chunk, {f"prediction_{k}": v for k, v in result.items()})
                per_class[:] += np.bincount(codes, minlength=len(per_class))

            pending = None
            # a chunk holds more rows than the ONNX limit: a request with more rows than that has
            # them all scored on one path, whichever chunk is scored
            chunk_rows = max(CHUNK_ROWS, onnx_max_rows + 1)
            for chunk, last in _with_last(csv_input.chunks(stream, names, chunk_rows)):
                columns = feature_columns(chunk, schema, problems, rows + 1, skip=missing)
                rows += chunk.num_rows
                _within_limits(rows, max_rows, max_explained_rows if explain else None)
                if refused or problems:
                    continue  # refused: the rest is only checked
                started = time.perf_counter()
                # the request's size chooses the model's path; before the last chunk, `rows + 1` is
                # on the same side of the limit as the request (the chunk is larger than it)
                proba, served_by = served.predict_proba(columns, rows if last else rows + 1)
                model_seconds += time.perf_counter() - started
                if pending is not None:
                    pending.result()  # one chunk waits to be written at most: memory stays bounded
                pending = writing.submit(write_out, chunk, columns, proba, served_by)
            if pending is not None:
                pending.result()
            if not rows:
                raise invalid([{"field": "file", "problem": "the CSV has a header but no data rows"}])
            if refused or problems:
                raise invalid(refused + problems.as_list(), "the CSV has invalid rows or columns")
            writer.close()
            logged.commit()
        # each class's label as text, as many times as it was predicted: what observe counts
        labels = np.repeat(np.array([str(c) for c in served.classes]), per_class)
        metrics.observe(served.version, served_by, labels, model_seconds)
        size = body.tell()
        body.seek(0)
        return Scored(request_id, served_by, rows, body, size, logged.final)
    except csv_input.UnreadableCSVError as error:
        body.close()
        raise invalid([{"field": "file", "problem": str(error)}]) from None
    except BaseException:
        body.close()
        raise


def _within_limits(rows: int, max_rows: int, max_explained_rows: int | None) -> None:
    if rows > max_rows:
        raise APIError(413, f"more than {max_rows} rows: the limit is {max_rows}")
    if max_explained_rows is not None and rows > max_explained_rows:
        raise APIError(413, f"more than {max_explained_rows} rows to explain: explain takes at most "
                            f"{max_explained_rows}; send smaller files")


def _checked_header(stream: BinaryIO, served, explain: int) -> tuple[list[str], list[dict]]:
    """The file's column names, and what is wrong with them: a missing feature, an input column the
    outputs would overwrite (the rows are still checked, so the refusal lists every problem). A
    name given twice is a 422 at once: which of the two a cell belongs to is unknown."""
    names = csv_input.header(stream)
    problems = header_problems(names, served.schema)
    duplicated = [p for p in problems if p["problem"].startswith("duplicate")]
    if duplicated:
        raise invalid(duplicated, duplicated[0]["problem"])
    problems += [{"field": name, "problem": "the output would overwrite this input column; rename it"}
                 for name in output_names(served, explain) if name in names]
    return names, problems


def _with_last(chunks: Iterator) -> Iterator[tuple]:
    """(chunk, whether it is the last one): each chunk once the next one is read."""
    previous = None
    for chunk in chunks:
        if previous is not None:
            yield previous, False
        previous = chunk
    if previous is not None:
        yield previous, True
