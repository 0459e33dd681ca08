"""Benchmark of serving: our control API against `mlflow models serve`, on the same champion.

In one run, on loopback, in a throw-away DVC project with its own $OPCON_HOME (built like
tests/conftest.py `build_project`, 10,000 generated rows, `dvc repro` trains and registers the
champion of params.yaml):

1. the servers, 2 workers each: our API under gunicorn (as tests/live.py starts it) with a
   challenger (a shallower forest, trained second) shadowing every request; the same API with
   OPCON_SHADOW=false; the floor (bench/floor_app.py: Flask and the same ONNX session, nothing
   else, under the same gunicorn settings); and `mlflow models serve -m models:/<name>@champion
   --env-manager local` (uvicorn);
2. single rows with wrk (bench/wrk_post.lua), c=1 and c=8: our `POST /api/v1/predict` with
   {"records": [record]}, signed three ways (the service token, an operator's personal API token,
   an operator's session), without shadowing, with `?explain=true` (SHAP), against the floor and
   MLflow's `POST /invocations` with {"dataframe_records": [record]};
   the record is the schema's typical values (GET /api/v1/schema). p50, p99, requests/s and the
   server's CPU per request (user + system of all its processes over the run, divided by the
   requests answered: on a shared machine a steadier comparison than req/s), the medians of
   `--rounds` runs in alternating order; then shadowing on, off and the floor at c=8 back to back,
   `--cost-rounds` times, whose per-round ratios the shadowing goals use (runs seconds apart, not
   minutes), with the shadow scorer threads' own CPU per request (opcon_shadow_cpu_seconds_total);
3. batches (generated rows, a seed apart from the training data): `POST /api/v1/predict/batch`
   (CSV in, scored CSV out, logged as Parquet) end to end, against `predict_proba` of the same
   champion in process (mlflow.sklearn.load_model), and MLflow's /invocations with the 10k batch as
   JSON (dataframe_split) for reference; then a 1,000,000-row CSV (the 100k rows ten times) once,
   and a 1,000,000-row labelled batch through `POST /api/v1/datasets` (validation only: no worker
   runs). Each with the peak resident memory the serving gunicorn worker grew by (VmHWM, reset
   before the request through /proc/<pid>/clear_refs);
4. after the servers are stopped, where a request's time goes (a plain prediction takes the fast
   path, control_api/predict_fast_path.py): cProfile over an in-process Flask
   test-client loop of /api/v1/predict (create_app testing mode), per part of the request, and
   over one batch (its writer thread profiled too).

    .venv/bin/python bench/serve.py                     # the whole run (about 10 minutes)
    .venv/bin/python bench/serve.py --duration 5 --batch-rows 10000 --no-profile --no-million

Prints the tables and the goals as PASS/MISS lines; exits 0 unless something crashes or a server
answers a check request with an error. The figures are also written to bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import dataclasses
import json
import os
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml import config  # noqa: E402

VENV_BIN = Path(sys.executable).parent
WRK_SCRIPT = REPO / "bench" / "wrk_post.lua"
RESULTS = REPO / "bench" / "results" / "serve.json"
TOKEN = "bench-serve-token"
STATE_VARIABLES = ("OPCON_HOME", "OPCON_PROJECT_DIR", "OPCON_DVC_REMOTE", "OPCON_ARTIFACT_ROOT",
                   "MLFLOW_TRACKING_URI", "PROMETHEUS_MULTIPROC_DIR", "OPCON_API_TOKEN")
CONCURRENCY = ((1, 1), (2, 8))  # (wrk threads, connections)
BATCH_SEED = 11  # the training data uses seed 7
MLFLOW_BATCH_TIMEOUT_S = 60.0

GOAL_P50_C1_MS = 2.0
GOAL_RPS_C8 = 1_000.0
GOAL_P99_C8_MS = 20.0
GOAL_100K_BATCH_S = 2.0
GOAL_1M_BATCH_S = 6.0
GOAL_1M_RSS_MB = 200.0
GOAL_EXPLAINED_P50_MS = 30.0
MILLION = 1_000_000

WRK_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


# ---------------------------------------------------------------------------------------- set-up

def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_project(root: Path, rows: int) -> Path:
    """A DVC project like tests/conftest.py build_project: `rows` generated rows, seed 7."""
    from ml import params as params_module
    from ml import workspace
    from ml.raw_data import ensure_raw_data

    raw = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
    raw["dataset"]["generator"].update({"rows": rows, "seed": 7})
    raw["emissions"]["measure_power_secs"] = 1
    project = workspace.create(root / "project", raw)
    ensure_raw_data(project, params_module.load(project))
    return project


def train_champion(project: Path):
    """`dvc repro`: validate, prepare, train, evaluate (registers and promotes the first model)."""
    from ml import params as params_module
    from ml import registry
    from ml.versioning import repro

    repro(project)
    params = params_module.load(project)
    champion = registry.champion(params.registry.model_name)
    if champion is None:
        raise RuntimeError("dvc repro finished but the registry has no champion")
    return params, champion


# --------------------------------------------------------------------------------------- servers

def server_env(state: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STATE_VARIABLES}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    return {**env, "OPCON_HOME": str(state), **extra}


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after 20 s."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> float:
    """Seconds until GET `url` answers 200; fails with the server's log tail otherwise."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}) before {url} answered:\n"
                               f"{tail(log)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s:\n{tail(log)}")


def start_api(project: Path, state: Path, port: int) -> subprocess.Popen:
    env = server_env(state, {"OPCON_PROJECT_DIR": str(project), "OPCON_API_TOKEN": TOKEN,
                             "API_PORT": str(port), "API_WORKERS": "2",
                             "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus")})
    return start([str(VENV_BIN / "gunicorn"), "-c", "control_api/gunicorn_conf.py",
                  "control_api:create_app()"], env, state / "logs" / "api.log")


def start_ours_without_shadow(project: Path, state: Path, port: int) -> subprocess.Popen:
    """A second deployment of the API on the same state, with OPCON_SHADOW=false."""
    env = server_env(state, {"OPCON_PROJECT_DIR": str(project), "OPCON_API_TOKEN": TOKEN,
                             "API_PORT": str(port), "API_WORKERS": "2", "OPCON_SHADOW": "false",
                             "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus-no-shadow")})
    return start([str(VENV_BIN / "gunicorn"), "-c", "control_api/gunicorn_conf.py",
                  "--pid", str(state / "gunicorn-no-shadow.pid"),
                  "--control-socket", str(state / "gunicorn-no-shadow.ctl"), "control_api:create_app()"],
                 env, state / "logs" / "api-no-shadow.log")


def start_floor(project: Path, state: Path, port: int) -> subprocess.Popen:
    """bench/floor_app.py under the same gunicorn settings: the ONNX session and nothing else."""
    env = server_env(state, {"OPCON_PROJECT_DIR": str(project), "API_PORT": str(port),
                             "API_WORKERS": "2", "PYTHONPATH": str(REPO)})
    return start([str(VENV_BIN / "gunicorn"), "-c", "control_api/gunicorn_conf.py",
                  "--pid", str(state / "gunicorn-floor.pid"),
                  "--control-socket", str(state / "gunicorn-floor.ctl"), "bench.floor_app:create_app()"],
                 env, state / "logs" / "floor.log")


def make_challenger(project: Path, params) -> str:
    """A shallower forest trained on the same data: kept as the challenger, it shadows live traffic."""
    from ml import registry
    from ml.versioning import repro

    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["train"]["hyperparameters"]["random_forest"].update({"n_estimators": 20, "max_depth": 6})
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    repro(project)
    found = registry.challenger(params.registry.model_name)
    if found is None:
        raise RuntimeError("the second training was promoted: no challenger to shadow with")
    return str(found.version)


def check_new_targets(api_url: str, floor_url: str, body: str) -> None:
    check_200("floor", f"{floor_url}/predict", body, {})
    explained = check_200("ours explain", f"{api_url}/api/v1/predict?explain=true", body,
                          {"Authorization": f"Bearer {TOKEN}"})
    print(f"check: explained by {explained['explained_by']}")
    shadow = requests.get(f"{api_url}/api/v1/models/compare", timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()["shadow"]
    print(f"check: shadowing {shadow}")


def start_mlflow(state: Path, model_name: str, port: int) -> subprocess.Popen:
    db = state / "mlflow" / "mlflow.db"
    env = server_env(state, {"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    return start([str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{model_name}@champion",
                  "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "--workers", "2"],
                 env, state / "logs" / "mlflow-serve.log")


# ----------------------------------------------------------------------------------- single rows

def typical_record(api_url: str) -> dict:
    """One record of the schema's typical values (numbers as floats, as the signature says)."""
    answer = requests.get(f"{api_url}/api/v1/schema", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=10)
    answer.raise_for_status()
    record = {}
    for feature in answer.json()["features"]:
        value = feature.get("typical")
        if value is None:
            value = feature["categories"][0] if feature.get("categories") else feature["min"]
        record[feature["name"]] = float(value) if feature["type"] == "number" else value
    return record


def user_tokens(api_url: str) -> tuple[str, str]:
    """An operator with a personal API token and a signed-in session, made with the service token."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    password = "bench-operator-password"
    requests.post(f"{api_url}/api/v1/users", headers=admin, timeout=30, json={
        "username": "bench-operator", "role": "operator", "password": password}).raise_for_status()
    token = requests.post(f"{api_url}/api/v1/tokens", headers=admin, timeout=30, json={
        "owner": "bench-operator", "name": "bench", "role": "operator"})
    token.raise_for_status()
    session = requests.post(f"{api_url}/api/v1/auth/login", timeout=30, json={
        "username": "bench-operator", "password": password})
    session.raise_for_status()
    return token.json()["token"], session.json()["token"]


def check_200(name: str, url: str, body: str, headers: dict) -> dict:
    answer = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                           timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"{name}: POST {url} answered {answer.status_code}: {answer.text[:500]}")
    return answer.json()


def wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * WRK_UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> dict:
    """p50/p90/p99 (ms), requests/s, request and error counts from `wrk --latency` output."""
    found = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in ", output, re.MULTILINE)
    if not {"50", "99"} <= found.keys() or rps is None or total is None:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {"p50_ms": wrk_ms(found["50"]), "p90_ms": wrk_ms(found["90"]),
            "p99_ms": wrk_ms(found["99"]), "rps": float(rps.group(1)),
            "requests": int(total.group(1)), "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                      map(int, sockets.groups()), strict=True)) if sockets else {}}


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a process and all its descendants so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, waiting = 0.0, [pid]
    while waiting:
        current = waiting.pop()
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in os.listdir(f"/proc/{current}/task"):
                waiting += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
    return total


def run_wrk(target: dict, threads: int, connections: int, seconds: float) -> dict:
    """wrk POSTing target["body"] (with target["auth"] as Authorization) to target["url"]."""
    env = {**os.environ, "WRK_BODY": target["body"], "WRK_AUTH": target["auth"] or ""}
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
            "-s", str(WRK_SCRIPT), target["url"]]
    server = target.get("server")
    before = tree_cpu_seconds(server.pid) if server else None
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    figures = parse_wrk(done.stdout)
    if server:  # what the server's processes spent per answered request: steadier than req/s
        figures["cpu_ms"] = 1e3 * (tree_cpu_seconds(server.pid) - before) / max(figures["requests"], 1)
    return figures


def bench_single(targets: list[dict], seconds: float, warmup: float, rounds: int) -> list[dict]:
    """wrk against each target at each concurrency, after a discarded warm-up run; `rounds` times,
    the order reversed every other round so that a machine getting busier favours no target. Each
    figure is the median over the rounds."""
    runs: dict[tuple[str, int], list[dict]] = {}
    for target in targets:
        if warmup > 0:  # both workers of each server have loaded the model and are warm
            run_wrk(target, 2, 8, warmup)
    for round_number in range(rounds):
        for target in targets if round_number % 2 == 0 else reversed(targets):
            for threads, connections in CONCURRENCY:
                figures = run_wrk(target, threads, connections, seconds)
                runs.setdefault((target["path"], connections), []).append(figures)
    rows = []
    for target in targets:
        for _threads, connections in CONCURRENCY:
            done = runs[(target["path"], connections)]
            rows.append({"path": target["path"], "concurrency": connections, "rounds": len(done),
                         "rps_each": [r["rps"] for r in done],
                         **{key: statistics.median(r[key] for r in done)
                            for key in ("p50_ms", "p90_ms", "p99_ms", "rps")},
                         "cpu_ms": statistics.median(r.get("cpu_ms", float("nan")) for r in done),
                         "requests": sum(r["requests"] for r in done),
                         "non_2xx": sum(r["non_2xx"] for r in done),
                         "socket_errors": {kind: sum(r["socket_errors"].get(kind, 0) for r in done)
                                           for kind in ("connect", "read", "write", "timeout")}})
    return rows


def shadow_cpu_seconds(api_url: str) -> float:
    """The shadow scorer threads' CPU time so far, summed over the workers (from /metrics)."""
    text = requests.get(f"{api_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=30).text
    found = re.search(r"^opcon_shadow_cpu_seconds_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else float("nan")


def bench_shadow_cost(on: dict, off: dict, floor: dict, *, seconds: float, rounds: int,
                      api_url: str) -> dict:
    """Shadowing on, off and the floor at c=8, back to back, `rounds` times (the order turned each
    round): each round's ratios compare runs seconds apart, so a machine whose speed drifts over the
    minutes of the whole bench moves both sides alike. The medians of the per-round ratios, and the
    scorer threads' own CPU per shadowed request (opcon_shadow_cpu_seconds_total over the runs)."""
    order = [on, off, floor]
    ratios_off, ratios_floor, on_runs, cpu = [], [], [], 0.0
    for round_number in range(rounds):
        figures = {}
        for target in order[round_number % 3:] + order[:round_number % 3]:
            before = shadow_cpu_seconds(api_url) if target is on else 0.0
            figures[target["path"]] = run_wrk(target, 2, 8, seconds)
            if target is on:
                cpu += shadow_cpu_seconds(api_url) - before
        ours = figures[on["path"]]
        on_runs.append(ours)
        ratios_off.append(ours["rps"] / figures[off["path"]]["rps"])
        ratios_floor.append(ours["rps"] / figures[floor["path"]]["rps"])
    requests_on = sum(r["requests"] for r in on_runs)
    cpu_ms = statistics.median(r["cpu_ms"] for r in on_runs)
    return {"rounds": rounds, "seconds": seconds, "ratio_to_off": statistics.median(ratios_off),
            "ratio_to_floor": statistics.median(ratios_floor),
            "ratios_to_off": ratios_off, "ratios_to_floor": ratios_floor,
            "scorer_cpu_us_per_request": 1e6 * cpu / max(requests_on, 1),
            "server_cpu_ms_per_request": cpu_ms}


def print_shadow_cost(cost: dict) -> None:
    print(f"\n== shadowing's cost at c=8: on / off / floor back to back, {cost['rounds']} rounds of "
          f"{cost['seconds']:g} s ==")
    print("  on / off per round:   " + "  ".join(f"{r:.3f}" for r in cost["ratios_to_off"]))
    print("  on / floor per round: " + "  ".join(f"{r:.3f}" for r in cost["ratios_to_floor"]))
    share = cost["scorer_cpu_us_per_request"] / (1e3 * cost["server_cpu_ms_per_request"])
    print(f"  the scorer threads' CPU: {cost['scorer_cpu_us_per_request']:.1f} us per shadowed request "
          f"({share:.1%} of the server's {cost['server_cpu_ms_per_request']:.3f} ms per request)")


def median_seconds(function, repeats: int) -> tuple[float, list[float]]:
    runs = [timed(function)[0] for _ in range(repeats)]
    return statistics.median(runs), runs


def _status_kb(pid: int, key: str) -> int:
    line = next(li for li in Path(f"/proc/{pid}/status").read_text().splitlines() if li.startswith(key))
    return int(line.split()[1])


def worker_pids(master: subprocess.Popen) -> list[int]:
    """gunicorn's workers: the master's children."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def peak_rss_growth_mb(master: subprocess.Popen, action) -> tuple[float, object]:
    """The most any worker's peak resident memory rose above its resident memory before `action`
    (MB), and what `action` returned. The peaks start again from the current size first."""
    pids = worker_pids(master)
    before = {}
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before[pid] = _status_kb(pid, "VmRSS:")
    result = action()
    growth = max((_status_kb(pid, "VmHWM:") - before[pid]) * 1024 / 1e6 for pid in pids)
    return growth, result


def api_upload(api_url: str, route: str, csv_bytes: bytes) -> requests.Response:
    return requests.post(f"{api_url}/api/v1/{route}", headers={"Authorization": f"Bearer {TOKEN}"},
                         files={"file": ("batch.csv", csv_bytes, "text/csv")}, timeout=600)


def api_batch(api_url: str, state: Path, csv_bytes: bytes, rows: int) -> dict:
    """One POST /predict/batch, response read whole; checks the row count and the Parquet log."""
    answer = api_upload(api_url, "predict/batch", csv_bytes)
    if answer.status_code != 200:
        raise RuntimeError(f"batch of {rows} rows: {answer.status_code} {answer.text[:500]}")
    scored = answer.content.count(b"\n") - 1
    if scored != rows:
        raise RuntimeError(f"batch of {rows} rows came back with {scored} rows")
    request_id = answer.headers["X-Request-Id"]
    if not (state / "predictions" / f"batch-{request_id}.parquet").is_file():
        raise RuntimeError(f"batch {request_id} answered but is not in the prediction log")
    return {"served_by": answer.headers.get("X-Served-By")}


def mlflow_batch(mlflow_url: str, body: str, rows: int) -> None:
    answer = requests.post(f"{mlflow_url}/invocations", data=body,
                           headers={"Content-Type": "application/json"},
                           timeout=MLFLOW_BATCH_TIMEOUT_S)
    if answer.status_code != 200:
        raise RuntimeError(f"{answer.status_code} {answer.text[:300]}")
    if len(answer.json()["predictions"]) != rows:
        raise RuntimeError("wrong number of predictions")


def bench_batches_http(api_url: str, mlflow_url: str, state: Path, schema, master: subprocess.Popen,
                       *, sizes: list[int], repeats: int) -> tuple[list[dict], dict[int, object]]:
    """Our batch endpoint for every size, MLflow's for the 10k one; returns the frames too."""
    from ml.generate import generate

    rows_out, frames = [], {}
    for rows in sizes:
        frame = generate(rows, BATCH_SEED)
        frames[rows] = frame
        csv_bytes = frame.to_csv(index=False, lineterminator="\n").encode()
        served_by = api_batch(api_url, state, csv_bytes, rows)["served_by"]  # warm-up and check
        runs, growth = [], 0.0
        for _ in range(repeats):
            grew, (seconds, _) = peak_rss_growth_mb(
                master, lambda b=csv_bytes, n=rows: timed(api_batch, api_url, state, b, n))
            runs.append(seconds)
            growth = max(growth, grew)
        seconds = statistics.median(runs)
        rows_out.append({"path": "ours POST /api/v1/predict/batch (CSV in/out, logged)", "rows": rows,
                         "seconds": seconds, "runs_s": runs, "rows_per_s": rows / seconds,
                         "served_by": served_by, "upload_mb": len(csv_bytes) / 1e6,
                         "peak_rss_growth_mb": growth})
        if rows == 10_000:
            split = frame[schema.feature_names].to_json(orient="split", index=False)
            body = '{"dataframe_split": ' + split + "}"
            entry = {"path": "mlflow POST /invocations (JSON dataframe_split)", "rows": rows,
                     "upload_mb": len(body) / 1e6}
            try:
                mlflow_batch(mlflow_url, body, rows)
                seconds, runs = median_seconds(lambda b=body, n=rows: mlflow_batch(mlflow_url, b, n),
                                               repeats)
                entry.update({"seconds": seconds, "runs_s": runs, "rows_per_s": rows / seconds})
            except (requests.RequestException, RuntimeError) as error:
                entry["error"] = str(error)[:300]
            rows_out.append(entry)
    return rows_out, frames


def bench_million(api_url: str, state: Path, master: subprocess.Popen, hundred_k: bytes) -> list[dict]:
    """A 1,000,000-row CSV through /predict/batch (the 100k rows ten times: the model's work is the
    same), then a 1,000,000-row labelled batch through /datasets (validated, then queued)."""
    from ml.generate import generate

    header, body = hundred_k.split(b"\n", 1)
    copies = MILLION // (hundred_k.count(b"\n") - 1)
    rows = copies * (hundred_k.count(b"\n") - 1)
    million = header + b"\n" + body * copies
    growth, (seconds, answer) = peak_rss_growth_mb(
        master, lambda: timed(api_batch, api_url, state, million, rows))
    rows_out = [{"path": "ours POST /api/v1/predict/batch (CSV in/out, logged)", "rows": rows,
                 "seconds": seconds, "runs_s": [seconds], "rows_per_s": rows / seconds,
                 "served_by": answer["served_by"], "upload_mb": len(million) / 1e6,
                 "peak_rss_growth_mb": growth}]
    labelled = generate(MILLION, BATCH_SEED + 1, first_id=100_000_000)
    upload = labelled.to_csv(index=False, lineterminator="\n").encode()
    # both workers validate a small batch first, at once (each takes one): libraries loaded
    small = generate(1_000, BATCH_SEED + 2, first_id=200_000_000).to_csv(index=False).encode()
    with ThreadPoolExecutor(2) as both:
        list(both.map(lambda _: api_upload(api_url, "datasets", small), range(2)))
    growth, (seconds, answer) = peak_rss_growth_mb(
        master, lambda: timed(api_upload, api_url, "datasets", upload))
    if answer.status_code not in (202, 409):  # 409: the small batch's job still waits; validated all the same
        raise RuntimeError(f"dataset upload: {answer.status_code} {answer.text[:500]}")
    rows_out.append({"path": "ours POST /api/v1/datasets (validation of a labelled CSV)",
                     "rows": MILLION, "seconds": seconds, "runs_s": [seconds],
                     "rows_per_s": MILLION / seconds, "upload_mb": len(upload) / 1e6,
                     "peak_rss_growth_mb": growth})
    return rows_out


def bench_batches_in_process(model_name: str, schema, frames: dict, repeats: int) -> list[dict]:
    """predict_proba of the champion loaded with mlflow.sklearn, on the same rows."""
    import mlflow.sklearn

    from ml import tracking
    from ml.tables import feature_frame

    tracking.configure()
    model = mlflow.sklearn.load_model(f"models:/{model_name}@champion")
    results = []
    for rows, frame in frames.items():
        x = feature_frame(frame, schema)
        model.predict_proba(x.head(100))  # warm
        seconds, runs = median_seconds(lambda x=x: model.predict_proba(x), repeats)
        results.append({"path": "in process predict_proba (mlflow.sklearn.load_model)",
                        "rows": rows, "seconds": seconds, "runs_s": runs,
                        "rows_per_s": rows / seconds})
    return results


# --------------------------------------------------------------------------------------- profile

# (part of a request, [(file suffix, function)]): cumulative time of these functions per request.
# Indented parts are inside the part above them; "other" lines are what the listed parts leave.
PREDICT_PARTS = (
    ("WSGI app (the fast path of POST /predict)", [("control_api/predict_fast_path.py", "__call__")]),
    ("  body read and checked", [("control_api/predict_fast_path.py", "_body")]),
    ("  auth: bearer token", [("control_api/identity/resolver.py", "resolve")]),
    ("  JSON parse (orjson)", [("~", "<orjson.loads>")]),
    ("  validation: the request model (pydantic)", [("pydantic/main.py", "model_validate")]),
    ("  scoring (control_api.scoring)", [("control_api/scoring.py", "score_records")]),
    ("    model: ServedModel.predict_proba", [("control_api/serving.py", "predict_proba")]),
    ("    outputs + prediction dicts", [("control_api/serving.py", "outputs"),
                                         ("control_api/scoring.py", "_prediction_dicts")]),
    ("    metrics: ours (observe)", [("monitoring/metrics.py", "observe")]),
    ("    prediction log append", [("monitoring/prediction_log.py", "append")]),
    ("    shadow hand-over", [("control_api/shadow.py", "submit")]),
    ("    request id (uuid4)", [("uuid.py", "uuid4")]),
    ("  metrics: HTTP requests", [("control_api/metrics.py", "observe")]),
    ("  JSON response (orjson)", [("~", "<orjson.dumps>")]),
)
PREDICT_OTHER = {  # derived line: parent minus its listed children
    "  other (headers, start_response, settings binding)": (
        "WSGI app (the fast path of POST /predict)",
        ("  body read and checked", "  auth: bearer token", "  JSON parse (orjson)",
         "  validation: the request model (pydantic)", "  scoring (control_api.scoring)",
         "  metrics: HTTP requests", "  JSON response (orjson)")),
}
BATCH_PARTS = (  # the writer thread's parts run while the main thread scores the next chunk
    ("WSGI app, up to the answer", [("flask/app.py", "wsgi_app")]),
    ("  multipart upload parsing", [("werkzeug/formparser.py", "_parse_multipart")]),
    ("  main thread: read, check, score", [("control_api/batch_scoring.py", "score_upload")]),
    ("    CSV read (Arrow)", [("control_api/csv_input.py", "blocks")]),
    ("    features converted and checked", [("control_api/validation.py", "feature_columns")]),
    ("    model: ServedModel.predict_proba", [("control_api/serving.py", "predict_proba")]),
    ("    metrics: ours (observe)", [("monitoring/metrics.py", "observe")]),
    ("  writer thread: outputs, log, answer", [("control_api/batch_scoring.py", "write_out")]),
    ("    outputs (labels, label text)", [("control_api/batch_scoring.py", "outputs")]),
    ("    prediction log (Parquet row groups)", [("monitoring/prediction_log.py", "write"),
                                                ("monitoring/prediction_log.py", "commit")]),
    ("    scored CSV written (spooled)", [("control_api/csv_output.py", "write")]),
    ("answer read from the spooled file", [("werkzeug/wsgi.py", "__next__")]),
)


def profiled_with_threads(function) -> list[cProfile.Profile]:
    """cProfile over `function` and over every thread it starts (the batch's writer thread)."""
    import threading

    started: list[cProfile.Profile] = []

    def profile_this_thread(*_):
        sys.setprofile(None)
        profiler = cProfile.Profile()
        started.append(profiler)
        profiler.enable()

    main = cProfile.Profile()
    threading.setprofile(profile_this_thread)
    try:
        main.runcall(function)
    finally:
        threading.setprofile(None)
    return [main, *started]


def _cumulative(stats: dict, functions: list[tuple[str, str]]) -> float:
    return sum(value[3] for (path, _, name), value in stats.items()
               if any(path.replace(os.sep, "/").endswith(suffix) and name == function
                      for suffix, function in functions))


def _breakdown(profilers, parts, others: dict, calls: int) -> dict:
    stats = pstats.Stats(*profilers).stats
    per_call = {title: 1e3 * _cumulative(stats, functions) / calls for title, functions in parts}
    lines = [{"part": title, "ms": ms} for title, ms in per_call.items()]
    for title, (parent, children) in others.items():
        index = next(i for i, line in enumerate(lines) if line["part"] == parent) + 1
        index += sum(1 for line in lines[index:] if line["part"].startswith("  "))
        lines.insert(index, {"part": title,
                             "ms": per_call[parent] - sum(per_call[c] for c in children)})
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:10]
    return {"profiled_ms": 1e3 * sum(value[2] for value in stats.values()) / calls,  # self times
            "parts": lines,
            "top_self_ms": [{"function": f"{Path(path).name}:{line}:{name}",
                             "ms": 1e3 * value[2] / calls} for (path, line, name), value in ranked]}


def profile_app(project: Path, state: Path, record: dict, calls: int, batch_csv: bytes | None) -> dict:
    """Where a request's time goes, in process: create_app in testing mode, Flask test client.

    Unprofiled first (the WSGI app alone on pre-built environs, best of 3, is the part gunicorn
    runs), then cProfile over `calls` single-row predictions and over one batch.
    """
    import io

    import numpy as np
    from werkzeug.test import EnvironBuilder

    from control_api import create_app

    app = create_app({"testing": True, "state_dir": state, "project_dir": project,
                      "api_token": TOKEN})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = json.dumps({"records": [record]}).encode()

    def loop(n: int) -> None:
        for _ in range(n):
            answer = client.post("/api/v1/predict", data=body, headers=headers,
                                 content_type="application/json")
            if answer.status_code != 200:
                raise RuntimeError(f"test client: {answer.status_code} {answer.get_data(True)[:300]}")

    def wsgi_only(n: int) -> float:
        environs = [EnvironBuilder(path="/api/v1/predict", method="POST", data=body, headers=headers,
                                   content_type="application/json").get_environ() for _ in range(n)]
        started = time.perf_counter()
        for environ in environs:
            status = []
            b"".join(app.wsgi_app(environ, lambda s, h, e=None, status=status: status.append(s)))
            if not status[0].startswith("200"):
                raise RuntimeError(f"WSGI app answered {status[0]}")
        return time.perf_counter() - started

    loop(200)  # model loaded, caches warm
    wsgi_s = min(wsgi_only(calls) for _ in range(3))
    client_s = min(timed(loop, calls)[0] for _ in range(3))
    served = app.extensions["opcon"].champion.get()
    columns = {name: np.array([value]) for name, value in record.items()}
    onnx_s = min(timed(lambda: [served.predict_proba(columns, 1) for _ in range(calls)])[0]
                 for _ in range(3))
    sklearn_calls = max(calls // 20, 20)
    without_onnx = dataclasses.replace(served, onnx=None)  # the scikit-learn path, same pipeline
    sklearn_s = timed(lambda: [without_onnx.predict_proba(columns, 1)
                               for _ in range(sklearn_calls)])[0]
    profiler = cProfile.Profile()
    profiler.runcall(loop, calls)
    result = {"calls": calls, "served_by": "onnx" if served.onnx is not None else "sklearn",
              "wsgi_ms": 1e3 * wsgi_s / calls, "test_client_ms": 1e3 * client_s / calls,
              "model_onnx_ms": 1e3 * onnx_s / calls,
              "model_sklearn_ms": 1e3 * sklearn_s / sklearn_calls,
              "predict": _breakdown([profiler], PREDICT_PARTS, PREDICT_OTHER, calls)}
    if batch_csv is not None:
        def batch() -> None:
            answer = client.post("/api/v1/predict/batch", headers=headers,
                                 data={"file": (io.BytesIO(batch_csv), "batch.csv")},
                                 content_type="multipart/form-data")
            answer.get_data()  # the streamed CSV is written while it is read
            if answer.status_code != 200:
                raise RuntimeError(f"test client batch: {answer.status_code}")

        batch()
        result["batch_rows"] = batch_csv.count(b"\n") - 1
        result["batch_test_client_s"] = timed(batch)[0]
        result["batch"] = _breakdown(profiled_with_threads(batch), BATCH_PARTS, {}, 1)
    if not app.extensions["opcon"].shadow.drain(600):  # nothing writes into the state once we return
        raise RuntimeError("the in-process app's shadow scorer did not finish within 600 s")
    return result


# ---------------------------------------------------------------------------------------- report

def print_single(rows: list[dict]) -> None:
    print("\n== single row, wrk (keep-alive from wrk; gunicorn sync closes each connection); "
          "medians over rounds ==")
    header = ("path", "concurrency", "p50 ms", "p99 ms", "req/s", "CPU ms/req", "errors",
              "req/s each round")
    widths = (44, 11, 8, 8, 9, 10, 8, 24)
    print(" | ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    for r in rows:
        errors = r["non_2xx"] + sum(r["socket_errors"].values())
        cells = (r["path"], str(r["concurrency"]), f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                 f"{r['rps']:,.0f}", f"{r['cpu_ms']:.3f}", str(errors),
                 " ".join(f"{x:,.0f}" for x in r["rps_each"]))
        print(" | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))))


def print_batches(rows: list[dict]) -> None:
    print("\n== batches (peak RSS: how much the serving worker's peak resident memory grew) ==")
    print(f"{'path':<60} | {'rows':>9} | {'seconds':>8} | {'rows/s':>10} | {'MB up':>6} | "
          f"{'peak RSS':>9} | served_by")
    for r in rows:
        if "error" in r:
            print(f"{r['path']:<60} | {r['rows']:>9,} | failed: {r['error']}")
            continue
        upload = f"{r['upload_mb']:.1f}" if "upload_mb" in r else "-"
        grew = f"+{r['peak_rss_growth_mb']:.0f} MB" if "peak_rss_growth_mb" in r else "-"
        print(f"{r['path']:<60} | {r['rows']:>9,} | {r['seconds']:8.3f} | {r['rows_per_s']:>10,.0f} | "
              f"{upload:>6} | {grew:>9} | {r.get('served_by', '-')}")


def _print_breakdown(breakdown: dict, unit: str) -> None:
    total = breakdown["profiled_ms"]
    scale, label = (1e-3, "s") if unit == "s" else (1.0, "ms")
    print(f"{'part':<52} | {label + '/request':>10} | {'% of profiled':>13}")
    for part in breakdown["parts"]:
        print(f"{part['part']:<52} | {part['ms'] * scale:10.3f} | {100 * part['ms'] / total:12.1f}%")
    print(f"{'(profiled total, incl. the test client)':<52} | {total * scale:10.3f} |")
    print("  most self time:")
    for entry in breakdown["top_self_ms"][:8]:
        print(f"  {entry['ms'] * scale:9.3f} {label}  {entry['function']}")


def print_profile(profile: dict, p50_ours_ms: float | None) -> None:
    print(f"\n== where a /api/v1/predict request goes (in process, create_app testing mode, "
          f"{profile['calls']:,} calls, served_by {profile['served_by']}) ==")
    print(f"no profiler: WSGI app alone {profile['wsgi_ms']:.3f} ms per request, through the Flask "
          f"test client {profile['test_client_ms']:.3f} ms")
    if p50_ours_ms is not None:
        print(f"gunicorn p50 at c=1 was {p50_ours_ms:.3f} ms: HTTP parsing, gunicorn, a new "
              f"connection per request and loopback ≈ {p50_ours_ms - profile['wsgi_ms']:.3f} ms")
    print(f"model alone, one row: ONNX {profile['model_onnx_ms']:.3f} ms, "
          f"scikit-learn {profile['model_sklearn_ms']:.3f} ms")
    print("cProfile (it inflates many small calls; compare shares, not absolute figures):")
    _print_breakdown(profile["predict"], "ms")
    if "batch" in profile:
        print(f"\n== where a {profile['batch_rows']:,}-row POST /api/v1/predict/batch goes "
              f"(in process, Flask test client: {profile['batch_test_client_s']:.2f} s unprofiled) ==")
        _print_breakdown(profile["batch"], "s")


def goals(single: list[dict], batches: list[dict], shadow_cost: dict | None) -> list[dict]:
    def find(path: str, concurrency: int) -> dict | None:
        return next((r for r in single if r["path"].startswith(path)
                     and r["concurrency"] == concurrency), None)

    lines = []
    ours1, ours8, theirs8 = find("ours", 1), find("ours", 8), find("mlflow", 8)
    plain8, floor8 = find("ours, shadowing off", 8), find("floor", 8)
    explained1 = find("ours POST /api/v1/predict?explain=true", 1)
    if shadow_cost:  # the paired runs: steadier than medians of runs minutes apart
        ratio = shadow_cost["ratio_to_off"]
        lines.append({"goal": "c=8 with the challenger shadowing loses <= 5 % of the req/s without it "
                              "(median of paired rounds)",
                      "value": f"{ratio - 1:+.1%}", "pass": ratio >= 0.95})
        ratio = shadow_cost["ratio_to_floor"]
        lines.append({"goal": "c=8 with shadowing >= 80 % of the floor (median of paired rounds)",
                      "value": f"{ratio:.0%}", "pass": ratio >= 0.80})
        lines.append({"goal": "the shadow scorer threads' CPU per shadowed request (information)",
                      "value": f"{shadow_cost['scorer_cpu_us_per_request']:.1f} us", "pass": None})
    if ours8 and plain8:
        ratio = ours8["rps"] / plain8["rps"]
        lines.append({"goal": "c=8 with the challenger shadowing loses <= 5 % of the req/s without it "
                              "(medians of the table)",
                      "value": f"{ours8['rps']:,.0f} vs {plain8['rps']:,.0f} req/s ({ratio - 1:+.1%})",
                      "pass": ratio >= 0.95})
    if ours8 and plain8 and floor8:
        lines.append({"goal": "server CPU per request at c=8 (ms): shadowing on / off / floor",
                      "value": f"{ours8['cpu_ms']:.3f} / {plain8['cpu_ms']:.3f} / {floor8['cpu_ms']:.3f} "
                               f"(shadowing {ours8['cpu_ms'] / plain8['cpu_ms'] - 1:+.1%}, "
                               f"floor / ours {floor8['cpu_ms'] / ours8['cpu_ms']:.0%})",
                      "pass": None})
    if ours8 and floor8:
        ratio = ours8["rps"] / floor8["rps"]
        lines.append({"goal": "c=8 with shadowing >= 80 % of the floor (Flask + ONNX only; medians of "
                              "the table)",
                      "value": f"{ours8['rps']:,.0f} vs {floor8['rps']:,.0f} req/s ({ratio:.0%})",
                      "pass": ratio >= 0.80})
    if explained1:
        lines.append({"goal": f"an explained single row p50 <= {GOAL_EXPLAINED_P50_MS:g} ms at c=1",
                      "value": f"{explained1['p50_ms']:.2f} ms",
                      "pass": explained1["p50_ms"] <= GOAL_EXPLAINED_P50_MS})
    personal8 = find("ours POST /api/v1/predict (personal token)", 8)
    if ours8 and personal8:
        ratio = personal8["rps"] / ours8["rps"]
        lines.append({"goal": "c=8 with a personal token within 5 % of the service token's req/s",
                      "value": f"{personal8['rps']:,.0f} vs {ours8['rps']:,.0f} req/s ({ratio - 1:+.1%})",
                      "pass": ratio >= 0.95})
    if ours1:
        lines.append({"goal": f"single-row p50 <= {GOAL_P50_C1_MS:g} ms at c=1",
                      "value": f"{ours1['p50_ms']:.2f} ms", "pass": ours1["p50_ms"] <= GOAL_P50_C1_MS})
    if ours8:
        lines.append({"goal": f"c=8 >= {GOAL_RPS_C8:,.0f} req/s", "value": f"{ours8['rps']:,.0f} req/s",
                      "pass": ours8["rps"] >= GOAL_RPS_C8})
        lines.append({"goal": f"c=8 p99 <= {GOAL_P99_C8_MS:g} ms", "value": f"{ours8['p99_ms']:.2f} ms",
                      "pass": ours8["p99_ms"] <= GOAL_P99_C8_MS})
    big = next((r for r in batches if r["path"].startswith("ours") and r["rows"] == 100_000), None)
    if big:
        lines.append({"goal": f"100k-row CSV scored and logged through the API <= {GOAL_100K_BATCH_S:g} s",
                      "value": f"{big['seconds']:.2f} s (peak RSS +{big['peak_rss_growth_mb']:.0f} MB)",
                      "pass": big["seconds"] <= GOAL_100K_BATCH_S})
    million = next((r for r in batches if r["path"].startswith("ours POST /api/v1/predict/batch")
                    and r["rows"] == MILLION), None)
    if million:
        lines.append({"goal": f"1M-row CSV scored and logged through the API <= {GOAL_1M_BATCH_S:g} s",
                      "value": f"{million['seconds']:.2f} s", "pass": million["seconds"] <= GOAL_1M_BATCH_S})
        lines.append({"goal": f"1M-row CSV: the worker's peak RSS grows <= {GOAL_1M_RSS_MB:g} MB",
                      "value": f"+{million['peak_rss_growth_mb']:.0f} MB",
                      "pass": million["peak_rss_growth_mb"] <= GOAL_1M_RSS_MB})
    upload = next((r for r in batches if r["path"].startswith("ours POST /api/v1/datasets")), None)
    if upload:
        lines.append({"goal": f"1M-row dataset upload validated: the worker's peak RSS grows <= "
                              f"{GOAL_1M_RSS_MB:g} MB",
                      "value": f"+{upload['peak_rss_growth_mb']:.0f} MB in {upload['seconds']:.1f} s",
                      "pass": upload["peak_rss_growth_mb"] <= GOAL_1M_RSS_MB})
    if ours8 and theirs8:
        lines.append({"goal": "ratio ours / mlflow req/s at c=8 (information)",
                      "value": f"{ours8['rps'] / theirs8['rps']:.2f}x", "pass": None})
    return lines


def print_goals(lines: list[dict]) -> None:
    print("\n== goals ==")
    for line in lines:
        verdict = {True: "PASS", False: "MISS", None: "INFO"}[line["pass"]]
        print(f"{verdict}  {line['goal']}: {line['value']}")


# ------------------------------------------------------------------------------------------ main

def run(args, tmp: Path) -> dict:
    for name in STATE_VARIABLES:
        os.environ.pop(name, None)
    state = tmp / "state"
    os.environ["OPCON_HOME"] = str(state)
    setup_s = {}
    setup_s["project + data (generate, dvc add, push)"], project = timed(build_project, tmp,
                                                                         args.train_rows)
    setup_s["dvc repro (validate, prepare, train, evaluate)"], (params, champion) = timed(
        train_champion, project)
    name, schema = params.registry.model_name, params.schema
    onnx_tag = champion.tags.get("onnx")
    setup_s["dvc repro of a challenger (a shallower forest)"], challenger = timed(make_challenger,
                                                                                 project, params)
    print(f"champion: {name} version {champion.version} ({params.train.estimator}), "
          f"ONNX export: {onnx_tag}; challenger version {challenger} shadows live traffic")
    for what, seconds in setup_s.items():
        print(f"  {what:<50} {seconds:7.1f} s")

    api_port, mlflow_port = free_port(), free_port()
    plain_port, floor_port = free_port(), free_port()
    api_url, mlflow_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{mlflow_port}"
    plain_url, floor_url = f"http://127.0.0.1:{plain_port}", f"http://127.0.0.1:{floor_port}"
    servers: list[subprocess.Popen] = []
    try:
        servers.append(start_api(project, state, api_port))
        servers.append(start_mlflow(state, name, mlflow_port))
        servers.append(start_ours_without_shadow(project, state, plain_port))
        servers.append(start_floor(project, state, floor_port))
        api_ready = wait_http(f"{api_url}/ready", servers[0], state / "logs" / "api.log", 120)
        mlflow_ready = wait_http(f"{mlflow_url}/ping", servers[1], state / "logs" / "mlflow-serve.log",
                                 180)
        wait_http(f"{plain_url}/ready", servers[2], state / "logs" / "api-no-shadow.log", 120)
        print(f"servers: ours ready in {api_ready:.1f} s, mlflow in {mlflow_ready:.1f} s "
              "(started together), ours without shadowing and the floor")

        record = typical_record(api_url)
        ours_body = json.dumps({"records": [record]})
        mlflow_body = json.dumps({"dataframe_records": [record]})
        ours_answer = check_200("ours", f"{api_url}/api/v1/predict", ours_body,
                                {"Authorization": f"Bearer {TOKEN}"})
        mlflow_answer = check_200("mlflow", f"{mlflow_url}/invocations", mlflow_body, {})
        served_by = ours_answer["served_by"]
        print(f"check: ours 200, version {ours_answer['model']['version']}, served_by {served_by}, "
              f"prediction {ours_answer['predictions'][0]}")
        print(f"check: mlflow 200, {mlflow_answer}")

        check_new_targets(api_url, floor_url, ours_body)
        personal, session = user_tokens(api_url)
        targets = [
            {"path": "ours POST /api/v1/predict (service token)", "url": f"{api_url}/api/v1/predict",
             "body": ours_body, "auth": f"Bearer {TOKEN}"},
            {"path": "ours, shadowing off (service token)", "url": f"{plain_url}/api/v1/predict",
             "body": ours_body, "auth": f"Bearer {TOKEN}"},
            {"path": "floor: Flask + the ONNX session only", "url": f"{floor_url}/predict",
             "body": ours_body, "auth": None},
            {"path": "ours POST /api/v1/predict?explain=true",
             "url": f"{api_url}/api/v1/predict?explain=true", "body": ours_body, "auth": f"Bearer {TOKEN}"},
            {"path": "ours POST /api/v1/predict (personal token)", "url": f"{api_url}/api/v1/predict",
             "body": ours_body, "auth": f"Bearer {personal}"},
            {"path": "ours POST /api/v1/predict (session)", "url": f"{api_url}/api/v1/predict",
             "body": ours_body, "auth": f"Bearer {session}"},
            {"path": "mlflow POST /invocations", "url": f"{mlflow_url}/invocations",
             "body": mlflow_body, "auth": None},
        ]
        by_url = {api_url: servers[0], mlflow_url: servers[1], plain_url: servers[2], floor_url: servers[3]}
        for target in targets:
            target["server"] = next(p for url, p in by_url.items() if target["url"].startswith(url + "/"))
        single = bench_single(targets, args.duration, args.warmup, args.rounds)
        shadow_cost = None if args.cost_rounds == 0 else bench_shadow_cost(
            targets[0], targets[1], targets[2], seconds=args.duration, rounds=args.cost_rounds,
            api_url=api_url)
        http_batches, frames = bench_batches_http(api_url, mlflow_url, state, schema, servers[0],
                                                  sizes=args.batch_rows, repeats=args.repeats)
        if not args.no_million:
            base = frames[100_000 if 100_000 in frames else max(frames)]
            http_batches += bench_million(api_url, state, servers[0],
                                          base.to_csv(index=False, lineterminator="\n").encode())
    finally:
        stop(servers)
    batches = http_batches + bench_batches_in_process(name, schema, frames, args.repeats)
    largest = max(frames)
    profile = None if args.no_profile else profile_app(
        project, state, record, args.profile_calls,
        frames[largest].to_csv(index=False, lineterminator="\n").encode())
    return {"train_rows": args.train_rows, "model": {"name": name, "version": str(champion.version),
                                                     "estimator": params.train.estimator,
                                                     "onnx": onnx_tag},
            "setup_s": setup_s, "served_by": served_by, "record": record,
            "wrk": {"duration_s": args.duration, "warmup_s": args.warmup},
            "cpus": os.cpu_count(), "single": single, "shadow_cost": shadow_cost, "batches": batches,
            "profile": profile}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6, help="seconds per wrk run (6)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="wrk runs per target and concurrency, alternating order; medians (3)")
    parser.add_argument("--warmup", type=float, default=2,
                        help="seconds of discarded wrk load per server first (2)")
    parser.add_argument("--train-rows", type=int, default=10_000)
    parser.add_argument("--batch-rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3, help="batch timings: median of (3)")
    parser.add_argument("--cost-rounds", type=int, default=6,
                        help="rounds of shadowing on / off / floor back to back at c=8 (6; 0: none)")
    parser.add_argument("--profile-calls", type=int, default=2_000)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-million", action="store_true",
                        help="skip the 1,000,000-row batch and dataset upload")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 1
    config.quiet_third_parties()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    load_before = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average before: " + " ".join(f"{x:.2f}" for x in load_before))
    with tempfile.TemporaryDirectory(prefix="opcon-bench-serve-", ignore_cleanup_errors=True) as tmp:
        result = run(args, Path(tmp))
    result["load_average_before"] = load_before
    result["load_average_after"] = os.getloadavg()
    print("load average after: " + " ".join(f"{x:.2f}" for x in result["load_average_after"]))
    print_single(result["single"])
    if result["shadow_cost"]:
        print_shadow_cost(result["shadow_cost"])
    print_batches(result["batches"])
    ours_c1 = next((r for r in result["single"] if r["path"].startswith("ours")
                    and r["concurrency"] == 1), None)
    if result["profile"]:
        print_profile(result["profile"], ours_c1 and ours_c1["p50_ms"])
    result["goals"] = goals(result["single"], result["batches"], result["shadow_cost"])
    print_goals(result["goals"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
