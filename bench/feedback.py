"""Benchmark of POST /feedback's lookup: which (request id, row) pairs the prediction log holds.

In a temporary $OPCON_HOME (settings passed down, the environment untouched), a prediction log of
1,000,000 and then 10,000,000 rows is written straight in the log's file format (pyarrow, in
50,000-row chunks): per chunk one batch Parquet file of 40,000 rows (one request, as POST
/predict/batch) and one compacted segment of 10,000 rows in 10-row requests (as POST /predict),
plus a live JSON-lines segment. Per size, side by side:

1. the old lookup (every column of the whole log read, then a set of its pairs) against the
   index (monitoring.request_index), per feedback request of 10 items, one of them unknown:
   the median of N requests each;
2. the index's build from the log (the index file deleted first), and its size;
3. the cost of an append (a 1-row POST /predict) with the index and without it.

    .venv/bin/python bench/feedback.py                          # about 5 minutes on 2 cores
    .venv/bin/python bench/feedback.py --sizes 100000 1000000 --old-repeats 1

The figures are also written to bench/results/feedback.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitoring.log_files import host_name  # noqa: E402
from monitoring.prediction_log import PredictionLog  # noqa: E402

RESULTS = REPO / "bench" / "results" / "feedback.json"
CHUNK, BATCH, REQUEST = 50_000, 40_000, 10
LIVE_SEGMENT_ROWS = 5_000
ITEMS = 10  # pairs per feedback request
SEED = 5


# ------------------------------------------------------------------------------- the logged rows

def chunk_table(rng: np.random.Generator, rows: int, ids: np.ndarray, row_numbers: np.ndarray,
                start_ts: float) -> pa.Table:
    """Rows as the API logs them: the meta columns, a dozen features, the outputs."""
    columns = {
        "request_id": pa.array(ids, pa.string()),
        "row": pa.array(row_numbers, pa.int64()),
        "ts": pa.array(start_ts + np.arange(rows) * 1e-4),
        "model_version": pa.array(np.full(rows, "1"), pa.string()),
        "served_by": pa.array(np.full(rows, "onnx"), pa.string()),
        "type": pa.array(rng.choice(np.array(["L", "M", "H"]), rows), pa.string()),
    }
    for name in ("air_temperature_k", "process_temperature_k", "rotational_speed_rpm", "torque_nm",
                 "tool_wear_min", "vibration_mm_s", "humidity", "load"):
        columns[name] = pa.array(rng.normal(300, 10, rows))
    columns["probability"] = pa.array(rng.random(rows))
    columns["label"] = pa.array((rng.random(rows) < 0.03).astype(np.int64))
    columns["threshold"] = pa.array(np.full(rows, 0.3))
    return pa.table(columns)


def write_chunks(directory: Path, first: int, count: int, rng: np.random.Generator) -> list[str]:
    """`count` chunks of the log, numbered from `first`; the ids of their small requests."""
    small_ids = []
    per_segment = CHUNK - BATCH
    for index in range(first, first + count):
        ts = 1.7e9 + index * 10.0
        batch_id = str(uuid.uuid4())
        pq.write_table(chunk_table(rng, BATCH, np.full(BATCH, batch_id), np.arange(BATCH), ts),
                       directory / f"batch-{batch_id}.parquet")
        ids = np.array([str(uuid.uuid4()) for _ in range(per_segment // REQUEST)])
        table = chunk_table(rng, per_segment, np.repeat(ids, REQUEST),
                            np.tile(np.arange(REQUEST), len(ids)), ts + 5)
        pq.write_table(table, directory / f"rows-{host_name()}-{100_000 + index}-{int(ts * 1e9)}.parquet")
        small_ids.extend(ids[::97].tolist())  # a sample to look up
    return small_ids


def write_live_segment(log: PredictionLog) -> list[str]:
    ids = []
    for _ in range(LIVE_SEGMENT_ROWS // REQUEST):
        ids.append(str(uuid.uuid4()))
        log.append(ids[-1], "1", "onnx", [{"torque_nm": 40.0, "label": 0, "probability": 0.1}] * REQUEST)
    return ids


# ------------------------------------------------------------------------------------ the lookups

def old_lookup(log: PredictionLog, items: list[tuple[str, int]]) -> list[int]:
    """POST /feedback before the index: the whole log read, every column."""
    logged = log.read()
    known = set(zip(logged["request_id"], logged["row"], strict=True)) if len(logged) else set()
    return [i for i, pair in enumerate(items) if pair not in known]


def indexed_lookup(log: PredictionLog, items: list[tuple[str, int]]) -> list[int]:
    """POST /feedback now."""
    rows = log.logged_rows(request_id for request_id, _ in items)
    return [i for i, (request_id, row) in enumerate(items) if row >= rows.get(request_id, 0)]


def requests_of_items(ids: list[str], count: int, rng: np.random.Generator) -> list[list[tuple]]:
    requests = []
    for _ in range(count):
        picks = rng.choice(len(ids), ITEMS - 1, replace=False)
        items = [(ids[p], int(rng.integers(0, REQUEST))) for p in picks]
        requests.append([*items, (str(uuid.uuid4()), 0)])  # the last one unknown
    return requests


def median_seconds(function, log, requests) -> float:
    seconds = []
    for items in requests:
        started = time.perf_counter()
        unknown = function(log, items)
        seconds.append(time.perf_counter() - started)
        assert unknown == [ITEMS - 1], unknown
    return statistics.median(seconds)


class _NoIndex:
    def record_segment(self, *args) -> None:
        pass

    def record_file(self, *args) -> None:
        pass


def append_seconds(log: PredictionLog, count: int) -> float:
    record = {"torque_nm": 40.0, "label": 0, "probability": 0.1, "threshold": 0.3}
    seconds = []
    for _ in range(count):
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        log.append(request_id, "1", "onnx", [record])
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(log: PredictionLog, ids: list[str], rows: int, args, rng) -> dict:
    for path in log.directory.glob("requests.sqlite*"):
        path.unlink()
    fresh = PredictionLog(log.directory)
    started = time.perf_counter()
    fresh.logged_rows(["build"])  # a lookup on a missing index builds it first
    build_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in log.directory.glob("requests.sqlite*"))
    indexed_s = median_seconds(indexed_lookup, fresh, requests_of_items(ids, args.lookups, rng))
    old_s = median_seconds(old_lookup, fresh, requests_of_items(ids, args.old_repeats, rng))
    with_index = append_seconds(fresh, args.appends)
    unindexed = PredictionLog(log.directory)
    unindexed.index = _NoIndex()
    without_index = append_seconds(unindexed, args.appends)
    files = sum(1 for name in os.listdir(log.directory) if name.endswith((".parquet", ".jsonl")))
    return {"rows": rows, "files": files, "requests_indexed": _count(fresh), "old_lookup_s": old_s,
            "indexed_lookup_s": indexed_s, "build_s": build_s, "index_bytes": size,
            "append_with_index_s": with_index, "append_without_index_s": without_index}


def _count(log: PredictionLog) -> int:
    import sqlite3

    with sqlite3.connect(log.index.path) as connection:
        return connection.execute("SELECT count(*) FROM requests").fetchone()[0]


# ---------------------------------------------------------------------------------------- output

def print_table(results: list[dict]) -> None:
    print(f"\n{'log rows':>11} {'files':>6} {'requests':>9} | {'old lookup':>11} {'indexed':>9} "
          f"{'ratio':>8} | {'build':>7} {'index':>7} | {'append':>8} {'no index':>9} {'index cost':>10}")
    for r in results:
        print(f"{r['rows']:>11,} {r['files']:>6,} {r['requests_indexed']:>9,} | "
              f"{r['old_lookup_s'] * 1e3:>9.0f}ms {r['indexed_lookup_s'] * 1e6:>7.0f}us "
              f"{r['old_lookup_s'] / r['indexed_lookup_s']:>7,.0f}x | "
              f"{r['build_s']:>6.1f}s {r['index_bytes'] / 2**20:>5.1f}MB | "
              f"{r['append_with_index_s'] * 1e6:>6.0f}us {r['append_without_index_s'] * 1e6:>7.0f}us "
              f"{(r['append_with_index_s'] - r['append_without_index_s']) * 1e6:>8.0f}us")
    print(f"\nlookup: one feedback request of {ITEMS} (request id, row) pairs, one unknown; median of "
          "N requests. append: a 1-row request, median.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--lookups", type=int, default=200, help="indexed lookups timed per size")
    parser.add_argument("--old-repeats", type=int, default=3, help="full-read lookups timed per size")
    parser.add_argument("--appends", type=int, default=2_000, help="appends timed per size")
    args = parser.parse_args()
    from control_api.settings import from_env

    rng = np.random.default_rng(SEED)
    print(f"{os.cpu_count()} CPUs, load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="opcon-bench-feedback-") as tmp:
        settings = from_env(state_dir=Path(tmp) / "state", project_dir=REPO, api_token="bench")
        log = PredictionLog(settings.prediction_log_dir)
        ids, chunks = write_live_segment(log), 0
        for size in sorted(args.sizes):
            wanted = max(1, size // CHUNK)
            started = time.perf_counter()
            ids += write_chunks(log.directory, chunks, wanted - chunks, rng)
            chunks = wanted
            rows = chunks * CHUNK + LIVE_SEGMENT_ROWS
            print(f"log of {rows:,} rows written in {time.perf_counter() - started:.1f} s", flush=True)
            results.append(measure(log, ids, rows, args, rng))
            print_table(results[-1:])
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
