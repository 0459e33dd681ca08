"""Benchmark of the training pipeline: `dvc repro`, its stages, a retrain job, and our overhead over a
bare fit, side by side in one run.

For each data size (rows of generated raw data), in a throw-away DVC project with its own
$OPCON_HOME (the project is built like tests/helpers.py `build_project` does):

1. data: generate the raw CSV, `dvc add`, `dvc push` (ml.raw_data.ensure_raw_data);
2. `dvc repro` of the whole pipeline, as a user runs it from a shell: the first one, then the best
   of two forced ones, cold (each stage a fresh process) and with a warm stage host running
   (ml.stage_host, whose stages are forks of a process that imported them already);
3. `dvc repro --force -s <stage>` for validate, prepare, train and evaluate: each stage's wall time
   including DVC, process start and imports; and each stage's import floor, a process that only
   imports what the stage imports;
4. a retrain job's steps in a warm process (the job worker: ml.in_process.preload() done when it
   started, not counted), three ways: with a `dvc repro` per stage as the worker runs them today,
   cold and with a stage host, and with the stages run in-process then `dvc commit`ted
   (ml.in_process.run); each time the new champion loaded as the API's watcher loads it (the
   watcher polls every `model_poll_seconds`, 2 s);
5. in a fresh process started as the stages start (CodeCarbon's probe in the background, the
   imports, the collector frozen; the imports are shown apart), on the same prepared split: ours,
   ml.validation.validate_file plus ml.training.train (fit, threshold, metrics, MLflow logging,
   model save, CodeCarbon), against the bare scikit-learn cost (build_pipeline().fit on train +
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
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
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
GOAL_10K_REPRO_S = 8.0
GOAL_10K_RETRAIN_S = 10.0
GOAL_100K_FIRST_OVERHEAD_PCT = 60.0
RETRAIN_WAYS = {"dvc_repro": "a dvc repro per stage", "dvc_repro_hosted": "a dvc repro per stage, stage host",
                "in_process": "stages in-process"}
# each stage's library module: what `python -m ml.<stage>` imports before it does anything
IMPORT_FLOORS = {"validate": "ml.validation", "prepare": "ml.splits", "train": "ml.training",
                 "evaluate": "ml.gate"}
# the retrain job's DVC commands today (control_api/jobs: pull, validate, train, register, push)
JOB_COMMANDS = (("pull",), ("repro", "validate"), ("repro", "prepare"),
                ("repro", "--force", "--single-item", "train"),
                ("repro", "--force", "--single-item", "evaluate"), ("push",))


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
    """Seconds for the raw data; the first `dvc repro` (it also creates the MLflow store); the best
    of two `dvc repro --force`, as in a set-up workspace; `dvc repro --force -s` of each stage; and
    each stage's import floor: a fresh process importing what the stage imports, doing nothing."""
    from ml.raw_data import ensure_raw_data
    from ml.versioning import dvc, tool_env

    seconds = {"data (generate + dvc add + push)": timed(ensure_raw_data, project, params)[0],
               "first dvc repro (creates the MLflow store)": timed(dvc, "repro", cwd=project)[0],
               "dvc repro --force, best of 2": min(timed(dvc, "repro", "--force", cwd=project)[0]
                                                   for _ in range(2))}
    for stage in STAGES:
        seconds[f"dvc repro -f -s {stage}"] = timed(dvc, "repro", "--force", "-s", stage, cwd=project)[0]
    for stage, library in IMPORT_FLOORS.items():
        code = (f"from ml import process; from {library} import STAGE; "
                "process.import_and_freeze(STAGE.libraries)")
        seconds[f"  import floor of {stage}"] = timed(
            subprocess.run, [sys.executable, "-c", code], cwd=project, env=tool_env(), check=True)[0]
    return seconds


def bare_fit_predict(project: Path, params):
    """A function timing one bare fit on train + predict_proba on validation and test."""
    from ml.splits import SPLITS, read_split
    from ml.tables import feature_frame, labels
    from ml.training import build_pipeline

    parts = {name: read_split(project, name) for name in SPLITS}
    x = {name: feature_frame(part, params.schema) for name, part in parts.items()}
    y_train = labels(parts["train"], params.schema)

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
    from ml.training import train
    from ml.validation import validate_file

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


def in_fresh_process(mode: str, project: Path, *extra: str) -> dict[str, float]:
    """One of this script's measurements in a new interpreter, whose first call is its first."""
    output = subprocess.run([sys.executable, __file__, mode, str(project), *extra], check=True,
                            stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.splitlines()[-1])


def in_process_main(project: Path) -> int:
    from ml import params as params_module
    from ml import process, training, validation

    config.quiet_third_parties()
    params = params_module.load(project)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # as run_stage() starts the train stage: the probe, the imports, the frozen collector
        pool.submit(training.hardware_probe(params))
        process.import_and_freeze(training.LIBRARIES + validation.LIBRARIES)
        imports_s = time.perf_counter() - started
        figures = in_process(project, params)
    print(json.dumps({"imports_s": imports_s, **figures}))
    return 0


def retrain_job_main(project: Path, ways: list[str]) -> int:
    """A retrain job's steps in a warm worker, each way in `ways` (`dvc_repro`, `in_process`; a
    stage host serves the first when one runs), each followed by the champion's load."""
    from control_api import serving
    from ml import in_process, registry
    from ml import params as params_module
    from ml.versioning import dvc

    config.quiet_third_parties()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    preload_s = timed(in_process.preload)[0]  # the worker's start, not the job's
    params = params_module.load(project)
    name = params.registry.model_name
    # a retrain promotes only a better model: let an equal one through, so each round serves a new one
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["evaluate"]["min_improvement"] = 0.0
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    def served(started: float) -> dict[str, float]:
        steps_s = time.perf_counter() - started
        champion = registry.champion(name)
        load_s = timed(serving.load, name, str(champion.version), params.schema)[0]
        return {"steps_s": steps_s, "champion_load_s": load_s, "version": int(champion.version)}

    def by_dvc_repro() -> dict[str, float]:
        started = time.perf_counter()
        for command in JOB_COMMANDS:
            dvc(*command, cwd=project)
        return served(started)

    def stages_in_process() -> dict[str, float]:
        started = time.perf_counter()
        dvc("pull", cwd=project)
        in_process.run(project, actor="bench", log=lambda line: None)
        dvc("push", cwd=project)
        return served(started)

    hosted = (config.state_dir() / "run" / "stage-host.sock").exists()
    ways_to_run = {"dvc_repro": by_dvc_repro, "in_process": stages_in_process}
    runs = {way: [] for way in ways}
    for _ in range(2):  # alternating, each side's best counts
        for way in ways:
            runs[way].append(ways_to_run[way]())
    figures = {"worker_preload_s": preload_s}
    for way, measured in runs.items():
        best = min(measured, key=lambda run: run["steps_s"])
        label = f"{way}_hosted" if hosted and way == "dvc_repro" else way
        figures.update({f"retrain_{label}_steps_s": best["steps_s"],
                        f"retrain_{label}_champion_load_s": best["champion_load_s"]})
        if not all(r["version"] == measured[0]["version"] + i * len(ways) for i, r in enumerate(measured)):
            raise RuntimeError(f"a retrain ({way}) did not serve a new champion: {measured}")
    print(json.dumps(figures))
    return 0


def bench_size(rows: int, retrain: bool) -> dict:
    from ml import params as params_module
    from ml.versioning import dvc

    with tempfile.TemporaryDirectory(prefix=f"opcon-bench-{rows}-") as tmp:
        for name in STATE_VARIABLES:
            os.environ.pop(name, None)
        os.environ["OPCON_HOME"] = str(Path(tmp) / "state")
        project = build_project(Path(tmp), rows)
        params = params_module.load(project)
        stages = time_stages(project, params)
        figures = in_fresh_process("--in-process", project)
        if retrain:
            figures.update(in_fresh_process("--retrain-job", project, "--ways", "dvc_repro,in_process"))
        with stage_host(project):
            stages["dvc repro --force, warm stage host, best of 2"] = min(
                timed(dvc, "repro", "--force", cwd=project)[0] for _ in range(2))
            if retrain:
                figures.update(in_fresh_process("--retrain-job", project, "--ways", "dvc_repro"))
    return {"rows": rows, "stages_s": stages, "dvc_repro_s": stages["dvc repro --force, best of 2"],
            "dvc_repro_hosted_s": stages["dvc repro --force, warm stage host, best of 2"], **figures}


@contextlib.contextmanager
def stage_host(project: Path):
    """`python -m ml.stage_host` for the bench's state dir while the block runs (its start, the
    imports, not counted: a host is started once, beside the job worker)."""
    from ml.versioning import tool_env

    host = subprocess.Popen([sys.executable, "-m", "ml.stage_host"], cwd=project, env=tool_env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        if "ready" not in host.stdout.readline():
            raise RuntimeError("the stage host did not start")
        threading.Thread(target=host.stdout.read, daemon=True).start()  # its log, drained
        yield host
    finally:
        host.terminate()
        host.wait(timeout=60)


def print_size(result: dict) -> None:
    print(f"\n== {result['rows']:,} rows ==")
    print(f"{'step':<52} {'seconds':>8}")
    for stage, seconds in result["stages_s"].items():
        print(f"{stage:<52} {seconds:8.2f}")
    per_stage = sum(v for k, v in result["stages_s"].items() if k.startswith("dvc repro -f "))
    floors = sum(v for k, v in result["stages_s"].items() if "import floor" in k)
    print(f"{'the four dvc repro -f -s, added up':<52} {per_stage:8.2f}")
    print(f"{'the four import floors, added up':<52} {floors:8.2f}")
    if "retrain_in_process_steps_s" in result:
        print(f"{'worker start: ml.in_process.preload() (once)':<52} {result['worker_preload_s']:8.2f}")
        for way, title in RETRAIN_WAYS.items():
            if f"retrain_{way}_steps_s" in result:
                print(f"{'retrain job steps, ' + title:<52} {result[f'retrain_{way}_steps_s']:8.2f}")
                print(f"{'  + the new champion loaded as the API does':<52} "
                      f"{result[f'retrain_{way}_champion_load_s']:8.2f}")
    print(f"{'fresh process: imports (not counted)':<52} {result['imports_s']:8.2f}")
    print(f"{'in process: bare fit+predict, best of 3':<52} {result['bare_fit_predict_s']:8.2f}")
    for call, title in (("first", "first call"), ("second", "later calls, best")):
        print(f"{'validate_file(), ' + title:<52} {result[f'validate_{call}_s']:8.2f}")
        print(f"{'train(), ' + title:<52} {result[f'train_{call}_s']:8.2f}")
    once = sum(result[f"{part}_first_s"] - result[f"{part}_second_s"] for part in ("validate", "train"))
    print(f"{'once per process (first - later)':<52} {once:8.2f}")
    print("tracking/validation/emission overhead over bare fit+predict: "
          f"{result['overhead_second_pct']:.0f} % per training, "
          f"{result['overhead_first_pct']:.0f} % on the first call in a process")


def retrain_total(result: dict, way: str) -> float:
    return result[f"retrain_{way}_steps_s"] + result[f"retrain_{way}_champion_load_s"]


def print_summary(results: list[dict]) -> None:
    print("\n== summary ==")
    header = ("rows", "dvc repro s (cold/host)", "retrain job s (dvc/host/in-process)",
              "bare fit+predict s", "validate+train() s (1st/next)", "overhead % (1st/next)")
    print(" | ".join(header))
    for r in results:
        ours = [r[f"validate_{c}_s"] + r[f"train_{c}_s"] for c in ("first", "second")]
        retrain = (" / ".join(f"{retrain_total(r, way):.2f}" for way in RETRAIN_WAYS)
                   if "retrain_in_process_steps_s" in r else "-")
        cells = (f"{r['rows']:,}", f"{r['dvc_repro_s']:.2f} / {r['dvc_repro_hosted_s']:.2f}", retrain,
                 f"{r['bare_fit_predict_s']:.2f}",
                 f"{ours[0]:.2f} / {ours[1]:.2f}",
                 f"{r['overhead_first_pct']:.0f} / {r['overhead_second_pct']:.0f}")
        print(" | ".join(cell.rjust(len(title)) for cell, title in zip(cells, header, strict=True)))
    by_rows = {r["rows"]: r for r in results}

    def goal(text: str, value: float, limit: float, unit: str) -> None:
        print(f"goal: {text} <= {limit:g} {unit}: {value:.1f} {unit} {'PASS' if value <= limit else 'MISS'}")

    if 10_000 in by_rows:
        r = by_rows[10_000]
        goal("10k dvc repro, warm stage host", r["dvc_repro_hosted_s"], GOAL_10K_REPRO_S, "s")
        goal("10k dvc repro, cold (no host)", r["dvc_repro_s"], GOAL_10K_REPRO_S, "s")
        if "retrain_in_process_steps_s" in r:
            for way, title in RETRAIN_WAYS.items():
                goal(f"10k retrain job, steps + champion load ({title})", retrain_total(r, way),
                     GOAL_10K_RETRAIN_S, "s")
    if 100_000 in by_rows:
        goal("overhead at 100k, first call in a fresh process", by_rows[100_000]["overhead_first_pct"],
             GOAL_100K_FIRST_OVERHEAD_PCT, "%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000],
                        help="data sizes to run (default: 10000 100000)")
    parser.add_argument("--quick", action="store_true", help="10,000 rows only")
    parser.add_argument("--retrain-rows", type=int, nargs="*", default=[10_000],
                        help="sizes that also time a retrain job (default: 10000)")
    parser.add_argument("--in-process", type=Path, metavar="PROJECT", help=argparse.SUPPRESS)
    parser.add_argument("--retrain-job", type=Path, metavar="PROJECT", help=argparse.SUPPRESS)
    parser.add_argument("--ways", default="dvc_repro,in_process", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        return in_process_main(args.in_process)
    if args.retrain_job:
        return retrain_job_main(args.retrain_job, args.ways.split(","))
    config.quiet_third_parties()
    sizes = [10_000] if args.quick else args.rows
    results = [bench_size(rows, rows in args.retrain_rows) for rows in sizes]
    for result in results:
        print_size(result)
    print_summary(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
