"""Uploaded CSV files read as they are: the header, then blocks of rows with every cell as text.

Cells stay text so that a column passed through comes back exactly as it was sent; the feature
columns are converted by control_api.validation. A file is read in blocks of `BLOCK_BYTES` (Arrow's
streaming reader, which reads several blocks ahead: small blocks keep that small), so memory does
not grow with the file, and a stream can be read more than once.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pa_csv

BLOCK_BYTES = 512 << 10  # about 9,000 rows of a dozen short columns
HEADER_BYTES = 1 << 20  # a header row longer than this is not one
FIELD_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")


class UnreadableCSVError(ValueError):
    """The upload is not a CSV that can be read; the message is safe to show (it quotes no data)."""


def header(stream: BinaryIO) -> list[str]:
    """The column names of the first non-empty row; the stream is put back at its start."""
    stream.seek(0)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        for row in csv.reader(_limited(text)):
            if row:
                return row
    except UnicodeDecodeError:
        raise UnreadableCSVError("not UTF-8 text: upload a CSV file") from None
    except csv.Error:
        raise UnreadableCSVError("the header row is not readable CSV") from None
    finally:
        text.detach()
        stream.seek(0)
    raise UnreadableCSVError("the file is empty: expected a CSV with a header row")


def _limited(text: io.TextIOWrapper) -> Iterator[str]:
    read = 0
    for line in text:
        read += len(line)
        if read > HEADER_BYTES:
            raise UnreadableCSVError(f"no header row in the first {HEADER_BYTES:,} characters")
        yield line


def duplicates(names: list[str]) -> list[str]:
    """Names given to more than one column, in the order they first appear."""
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for name in names:
        if name in seen:
            repeated[name] = None
        seen.add(name)
    return list(repeated)


def blocks(stream: BinaryIO, names: list[str], columns: list[str] | None = None
           ) -> Iterator[pa.RecordBatch]:
    """The data rows from the start of the stream, a block at a time, cells as text (an empty cell
    is ""). `names` is the file's header (unique names); `columns` limits what is converted."""
    stream.seek(0)
    convert = pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                    include_columns=columns, strings_can_be_null=False,
                                    quoted_strings_can_be_null=False)
    rows = 0
    try:
        # newlines_in_values: a quoted cell may hold CR or LF; the file is then split into
        # blocks on row boundaries, not on any line break
        reader = pa_csv.open_csv(stream, read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
                                 parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                                 convert_options=convert)
        if columns is None and reader.schema.names != names:
            raise UnreadableCSVError("the header row could not be read consistently")
        for batch in reader:
            rows += batch.num_rows
            yield batch
    except pa.ArrowInvalid as error:
        raise UnreadableCSVError(_explain(str(error), rows)) from None


def chunks(stream: BinaryIO, names: list[str], rows: int) -> Iterator[pa.RecordBatch]:
    """`blocks` joined into batches of at least `rows` rows (the last one may be shorter): fewer,
    larger calls where a call has a cost of its own (the model's)."""
    waiting: list[pa.RecordBatch] = []
    count = 0
    for block in blocks(stream, names):
        waiting.append(block)
        count += block.num_rows
        if count >= rows:
            yield _joined(waiting)
            waiting, count = [], 0
    if waiting:
        yield _joined(waiting)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.RecordBatch.from_arrays(
        [pa.concat_arrays([b.column(i) for b in batches]) for i in range(batches[0].num_columns)],
        schema=batches[0].schema)


def _explain(message: str, rows_before: int) -> str:
    """Arrow's error in words that quote none of the file (its messages repeat the bad row)."""
    where = f" (after data row {rows_before:,})" if rows_before else ""
    if "UTF8" in message or "UTF-8" in message:
        return f"not UTF-8 text{where}: upload a CSV file"
    if (found := FIELD_COUNT.search(message)) is not None:
        expected, got = found.groups()
        return f"a row has {got} field(s) where the header has {expected}{where}"
    if "straddl" in message:  # a row longer than a block
        return f"a row is longer than {BLOCK_BYTES:,} bytes{where}"
    if "Empty CSV" in message:
        return "the file is empty: expected a CSV with a header row"
    return f"not a readable CSV file{where}"
