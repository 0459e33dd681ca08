"""Benchmark of the training pipeline: DVC stage times, and our overhead over a bare fit.

For each data size (rows of generated raw data), in a throw-away DVC project with its own
$OPCON_HOME (the project is built like tests/conftest.py `build_project` does):

1. data: generate the raw CSV, `dvc add`, `dvc push` (ml.data.ensure_raw_data);
2. `dvc repro -s <stage>` for validate, prepare, train and evaluate, as a user runs them: wall
   time including process start and imports;
3. in a fresh process started as the stages start (CodeCarbon's probe in the background, the
   imports, the collector frozen; the imports are shown apart), on the same prepared split: ours,
   ml.validate.validate_file plus ml.train.train (fit, threshold, metrics, MLflow logging, model
   save, CodeCarbon), against the bare scikit-learn cost (build_pipeline().fit on train +
   predict_proba on validation and test). First our first call, which also pays the process's
   one-off costs; then three rounds of one bare run and one of ours, each side's best counting.
   overhead = (validate + train - bare) / bare, per training and on the first call.

    .venv/bin/python bench/pipeline.py                       # 10,000 and 100,000 rows
    .venv/bin/python bench/pipeline.py --rows 10000          # or --quick

Prints one table per size and a summary against the goals; always exits 0 unless something
crashes. The figures are also written to bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml import config  # noqa: E402

STAGES = ("validate", "prepare", "train", "evaluate")
STATE_VARIABLES = ("OPCON_HOME", "OPCON_PROJECT_DIR", "OPCON_DVC_REMOTE", "OPCON_ARTIFACT_ROOT",
                   "MLFLOW_TRACKING_URI")
RESULTS = REPO / "bench" / "results" / "pipeline.json"
GOAL_10K_PIPELINE_S = 60.0
GOAL_100K_OVERHEAD_PCT = 50.0


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def build_project(root: Path, rows: int) -> Path:
    """A DVC project running this repository's stages, params.yaml with `rows` of generated data."""
    from ml import workspace

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["dataset"]["generator"]["rows"] = rows
    return workspace.create(root / "project", raw)


def time_stages(project: Path, params) -> dict[str, float]:
    """Seconds for the raw data, then for `dvc repro -s <stage>` of each stage."""
    from ml.data import ensure_raw_data
    from ml.versioning import dvc

    seconds = {"data (generate + dvc add + push)": timed(ensure_raw_data, project, params)[0]}
    for stage in STAGES:
        seconds[f"dvc repro -s {stage}"] = timed(dvc, "repro", "-s", stage, cwd=project)[0]
    return seconds


def bare_fit_predict(project: Path, params):
    """A function timing one bare fit on train + predict_proba on validation and test."""
    from ml.prepare import SPLITS, read_split
    from ml.train import build_pipeline, feature_frame

    parts = {name: read_split(project, name) for name in SPLITS}
    x = {name: feature_frame(part, params.schema) for name, part in parts.items()}
    y_train = parts["train"][params.schema.target.name].to_numpy()

    def run() -> float:
        started = time.perf_counter()
        pipeline = build_pipeline(params.schema, params.train).fit(x["train"], y_train)
        pipeline.predict_proba(x["validation"])
        pipeline.predict_proba(x["test"])
        return time.perf_counter() - started

    return run


def in_process(project: Path, params, rounds: int = 3) -> dict[str, float]:
    """Our validate + train against the bare fit, in this process: the first call, then rounds.

    Run in a fresh process per size, started as the train stage starts (see in_process_main). The
    first call still pays what a stage pays once per process besides imports: MLflow's package
    index, the store connection, the first Parquet read. Then `rounds` times a bare run and one of
    ours, alternating so that a slow spell of a shared machine hits both; each side's best counts.
    """
    from ml.train import train
    from ml.validate import validate_file

    def ours() -> dict[str, float]:
        validate_s, report = timed(validate_file, project / params.dataset.raw, params.schema)
        if not report.success:
            raise RuntimeError(report.summary())
        return {"validate_s": validate_s, "train_s": timed(train, project, params)[0]}

    first = ours()
    bare_run = bare_fit_predict(project, params)
    bares, later = [], []
    for _ in range(rounds):
        bares.append(bare_run())
        later.append(ours())
    bare = min(bares)
    steady = min(later, key=lambda run: run["validate_s"] + run["train_s"])
    figures = {"bare_fit_predict_s": bare}
    for call, run in (("first", first), ("second", steady)):
        figures.update({f"validate_{call}_s": run["validate_s"], f"train_{call}_s": run["train_s"]})
        figures[f"overhead_{call}_pct"] = 100 * (run["validate_s"] + run["train_s"] - bare) / bare
    return figures


def measure_in_fresh_process(project: Path) -> dict[str, float]:
    """in_process() in a new interpreter, so that its first call is the first in its process."""
    output = subprocess.run([sys.executable, __file__, "--in-process", str(project)], check=True,
                            stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.splitlines()[-1])


def in_process_main(project: Path) -> int:
    from ml import params as params_module
    from ml import process, validate
    from ml.train import start_up

    config.quiet_third_parties()
    params = params_module.load(project)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # as the stages' main()s do: the probe, the imports, the frozen collector
        start_up(params, pool)
        process.import_and_freeze(validate.LIBRARIES)
        imports_s = time.perf_counter() - started
        figures = in_process(project, params)
    print(json.dumps({"imports_s": imports_s, **figures}))
    return 0


def bench_size(rows: int) -> dict:
    from ml import params as params_module

    with tempfile.TemporaryDirectory(prefix=f"opcon-bench-{rows}-") as tmp:
        for name in STATE_VARIABLES:
            os.environ.pop(name, None)
        os.environ["OPCON_HOME"] = str(Path(tmp) / "state")
        project = build_project(Path(tmp), rows)
        params = params_module.load(project)
        stages = time_stages(project, params)
        figures = measure_in_fresh_process(project)
    repro_total = sum(v for k, v in stages.items() if k.startswith("dvc repro"))
    return {"rows": rows, "stages_s": stages, "dvc_repro_total_s": repro_total,
            "full_pipeline_s": sum(stages.values()), **figures}


def print_size(result: dict) -> None:
    print(f"\n== {result['rows']:,} rows ==")
    print(f"{'stage':<40} {'seconds':>8}")
    for stage, seconds in result["stages_s"].items():
        print(f"{stage:<40} {seconds:8.2f}")
    print(f"{'dvc repro total':<40} {result['dvc_repro_total_s']:8.2f}")
    print(f"{'full pipeline (data + repro)':<40} {result['full_pipeline_s']:8.2f}")
    print(f"{'fresh process: imports (not counted)':<40} {result['imports_s']:8.2f}")
    print(f"{'in process: bare fit+predict, best of 3':<40} {result['bare_fit_predict_s']:8.2f}")
    for call, title in (("first", "first call"), ("second", "later calls, best")):
        print(f"{'validate_file(), ' + title:<40} {result[f'validate_{call}_s']:8.2f}")
        print(f"{'train(), ' + title:<40} {result[f'train_{call}_s']:8.2f}")
    once = sum(result[f"{part}_first_s"] - result[f"{part}_second_s"] for part in ("validate", "train"))
    print(f"{'once per process (first - later)':<40} {once:8.2f}")
    print("tracking/validation/emission overhead over bare fit+predict: "
          f"{result['overhead_second_pct']:.0f} % per training, "
          f"{result['overhead_first_pct']:.0f} % on the first call in a process")


def print_summary(results: list[dict]) -> None:
    print("\n== summary ==")
    header = ("rows", "dvc repro total s", "bare fit+predict s", "validate+train() s (1st/next)",
              "overhead % (1st/next)")
    print(" | ".join(header))
    for r in results:
        ours = [r[f"validate_{c}_s"] + r[f"train_{c}_s"] for c in ("first", "second")]
        cells = (f"{r['rows']:,}", f"{r['dvc_repro_total_s']:.2f}", f"{r['bare_fit_predict_s']:.2f}",
                 f"{ours[0]:.2f} / {ours[1]:.2f}",
                 f"{r['overhead_first_pct']:.0f} / {r['overhead_second_pct']:.0f}")
        print(" | ".join(cell.rjust(len(title)) for cell, title in zip(cells, header, strict=True)))
    by_rows = {r["rows"]: r for r in results}
    if 10_000 in by_rows:
        seconds = by_rows[10_000]["full_pipeline_s"]
        verdict = "PASS" if seconds < GOAL_10K_PIPELINE_S else "MISS"
        print(f"goal: 10k full pipeline < {GOAL_10K_PIPELINE_S:.0f} s: {seconds:.1f} s {verdict}")
    if 100_000 in by_rows:
        for call, title in (("second", "per training"),
                            ("first", "first call in a fresh process, one-off costs included")):
            pct = by_rows[100_000][f"overhead_{call}_pct"]
            verdict = "PASS" if pct < GOAL_100K_OVERHEAD_PCT else "MISS"
            print(f"goal: overhead at 100k < {GOAL_100K_OVERHEAD_PCT:.0f} % ({title}): {pct:.0f} % {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000],
                        help="data sizes to run (default: 10000 100000)")
    parser.add_argument("--quick", action="store_true", help="10,000 rows only")
    parser.add_argument("--in-process", type=Path, metavar="PROJECT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        return in_process_main(args.in_process)
    config.quiet_third_parties()
    results = [bench_size(rows) for rows in ([10_000] if args.quick else args.rows)]
    for result in results:
        print_size(result)
    print_summary(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
