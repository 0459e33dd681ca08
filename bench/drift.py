"""Benchmark of drift reports: our `drift_report` job against a raw Evidently call, same frames.

In one run, in a throw-away DVC project with its own $OPCON_HOME (10,000 generated rows, seed 7;
`dvc repro` trains the champion; its reference is the 6,000-row training split):

1. per scenario, a prediction log of 1,000,000 rows written as the API writes it, predictions by
   the champion: of every 50,000 rows, 40,000 in one batch Parquet file (as POST /predict/batch)
   and 10,000 as JSON lines in 1,000-row requests (as POST /predict; 16 MiB segments). Scenarios:
   `same process` (held-out rows of the project drawn with replacement), `new generator run`
   (`ml.generate`, another seed: its temperatures are random walks, so their spread differs run
   to run) and `hotter, more torque` (the same run with `--air-shift 5 --torque-shift 8`);
2. drift jobs on the last 10k / 100k / 1M rows of that log: the job's steps as a worker runs them
   (read + compare + HTML + store, with the job record updated per step), end to end; the log's
   sealed segments are compacted first, as the worker does every minute, and the champion's
   reference predictions are cached by an earlier report, as after the first report of a version;
3. Evidently's own Report (DataDriftPreset over the features + ValueDrift of the predictions, every
   test chosen by Evidently) on exactly the frames the job compared, every row;
4. a table per size and scenario, and per column for 1M rows: the job's statistic and verdict,
   Evidently's, and the statistic of the job's HTML page (drawn from a 10,000-row sample).

    .venv/bin/python bench/drift.py                       # about 5 minutes
    .venv/bin/python bench/drift.py --sizes 10000 100000 --scenarios shifted

Goal: the 1M-row job in at most 5 s with the same per-column verdicts as full-data Evidently.
The figures are also written to bench/results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serve import STATE_VARIABLES, build_project, train_champion  # noqa: E402
from ml import config  # noqa: E402

RESULTS = REPO / "bench" / "results" / "drift.json"
LOG_ROWS = 1_000_000
BLOCK, BATCH, REQUEST = 50_000, 40_000, 1_000
SCENARIO_SEED = 11
GOAL_1M_S = 5.0
SCENARIOS = {"same": "same process", "new_run": "new generator run", "shifted": "hotter, more torque"}


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


# ------------------------------------------------------------------------------- the logged data

def scenario_rows(name: str, project: Path, params, rows: int, tmp: Path) -> pd.DataFrame:
    from ml import generate

    schema = params.schema
    if name == "same":
        prepared = project / "data" / "prepared"
        held_out = pd.concat([pd.read_parquet(prepared / f"{n}.parquet") for n in ("validation", "test")])
        picks = np.random.default_rng(SCENARIO_SEED).integers(0, len(held_out), rows)
        return held_out.iloc[picks][schema.feature_names].reset_index(drop=True)
    shift = ["--air-shift", "5", "--torque-shift", "8"] if name == "shifted" else []
    out = tmp / f"{name}.csv"
    generate.main(["--rows", str(rows), "--seed", str(SCENARIO_SEED), *shift, "--out", str(out)])
    frame = pd.read_csv(out, dtype={n: str for n in schema.categorical})
    out.unlink()
    return frame[schema.feature_names]


def outputs(model, threshold, schema, features: pd.DataFrame) -> pd.DataFrame:
    from ml.metrics import predict_labels
    from ml.tables import feature_frame

    proba = model.predict_proba(feature_frame(features, schema))
    classes = model.classes_.tolist()
    labels = predict_labels(proba, classes, threshold, schema.target)
    names = {c: schema.target.label(c) for c in classes}
    return pd.DataFrame({"label": labels, "label_text": [names[v] for v in labels.tolist()],
                         "probability": proba[:, classes.index(schema.target.positive)]})


def write_log(directory: Path, features: pd.DataFrame, predicted: pd.DataFrame, version: str,
              threshold: float) -> None:
    from monitoring.prediction_log import PredictionLog

    log = PredictionLog(directory)
    rows = pd.concat([features.reset_index(drop=True), predicted], axis=1)
    for start in range(0, len(rows), BLOCK):
        block = rows.iloc[start:start + BLOCK]
        log.append_frame(str(uuid.uuid4()), version, "sklearn", block.iloc[:BATCH])
        records = block.iloc[BATCH:].assign(threshold=threshold).to_dict(orient="records")
        for first in range(0, len(records), REQUEST):
            log.append(str(uuid.uuid4()), version, "onnx", records[first:first + REQUEST])


# ---------------------------------------------------------------------------------- the two runs

def run_job(settings, store, last_rows: int):
    """The job's steps in process, as the worker runs them; (seconds, the run, its result)."""
    from control_api.jobs.drift_job import DriftReport
    from control_api.jobs.runner import Job, run_steps

    record, _ = store.submit("drift_report", {"last_rows": last_rows}, "benchmark")
    started = time.perf_counter()
    store.start(record["id"], "bench")
    report = DriftReport(record["params"], settings)
    result = run_steps(Job(record["id"], store, settings), report.steps())
    store.finish(record["id"], "succeeded", result=result)
    return time.perf_counter() - started, report, result


def raw_evidently(report) -> dict:
    """Evidently alone on the job's frames: {column: (statistic, drifted, test)}."""
    from monitoring.drift import NUMERIC
    from monitoring.evidently_lib import DataDefinition, DataDriftPreset, Dataset, Report, ValueDrift

    kinds = report.kinds
    features = [c.name for c in report.feature_drift]
    definition = DataDefinition(numerical_columns=[n for n, k in kinds.items() if k == NUMERIC],
                                categorical_columns=[n for n, k in kinds.items() if k != NUMERIC])
    metrics = [DataDriftPreset(columns=features, drift_share=report.settings.drift_share)]
    metrics += [ValueDrift(column=c.name) for c in report.prediction_drift]
    snapshot = Report(metrics).run(Dataset.from_pandas(report.current, data_definition=definition),
                                   Dataset.from_pandas(report.reference_frame, data_definition=definition))
    found = {}
    for metric in snapshot.dict()["metrics"]:
        config_ = metric["config"]
        if config_.get("type", "").endswith(":ValueDrift"):
            value, threshold, test = float(metric["value"]), config_["threshold"], config_["method"]
            # p-value tests (below 1,000 reference rows) drift below the threshold, distances above
            drifted = value < threshold if "p_value" in test else value >= threshold
            found[config_["column"]] = (value, drifted, test)
    return found


def bench_scenario(name: str, args, env: dict) -> list[dict]:
    import mlflow.sklearn

    from control_api import db
    from control_api.jobs.records import JobStore
    from control_api.settings import from_env
    from monitoring.prediction_log import PredictionLog

    project, params, champion, tmp = env["project"], env["params"], env["champion"], env["tmp"]
    state = tmp / f"state-{name}"
    settings = from_env(state_dir=env["state"], project_dir=project, api_token="bench")
    settings.state_dir = state  # its own log and reports; MLflow, the DVC cache and job records shared
    (state / "reports").mkdir(parents=True, exist_ok=True)
    store = JobStore(db.connect(settings.database_url))
    model = mlflow.sklearn.load_model(f"models:/{params.registry.model_name}/{champion.version}")
    threshold = float(champion.tags["threshold"])
    features = scenario_rows(name, project, params, max(args.sizes), tmp)
    seconds_write, _ = timed(write_log, settings.prediction_log_dir, features,
                             outputs(model, threshold, params.schema, features), str(champion.version),
                             threshold)
    seconds_compact, converted = timed(PredictionLog(settings.prediction_log_dir).compact)
    print(f"\n{SCENARIOS[name]}: log of {len(features):,} rows written in {seconds_write:.1f} s; "
          f"{converted} sealed segment(s) compacted in {seconds_compact:.2f} s", flush=True)
    run_job(settings, store, 1_000)  # the reference's predictions are computed once per version
    rows = []
    for size in args.sizes:
        seconds, report, result = run_job(settings, store, size)
        seconds_raw, raw = timed(raw_evidently, report)
        columns = []
        for column in report.feature_drift + report.prediction_drift:
            statistic, drifted, test = raw[column.name]
            columns.append({"column": column.name, "job_test": column.test, "evidently_test": test,
                            "job_statistic": column.statistic, "evidently_statistic": statistic,
                            "job_drifted": column.drifted, "evidently_drifted": drifted,
                            "html_sample_statistic": report.sampled["statistics"].get(column.name),
                            "html_sample_drifted": report.sampled["statistics"].get(column.name, 0)
                            >= column.threshold})
        rows.append({"scenario": SCENARIOS[name], "rows": size, "job_s": seconds,
                     "steps": result["timings"], "evidently_s": seconds_raw,
                     "drifted_job": report.verdict["drifted_columns"],
                     "drifted_evidently": [c["column"] for c in columns[:len(report.feature_drift)]
                                           if c["evidently_drifted"]],
                     "same_verdicts": all(c["job_drifted"] == c["evidently_drifted"] for c in columns),
                     "columns": columns})
        print(f"  {size:>9,} rows: job {seconds:.2f} s, Evidently {seconds_raw:.2f} s, same verdicts: "
              f"{rows[-1]['same_verdicts']}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------- output

def print_table(rows: list[dict]) -> None:
    print(f"\n{'scenario':<21}{'rows':>10}{'job s':>8}{'read':>7}{'cmp':>7}{'html':>7}{'store':>7}"
          f"{'Evidently s':>13}  same  drifted (job = Evidently)")
    for row in rows:
        steps = row["steps"]
        print(f"{row['scenario']:<21}{row['rows']:>10,}{row['job_s']:>8.2f}{steps['read_s']:>7.2f}"
              f"{steps['compare_s']:>7.2f}{steps['html_s']:>7.2f}{steps['store_s']:>7.2f}"
              f"{row['evidently_s']:>13.2f}  {'yes' if row['same_verdicts'] else 'NO ':<4}  "
              f"{', '.join(row['drifted_job']) or '-'}")


def print_columns(rows: list[dict], size: int) -> None:
    print(f"\nper column at {size:,} rows: statistic (drifted *) — job on every row | Evidently on "
          "every row | the HTML page's sample")
    for row in (r for r in rows if r["rows"] == size):
        print(f"  {row['scenario']}")
        for c in row["columns"]:
            def shown(value, drifted):
                return "      n/a" if value is None else f"{value:9.5f}{'*' if drifted else ' '}"
            print(f"    {c['column']:<26}{c['job_test']:<31}{shown(c['job_statistic'], c['job_drifted'])}"
                  f" |{shown(c['evidently_statistic'], c['evidently_drifted'])}"
                  f" |{shown(c['html_sample_statistic'], c['html_sample_drifted'])}")


def goals(rows: list[dict]) -> list[str]:
    largest = [r for r in rows if r["rows"] == LOG_ROWS]
    lines = [f"{'PASS' if r['job_s'] <= GOAL_1M_S else 'MISS'} {r['scenario']}: 1M-row job "
             f"{r['job_s']:.2f} s (goal <= {GOAL_1M_S:g} s)" for r in largest]
    same = all(r["same_verdicts"] for r in rows)
    lines.append(f"{'PASS' if same else 'MISS'} per-column verdicts equal to full-data Evidently in "
                 f"{sum(r['same_verdicts'] for r in rows)}/{len(rows)} runs")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, LOG_ROWS])
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--train-rows", type=int, default=10_000)
    args = parser.parse_args()
    config.quiet_third_parties()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in STATE_VARIABLES:
        os.environ.pop(name, None)
    print(f"{os.cpu_count()} CPUs, load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    with tempfile.TemporaryDirectory(prefix="opcon-bench-drift-") as tmp:
        root = Path(tmp)
        os.environ["OPCON_HOME"] = str(root / "state")
        seconds_train, project = timed(build_project, root, args.train_rows)
        seconds_train2, (params, champion) = timed(train_champion, project)
        print(f"project and champion: {seconds_train + seconds_train2:.0f} s", flush=True)
        seconds_import, _ = timed(__import__, "monitoring.evidently_lib")
        print(f"Evidently imported in {seconds_import:.1f} s (once per worker process, at its start)")
        env = {"project": project, "params": params, "champion": champion, "tmp": root,
               "state": root / "state"}
        rows = [row for name in args.scenarios for row in bench_scenario(name, args, env)]
    print_table(rows)
    print_columns(rows, max(args.sizes))
    lines = goals(rows)
    print("\n" + "\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "goals": lines,
                                   "load_average_after": os.getloadavg()}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
