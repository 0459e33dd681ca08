"""Scored batches written out a block at a time: CSV for people and spreadsheets, or JSON records.

A cell holding a quote, a comma, CR or LF is quoted (RFC 4180), so a bare CR inside a value cannot
end a row whatever the line ends (LF) are. For spreadsheets, a text cell that starts like a
formula (`=`, `+`, `-`, `@`, tab, CR) gets a leading `'`, as OWASP's CSV-injection guidance says;
a cell that is a plain number (`-2.5`, `+3`) is left as it is. `raw` turns that off.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

LINE_END = "\n"
NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


def _byte_set(members: bytes) -> np.ndarray:
    """A lookup table: `table[byte]` says whether the byte is one of `members`."""
    table = np.zeros(256, dtype=bool)
    table[list(members)] = True
    return table


FORMULA_STARTS = _byte_set(b"=+-@\t\r")
SPECIAL = (b'"', b",", b"\r", b"\n")  # what makes a cell need quotes


def neutralised(text: pa.Array) -> pa.Array:
    """Cells a spreadsheet would take as a formula, with a `'` in front; everything else as it is."""
    offsets, data = _offsets(text), _bytes(text)
    filled = np.flatnonzero(offsets[1:] > offsets[:-1])
    suspects = filled[FORMULA_STARTS[data[offsets[filled]]]]  # by their first byte
    if not len(suspects):
        return text
    numbers = pc.match_substring_regex(text.take(pa.array(suspects)), NUMBER)
    risky = np.zeros(len(text), dtype=bool)
    risky[suspects[~numbers.to_numpy(zero_copy_only=False)]] = True
    if not risky.any():
        return text
    return pc.if_else(pa.array(risky), pc.binary_join_element_wise("'", text, ""), text)


def needs_quotes(text: pa.Array) -> bool:
    """Whether any cell holds a quote, comma, CR or LF (one scan of the bytes per character)."""
    data = _bytes(text).tobytes()
    return any(special in data for special in SPECIAL)


def quoted(text: pa.Array) -> pa.Array:
    """Cells as CSV has them: in quotes (a quote doubled) when they hold a quote, comma, CR or LF."""
    if not needs_quotes(text):
        return text
    needs = pc.or_(pc.or_(pc.match_substring(text, '"'), pc.match_substring(text, ",")),
                   pc.or_(pc.match_substring(text, "\r"), pc.match_substring(text, "\n")))
    inner = pc.replace_substring(text, '"', '""')
    return pc.if_else(needs, pc.binary_join_element_wise('"', inner, '"', ""), text)


def _offsets(text: pa.Array) -> np.ndarray:
    """Where each cell starts in `_bytes(text)`, then where the last one ends."""
    if text.type != pa.string():
        raise TypeError(f"expected a string array, got {text.type}")
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + len(text) + 1]
    return offsets - offsets[0]


def _bytes(text: pa.Array) -> np.ndarray:
    """The cells' UTF-8 bytes back to back (no copy)."""
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + len(text) + 1]
    data = text.buffers()[2]
    if data is None:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]


def as_text(values: pa.Array) -> pa.Array:
    """An output column (labels, texts, probabilities) as text cells."""
    return pc.cast(values, pa.string())


def lines(cells: list[pa.Array]) -> memoryview:
    """CSV text of columns of text cells (quoted where needed), a line per row."""
    if not any(needs_quotes(c) for c in cells):  # the usual case: Arrow's writer, much faster
        sink = pa.BufferOutputStream()
        table = pa.table(cells, names=[str(i) for i in range(len(cells))])
        pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
        return memoryview(sink.getvalue())
    joined = pc.binary_join_element_wise(*[quoted(c) for c in cells], ",")
    return _data(pc.binary_join_element_wise(joined, LINE_END, ""))


class CsvWriter:
    """The input cells as they came, then the output columns; every cell neutralised unless `raw`
    (a label text is text too; a probability is a number, which neutralising leaves alone)."""

    def __init__(self, out: BinaryIO, names: list[str], outputs: list[str], *, raw: bool):
        self.out, self.raw = out, raw
        self._lines([pa.array([name], pa.string()) for name in [*names, *outputs]])

    def write(self, block: pa.RecordBatch, outputs: dict[str, pa.Array]) -> None:
        self._lines([*block.columns, *(as_text(values) for values in outputs.values())])

    def _lines(self, cells: list[pa.Array]) -> None:
        self.out.write(lines(cells if self.raw else [neutralised(c) for c in cells]))

    def close(self) -> None:
        """Nothing to end: a CSV is its lines."""


class JsonWriter:
    """A JSON array of records: the input cells typed as pandas would read them, then the outputs."""

    def __init__(self, out: BinaryIO):
        self.out, self._first = out, True
        out.write(b"[")

    def write(self, block: pa.RecordBatch, outputs: dict[str, pa.Array]) -> None:
        frame = pd.DataFrame({**{name: _typed(block.column(name)) for name in block.schema.names},
                              **{name: values.to_pandas() for name, values in outputs.items()}})
        records = frame.to_json(orient="records")[1:-1]  # without the brackets
        if records:
            self.out.write((records if self._first else "," + records).encode())
            self._first = False

    def close(self) -> None:
        self.out.write(b"]")


def _typed(text: pa.Array) -> pd.Series:
    """A column of text cells as numbers when every non-empty cell is one, else as text (empty
    cells are null)."""
    cells = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    for kind in (pa.int64(), pa.float64()):
        try:
            return pc.cast(cells, kind).to_pandas()
        except pa.ArrowInvalid:
            continue
    return cells.to_pandas()


def _data(lines: pa.Array) -> memoryview:
    """The bytes of a string array's values, back to back (no copy)."""
    return memoryview(_bytes(lines))
