"""The one catalogue of job kinds: GET /jobs/kinds against what the worker runs and what the console
draws; a dataset upload as a job, from the request to the new DVC version (or back to the old one
when the job fails); GET /datasets writes nothing and reads only what it needs.

One project (600 rows, no model: nothing here needs one) for the module. The first tests use an app
built in this process (no worker); the last ones a live API under gunicorn with a job worker.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from control_api import create_app, db
from control_api.jobs import tasks
from control_api.jobs.kinds import ACTIVE, FINAL, KINDS, STARTABLE
from ml.config import REPO_ROOT
from ml.generate import generate
from ml.versioning import file_md5, pointer_version
from tests.helpers import TOKEN, Client, error_body, fields, project_for_apps
from tests.live import TOKEN as LIVE_TOKEN
from tests.live import running
from ui.api_client import ApiClient

pytestmark = pytest.mark.live

RETRAIN_STEPS = ["pull", "validate", "train", "register and promote", "push"]


@pytest.fixture(scope="module")
def project(module_state):
    with project_for_apps(module_state, rows=600) as built:
        yield built


@pytest.fixture(scope="module")
def local(project) -> Client:
    """The API built in this process; no worker takes its jobs."""
    return Client(create_app({"testing": True, "api_token": TOKEN, "state_dir": project.state,
                              "project_dir": project.path}))


@pytest.fixture(scope="module")
def live(project):
    """The API under gunicorn and one job worker, on the same project and state dir."""
    with running(project, {"OPCON_DRIFT_INTERVAL_MINUTES": "0"}, ready=False) as services:
        yield services


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


def next_batch(project, rows: int, seed: int) -> pd.DataFrame:
    first = int(pd.read_csv(project.raw)[project.params.schema.id_columns[0]].max()) + 1
    return generate(rows, seed, first_id=first)


def data_state(project) -> tuple[bytes, bytes]:
    return project.raw.read_bytes(), Path(f"{project.raw}.dvc").read_bytes()


def waiting_uploads(project) -> list[Path]:
    return sorted((project.state / "uploads").glob("*"))


# -- the catalogue -------------------------------------------------------------------------------

def test_the_catalogue_names_every_kind_its_params_and_its_steps(local):
    assert local.get("/api/v1/jobs/kinds", auth=False).status_code == 401
    body = local.get("/api/v1/jobs/kinds").get_json()
    by_kind = {entry["kind"]: entry for entry in body["kinds"]}
    assert list(by_kind) == ["retrain", "data_pull", "validate", "drift_report", "dataset_upload"]
    assert by_kind["retrain"]["steps"] == RETRAIN_STEPS
    assert by_kind["data_pull"]["steps"] == ["pull"] and by_kind["validate"]["steps"] == ["validate"]
    assert by_kind["dataset_upload"]["steps"] == ["validate", "add and push"]
    assert body["states"] == {"active": ["queued", "running"],
                              "final": ["succeeded", "failed", "cancelled", "interrupted"]}
    for name in ("retrain", "data_pull", "validate"):
        assert by_kind[name]["params"]["properties"] == {}, name
        assert by_kind[name]["started_by"] == "POST /api/v1/jobs"
    assert set(by_kind["drift_report"]["params"]["properties"]) == {"last_rows", "since", "until"}
    assert by_kind["dataset_upload"]["started_by"] == "POST /api/v1/datasets"
    assert set(by_kind["dataset_upload"]["params"]["properties"]) == {"file_name", "batch_rows"}
    assert all(entry["description"] for entry in body["kinds"])

    # what the request bodies accept is the catalogue too: an upload starts only from /datasets
    schemas = local.get("/openapi.json", auth=False).get_json()["components"]["schemas"]
    assert schemas["JobKind"]["properties"]["kind"]["enum"] == list(STARTABLE)
    assert "dataset_upload" not in STARTABLE
    assert fields(error_body(local.post("/api/v1/jobs", json={"kind": "dataset_upload"}), 422)) == {"kind"}
    assert local.get("/api/v1/jobs?kind=dataset_upload").status_code == 200
    assert fields(error_body(local.post("/api/v1/jobs", json={
        "kind": "drift_report", "params": {"last_rows": 0}}), 422)) == {"params.last_rows"}


def test_an_answer_that_starts_a_job_says_where_to_follow_it(local):
    answer = local.post("/api/v1/jobs", json={"kind": "validate", "reason": "catalogue test"})
    assert answer.status_code == 202, answer.get_json()
    job = answer.get_json()
    assert answer.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert local.get(answer.headers["Location"]).get_json()["id"] == job["id"]
    assert local.post(f"/api/v1/jobs/{job['id']}/cancel").get_json()["status"] == "cancelled"


def test_each_kind_runs_the_steps_the_catalogue_publishes(local):
    settings = local.app.extensions["opcon"].settings
    published = {e["kind"]: e["steps"] for e in local.get("/api/v1/jobs/kinds").get_json()["kinds"]}
    params = {"drift_report": {"last_rows": 100}, "dataset_upload": {"file_name": "b.csv", "batch_rows": 1}}
    for kind in KINDS:
        with tasks.plan(kind, params.get(kind, {}), settings, "no-such-job") as steps:
            assert [name for name, _ in steps] == published[kind], kind
            assert all(callable(action) for _, action in steps)
    assert published["retrain"] == RETRAIN_STEPS
    with pytest.raises(ValueError, match="unknown job kind"), tasks.plan("bogus", {}, settings, "x"):
        pass


def restated_steps(source: str) -> list[str]:
    """Where a console module writes job steps itself: a step name of several words, a literal
    list of two or more steps of one kind, a table from kinds to lists, or two steps in a row."""
    multi_step = [kind.steps for kind in KINDS.values() if len(kind.steps) > 1]
    phrases = {step for steps in multi_step for step in steps if " " in step}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            found += [f"{name!r} in {text[:60]!r}" for name in phrases if name in text]
            found += [f"{a!r} then {b!r} in {text[:60]!r}" for steps in multi_step
                      for a, b in itertools.pairwise(steps)
                      if re.search(rf"\b{re.escape(a)}\b\W+{re.escape(b)}\b", text)]
        elif isinstance(node, ast.List | ast.Tuple | ast.Set):
            items = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            found += [f"a list of {sorted(items & set(steps))}" for steps in multi_step
                      if len(items & set(steps)) > 1]
        elif isinstance(node, ast.Dict):
            pairs = zip(node.keys, node.values, strict=True)
            found += [f"a table of steps for {key.value!r}" for key, value in pairs
                      if isinstance(key, ast.Constant) and key.value in KINDS
                      and isinstance(value, ast.List | ast.Tuple)]
    return found


def test_the_console_writes_no_step_name_of_its_own():
    sources = {path.relative_to(REPO_ROOT): path.read_text() for path in (REPO_ROOT / "ui").rglob("*.py")}
    assert len(sources) > 30  # the whole console is read
    restated = {str(path): found for path, source in sources.items() if (found := restated_steps(source))}
    assert not restated, f"job steps written in the console instead of read from the API: {restated}"
    # what the console wrote before it asked GET /jobs/kinds is caught
    assert restated_steps('STEPS = {"data_pull": ["pull"], "validate": ["validate"]}')
    assert restated_steps('st.caption("one click: pull → validate → train")')
    assert restated_steps('MARKS = ("read predictions", "compare")')


# -- GET /datasets -------------------------------------------------------------------------------

def row_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                for table in db.metadata.sorted_tables}


def file_stamps(*roots: Path) -> dict[str, tuple[int, int]]:
    """(mtime in ns, size) of every file under the roots (symbolic links not followed)."""
    stamps = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink():
                    stat = path.stat()
                    stamps[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return stamps


def test_listing_data_versions_writes_nothing_and_reads_only_the_pointer(local, project):
    engine = local.app.extensions["opcon"].engine
    first = local.get("/api/v1/datasets").get_json()
    assert first["current"] == pointer_version(project.raw) == file_md5(project.raw)
    assert [v["md5"] for v in first["versions"]] == [first["current"]]  # recorded when the API started
    assert first["versions"][0]["rows"] == 600

    counts, stamps = row_counts(engine), file_stamps(project.path, project.state)
    for _ in range(3):
        assert local.get("/api/v1/datasets").get_json() == first
    assert row_counts(engine) == counts
    assert file_stamps(project.path, project.state) == stamps

    moved = project.raw.with_name("moved-away.csv")
    project.raw.rename(moved)  # the data is not read: the answer is the pointer's and the records'
    try:
        assert local.get("/api/v1/datasets").get_json() == first
    finally:
        moved.rename(project.raw)


# -- POST /datasets in this process (no worker) -------------------------------------------------

def test_a_refused_batch_starts_no_job_and_keeps_nothing(local, project):
    before, jobs = data_state(project), local.get("/api/v1/jobs?kind=dataset_upload").get_json()["total"]
    target = project.params.schema.target.name
    wrong = next_batch(project, 30, 61).assign(**{target: 7})  # not a class of the target
    body = error_body(local.upload("/api/v1/datasets", csv_bytes(wrong)), 422)
    assert target in fields(body) and "nothing was changed" in body["error"]
    again = generate(30, 62, first_id=1)  # IDs the data has: fails only together with the data
    body = error_body(local.upload("/api/v1/datasets", csv_bytes(again)), 422)
    assert "data with the batch" in body["error"]
    assert fields(body) & set(project.params.schema.id_columns)
    assert data_state(project) == before and waiting_uploads(project) == []
    assert local.get("/api/v1/jobs?kind=dataset_upload").get_json()["total"] == jobs


def test_one_upload_job_at_a_time_and_what_a_cancelled_one_leaves_is_swept(local, project):
    before = data_state(project)
    first = local.upload("/api/v1/datasets", csv_bytes(next_batch(project, 20, 63)))
    assert first.status_code == 202, first.get_json()
    job = first.get_json()
    assert waiting_uploads(project) == [project.state / "uploads" / f"{job['id']}.csv"]

    second = local.upload("/api/v1/datasets", csv_bytes(next_batch(project, 20, 64)))
    body = error_body(second, 409)
    assert body["job"]["id"] == job["id"] and "not kept" in body["error"]
    assert len(waiting_uploads(project)) == 1  # the second batch was not kept

    assert local.post(f"/api/v1/jobs/{job['id']}/cancel").get_json()["status"] == "cancelled"
    error_body(local.upload("/api/v1/datasets", b""), 422)  # any upload sweeps what ended jobs left
    assert waiting_uploads(project) == []
    assert data_state(project) == before


# -- a live API and worker ------------------------------------------------------------------------

def logged_steps(live, job_id: str) -> list[str]:
    log = live.get(f"/api/v1/jobs/{job_id}/log").text
    return [line[3:] for line in log.splitlines() if line.startswith("== ")]


def test_a_dataset_upload_runs_as_a_job_end_to_end(live, project):
    old = pointer_version(project.raw)
    old_rows = len(pd.read_csv(project.raw))
    batch = next_batch(project, 120, 65)
    answer = live.post("/api/v1/datasets", files={"file": ("week-12.csv", csv_bytes(batch), "text/csv")})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["kind"] == "dataset_upload" and job["status"] in ACTIVE
    assert answer.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert live.get(answer.headers["Location"]).json()["id"] == job["id"]

    finished = live.wait_job(job["id"], timeout=180)
    assert finished["status"] == "succeeded", finished["log_tail"]
    assert logged_steps(live, job["id"]) == list(KINDS["dataset_upload"].steps)
    new = pointer_version(project.raw)
    assert finished["result"]["data_version"] == new == file_md5(project.raw) != old
    assert finished["result"]["rows"] == len(pd.read_csv(project.raw)) == old_rows + 120
    remote = project.state / "dvc-remote" / "files" / "md5" / new[:2] / new[2:]
    assert remote.read_bytes() == project.raw.read_bytes()
    assert waiting_uploads(project) == []

    listing = live.get("/api/v1/datasets").json()
    assert listing["current"] == new
    assert [v["md5"] for v in listing["versions"]][:2] == [new, old]
    assert "week-12.csv" in listing["versions"][0]["source"]

    events = live.get("/api/v1/audit", params={"target": f"job:{job['id']}"}).json()["items"]
    actions = {e["action"]: e for e in events}
    assert {"job.start", "job.end"} <= set(actions)
    assert actions["job.end"]["outcome"] == "succeeded"
    requested = [e for e in events if e["action"] not in ("job.start", "job.end")]
    assert len(requested) == 1 and requested[0]["status"] == 202

    client = ApiClient(live.url, LIVE_TOKEN)  # the console's client reads the same catalogue
    assert client.job_steps("retrain") == RETRAIN_STEPS
    assert client.job_catalogue() is client.job_catalogue()  # fetched once
    assert client.job_catalogue()["states"]["final"] == list(FINAL)


def test_a_failed_upload_job_leaves_the_data_and_its_pointer_as_they_were(live, project):
    before, listing = data_state(project), live.get("/api/v1/datasets").json()
    config = project.path / ".dvc" / "config.local"
    kept_config = config.read_bytes()
    blocker = project.state / "not-a-folder"
    blocker.write_text("a file where the remote's folder should be\n")
    project.dvc("remote", "modify", "--local", "opcon", "url", str(blocker / "remote"))
    try:
        answer = live.post("/api/v1/datasets",
                           files={"file": ("late.csv", csv_bytes(next_batch(project, 40, 66)), "text/csv")})
        assert answer.status_code == 202, answer.text
        finished = live.wait_job(answer.json()["id"], timeout=180)
    finally:
        config.write_bytes(kept_config)
    assert finished["status"] == "failed", finished["log_tail"]
    assert finished["step"] == "add and push" and "dvc push" in finished["error"]
    assert data_state(project) == before
    assert live.get("/api/v1/datasets").json() == listing
    assert waiting_uploads(project) == []
