"""Scored CSVs: safe to open in a spreadsheet, read back row for row; batches scored a chunk at a time.

Through Flask's test client on one trained project (tests/conftest.py `trained`, `app`, `client`):
hostile cells (formula starters, bare CR, CRLF, LF, quotes, commas, unicode) come back on their own
rows, neutralised unless `raw=true`; a header naming a column twice is refused on /predict/batch and
on the dataset upload; a batch read in many chunks is scored, logged and numbered as one, a refused
one logs nothing; the worker's memory stays bounded on a large batch. Feature names never appear
here: they come from the schema.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from werkzeug.test import EnvironBuilder

from control_api import batch_scoring, csv_input, datasets
from ml.generate import generate
from tests.helpers import TOKEN, Client, error_body, fields
from ui.components import csv_files

pytestmark = pytest.mark.pipeline

# a pass-through cell as sent → as a spreadsheet-safe CSV carries it back
HOSTILE = {
    "=1+2": "'=1+2",
    "=HYPERLINK(\"http://example.com\",\"x\")": "'=HYPERLINK(\"http://example.com\",\"x\")",
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "-1+2": "'-1+2",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "\tafter a tab": "'\tafter a tab",
    "\rafter a CR": "'\rafter a CR",
    "a bare\rCR": "a bare\rCR",
    "a CRLF\r\ninside": "a CRLF\r\ninside",
    "an LF\ninside": "an LF\ninside",
    'quotes "and", commas': 'quotes "and", commas',
    "ünïcødé ✓ 数据": "ünïcødé ✓ 数据",
    "-2.5": "-2.5",
    "+3": "+3",
    "-1e5": "-1e5",
    "": "",
}
FORMULA_HEADER = "=notes"  # a column name is a cell too
MiB = 1024 * 1024


def hostile_csv(frame: pd.DataFrame, line_end: str = "\n") -> bytes:
    """The frame plus a column of the hostile values, every cell quoted (a quoted bare CR is what
    a writer with LF line ends leaves unquoted otherwise)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator=line_end)
    writer.writerow([*frame.columns, FORMULA_HEADER])
    for row, value in zip(frame.astype(str).itertuples(index=False), HOSTILE, strict=True):
        writer.writerow([*row, value])
    return out.getvalue().encode()


def plain_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


def read_back(body: bytes) -> list[dict]:
    """The scored CSV as the csv module reads it (every field kept as text)."""
    return list(csv.DictReader(io.StringIO(body.decode(), newline="")))


def probabilities(client, content: bytes) -> list[float]:
    response = client.upload("/api/v1/predict/batch", content)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return [float(r["prediction_probability"]) for r in read_back(response.get_data())]


def logged_files(services) -> set[str]:
    return {p.name for p in services.predictions.directory.iterdir()}


@pytest.fixture(scope="module")
def services(app):
    return app.extensions["opcon"]


@pytest.fixture(scope="module")
def schema(trained):
    return trained.params.schema


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(len(HOSTILE), 61)


@pytest.fixture
def small_chunks(monkeypatch):
    """A kilobyte a block, and chunks as small as the ONNX limit allows (2,001 rows by default):
    a file of a few thousand rows crosses many boundaries."""
    monkeypatch.setattr(csv_input, "BLOCK_BYTES", 1024)
    monkeypatch.setattr(batch_scoring, "CHUNK_ROWS", 40)


# -- spreadsheet-safe cells, row for row -----------------------------------------------------------

@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_hostile_cells_come_back_on_their_own_rows_neutralised(client, frame, line_end):
    response = client.upload("/api/v1/predict/batch", hostile_csv(frame, line_end))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    body = response.get_data()
    rows = read_back(body)
    header = next(csv.reader(io.StringIO(body.decode(), newline="")))
    assert header[len(frame.columns)] == "'" + FORMULA_HEADER
    assert len(rows) == len(HOSTILE)
    assert all(len(row) == len(header) and None not in row for row in rows)  # no row split or merged
    assert [r["'" + FORMULA_HEADER] for r in rows] == list(HOSTILE.values())
    ids = frame.columns[0]
    assert [r[ids] for r in rows] == frame[ids].astype(str).tolist()
    # each prediction is the one its row's features get without the hostile column
    assert [float(r["prediction_probability"]) for r in rows] == probabilities(client, plain_csv(frame))

    scored = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False)
    assert len(scored) == len(HOSTILE)
    assert scored["'" + FORMULA_HEADER].tolist() == list(HOSTILE.values())
    assert pd.to_numeric(scored["prediction_probability"]).between(0, 1).all()


def test_raw_true_gives_every_cell_as_it_came(client, frame):
    response = client.upload("/api/v1/predict/batch?raw=true", hostile_csv(frame))
    assert response.status_code == 200
    rows = read_back(response.get_data())
    assert [r[FORMULA_HEADER] for r in rows] == list(HOSTILE)


def test_json_records_are_never_altered(client, frame):
    response = client.upload("/api/v1/predict/batch", hostile_csv(frame),
                             headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.is_json
    records = response.get_json()
    assert [r[FORMULA_HEADER] for r in records] == [v or None for v in HOSTILE]  # empty is null


def test_a_raw_value_that_is_not_a_boolean_is_refused(client, frame):
    body = error_body(client.upload("/api/v1/predict/batch?raw=sometimes", plain_csv(frame)), 422)
    assert fields(body) == {"raw"}


# -- a column named twice ----------------------------------------------------------------------------

def test_a_header_naming_a_column_twice_is_refused_on_batch_and_upload(client, services, trained,
                                                                        schema, frame):
    name = schema.feature_names[-1]
    columns = [*frame.columns, name]
    content = plain_csv(frame.assign(extra=frame[name]).set_axis(columns, axis=1))
    logged = logged_files(services)

    body = error_body(client.upload("/api/v1/predict/batch", content), 422)
    assert body["error"] == f"duplicate column `{name}`"
    assert body["details"] == [{"field": name, "problem": f"duplicate column `{name}`"}]
    assert logged_files(services) == logged

    raw_before = trained.raw.read_bytes()
    body = error_body(client.upload("/api/v1/datasets", content), 422)
    assert body["error"] == f"duplicate column `{name}`"
    assert fields(body) == {name}
    assert trained.raw.read_bytes() == raw_before
    assert not list((trained.state / "uploads").glob("*"))

    # the console checks the header itself before sending, with the same words
    assert csv_files.header_problem(content) == f"duplicate column `{name}`"
    assert csv_files.header_problem(plain_csv(frame)) is None


# -- chunks ------------------------------------------------------------------------------------------

def test_a_batch_read_in_many_chunks_is_scored_logged_and_numbered_as_one(client, services, schema,
                                                                         small_chunks):
    frame = generate(5000, 62)
    content = plain_csv(frame)
    assert len(content) > 100 * csv_input.BLOCK_BYTES
    response = client.upload("/api/v1/predict/batch", content)
    assert response.status_code == 200
    rows = read_back(response.get_data())
    ids = frame.columns[0]
    assert [r[ids] for r in rows] == frame[ids].astype(str).tolist()
    request_id = response.headers["X-Request-Id"]
    logged = services.predictions.find(request_id).sort_values("row")
    assert logged["row"].tolist() == list(range(5000))
    assert logged["probability"].tolist() == pytest.approx([float(r["prediction_probability"])
                                                            for r in rows], abs=1e-12)
    assert set(logged["served_by"]) == {response.headers["X-Served-By"]}  # one path per request
    assert not [p for p in services.predictions.directory.iterdir() if p.suffix == ".tmp"]
    label = schema.target.classes[0]
    answer = client.post("/api/v1/feedback",
                         json={"items": [{"request_id": request_id, "row": 4999, "label": label}]})
    assert answer.status_code == 200, answer.get_json()

    hostile = generate(len(HOSTILE), 61)
    assert probabilities(client, hostile_csv(hostile)) == probabilities(client, plain_csv(hostile))


def test_a_refused_batch_lists_every_problem_across_chunks_and_logs_nothing(client, services, schema,
                                                                           small_chunks):
    feature = next(f for f in schema.features if f.type == "number" and f.max is not None)
    frame = generate(5000, 63).astype({feature.name: float})
    frame.loc[[5, 2500, 4900], feature.name] = feature.max + 1  # in the first, second, third chunk
    logged = logged_files(services)
    body = error_body(client.upload("/api/v1/predict/batch", plain_csv(frame)), 422)
    assert fields(body) == {feature.name}
    assert body["details"][0]["count"] == 3 and body["details"][0]["rows"] == [6, 2501, 4901]
    assert logged_files(services) == logged


def test_a_missing_column_and_bad_rows_are_refused_together(client, services, schema, small_chunks):
    missing = schema.feature_names[-1]
    bad = next(f for f in schema.features if f.type == "number" and f.max is not None and f.name != missing)
    frame = generate(3000, 64).drop(columns=[missing]).astype({bad.name: float})
    frame.loc[[1, 2900], bad.name] = bad.max + 1
    logged = logged_files(services)
    body = error_body(client.upload("/api/v1/predict/batch", plain_csv(frame)), 422)
    by_field = {item["field"]: item for item in body["details"]}
    assert set(by_field) == {missing, bad.name}
    assert by_field[missing]["problem"] == "column is missing"
    assert by_field[bad.name]["rows"] == [2, 2901]
    assert logged_files(services) == logged


def test_the_row_limit_holds_when_the_excess_is_in_a_later_chunk(trained, small_chunks):
    from control_api import create_app

    small = Client(create_app({"testing": True, "api_token": TOKEN, "state_dir": trained.state,
                               "project_dir": trained.path, "max_batch_rows": 4500}))
    logged = logged_files(small.app.extensions["opcon"])
    body = error_body(small.upload("/api/v1/predict/batch", plain_csv(generate(5000, 64))), 413)
    assert "4500" in body["error"]
    assert logged_files(small.app.extensions["opcon"]) == logged
    assert small.upload("/api/v1/predict/batch", plain_csv(generate(4500, 64))).status_code == 200


def test_a_dataset_upload_is_validated_in_chunks_with_ids_checked_across_them(client, trained, schema,
                                                                             monkeypatch):
    monkeypatch.setattr(datasets, "CHUNK_ROWS", 60)
    ids = schema.id_columns[0]
    first = int(pd.read_csv(trained.raw, usecols=[ids])[ids].max()) + 1
    feature = next(f for f in schema.features if f.type == "number" and f.max is not None)
    batch = generate(120, 65, first_id=first).astype({feature.name: float})
    batch.loc[100, feature.name] = feature.max + 1  # in the second chunk
    batch.loc[90, ids] = batch.loc[3, ids]  # the same ID in the first and the second chunk
    raw_before = trained.raw.read_bytes()
    body = error_body(client.upload("/api/v1/datasets", plain_csv(batch)), 422)
    assert "the batch failed validation" in body["error"]
    problems = {d["field"]: d["problem"] for d in body["details"]}
    assert set(problems) == {feature.name, ids}
    assert "in rows 61 to 120" in problems[feature.name]
    assert problems[ids].startswith(f"column `{ids}`: 2 duplicated ID value(s)")
    assert trained.raw.read_bytes() == raw_before


def test_appending_a_batch_keeps_the_data_byte_for_byte_and_the_batch_cell_for_cell(trained, tmp_path):
    params = trained.params
    project = tmp_path / "project"
    raw = project / params.dataset.raw
    raw.parent.mkdir(parents=True)
    raw.write_bytes(trained.raw.read_bytes())
    Path(f"{raw}.dvc").write_text("the pointer\n")
    schema = params.schema
    batch = generate(len(HOSTILE), 66, first_id=10_000_000)
    text_column = schema.id_columns[-1]  # text IDs: any value is one
    batch[text_column] = [f"{value}-{i}" for i, value in enumerate(HOSTILE)]
    upload = tmp_path / "batch.csv"
    reordered = batch[list(reversed(batch.columns))]  # the batch's own column order
    upload.write_bytes(reordered.to_csv(index=False, lineterminator="\r\n").encode())
    before = raw.read_bytes()

    tracked = []
    datasets.append_batch(project, params, upload, tracked.append)
    assert tracked == [params.dataset.raw]
    after = raw.read_bytes()
    assert after.startswith(before)
    merged = pd.read_csv(raw, dtype=str, keep_default_na=False)
    assert list(merged.columns) == list(pd.read_csv(io.BytesIO(before), nrows=0).columns)
    added = merged.tail(len(batch)).reset_index(drop=True)
    assert added[text_column].tolist() == batch[text_column].tolist()
    assert len(merged) == len(pd.read_csv(io.BytesIO(before))) + len(batch)

    def failing(target: str) -> None:
        raise RuntimeError("dvc push failed")

    with pytest.raises(RuntimeError):
        datasets.append_batch(project, params, upload, failing)
    assert raw.read_bytes() == after and Path(f"{raw}.dvc").read_text() == "the pointer\n"


# -- memory ------------------------------------------------------------------------------------------

def peak_rss_growth(action) -> float:
    """MiB the process's peak resident memory rose above its resident memory before `action`."""
    def status(key: str) -> int:
        line = next(li for li in Path("/proc/self/status").read_text().splitlines() if li.startswith(key))
        return int(line.split()[1]) * 1024

    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from the current size
    before = status("VmRSS:")
    action()
    return (status("VmHWM:") - before) / MiB


def test_a_large_batch_is_scored_in_bounded_memory(app, services):
    block = generate(2000, 67).to_csv(index=False, lineterminator="\n").encode()
    header, rows = block.split(b"\n", 1)

    def request(copies: int):
        """The WSGI environ of a batch upload, its body built here (outside what is measured)."""
        return EnvironBuilder(path="/api/v1/predict/batch", method="POST",
                              headers={"Authorization": f"Bearer {TOKEN}"},
                              data={"file": (io.BytesIO(header + b"\n" + rows * copies), "big.csv")}
                              ).get_environ()

    def answer(environ) -> dict:
        started = {}
        body = app(environ, lambda status, headers, *_: started.update(status=status, **dict(headers)))
        body.close()  # the scored file is on disk: nothing of it needs reading here
        return started

    assert answer(request(25))["status"].startswith("200")  # every buffer warmed up
    environ, answered = request(200), []  # 400,000 rows, about 22 MB
    growth = peak_rss_growth(lambda: answered.append(answer(environ)))
    assert answered[0]["status"].startswith("200")
    request_id = answered[0]["X-Request-Id"]
    assert services.predictions.logged_rows([request_id]) == {request_id: 400_000}
    # the whole file in memory (parsed, scored, logged, written out) takes more than this
    assert growth < 150, f"peak resident memory grew by {growth:.0f} MiB for 400,000 rows"
