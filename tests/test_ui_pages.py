"""Every console page through Streamlit's AppTest, against a real API (gunicorn + a job worker) on a
trained project in a temp state dir. Nothing is mocked; feature names come from GET /schema.

People sign in through the sign-in screen, or by putting a session token from POST /auth/login where
the console keeps it (AppTest has no browser cookies). Their accounts are made with the service token.
The back end asks for an admin's approval before a better challenger replaces the champion.

The tests run in file order: the later ones register versions, promote one and roll back, start (then
cancel) a retrain and run one to its approval; the last adds a data batch through its job.
"""

from __future__ import annotations

import ast
import io
import json
import re
import time

import pandas as pd
import pytest
import requests
from streamlit.testing.v1 import AppTest

from control_api.db import connect
from control_api.routes.feedback import labels as feedback_labels
from ml import generate as generator
from ml import registry
from ml.config import REPO_ROOT
from ml.generate import generate
from monitoring.prediction_log import PredictionLog
from tests.e2e.servers import PASSWORD, add_user, console_env, sign_in, start_backend
from tests.live import PrometheusServer, free_port
from ui.api_client import ApiClient
from ui.components import access, audit_trail, drift_view, service_metrics, session
from ui.components.session_cookie import NAME as COOKIE

pytestmark = pytest.mark.live

APP = REPO_ROOT / "ui" / "streamlit_app.py"
TITLES = {"predict": "Predict", "batch": "Batch scoring", "retrain": "Retrain", "models": "Models",
          "data": "Data", "jobs": "Jobs", "drift": "Drift", "quality": "Quality", "compare": "Compare",
          "emissions": "Emissions", "service": "Service", "users": "Users", "tokens": "Tokens",
          "audit": "Audit"}
PEOPLE = {"ada": "admin", "adam": "admin", "emma": "engineer", "otto": "operator", "vera": "viewer"}
ADMIN, SECOND_ADMIN, ENGINEER, OPERATOR, VIEWER = PEOPLE
APPROVAL = {"registry": {"require_approval": True}, "evaluate": {"min_improvement": 0.0}}
SESSIONS: dict[str, str] = {}  # username → a session token signed in for the whole module


@pytest.fixture(scope="module")
def backend(module_state):
    services = start_backend(module_state, params_changes=APPROVAL)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in console_env(services).items():
            patch.setenv(name, value)
        for username, role in PEOPLE.items():
            add_user(services, username, role, display_name=f"{username.title()} Tester")
            SESSIONS[username] = sign_in(services, username)
        yield services
    SESSIONS.clear()
    services.stop()


@pytest.fixture(scope="module")
def api_schema(backend) -> dict:
    return backend.get("/api/v1/schema").json()


def signed_in(user: str = ADMIN) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.session_state[session.TOKEN] = SESSIONS[user]
    return app.run()


def open_page(page: str, user: str = ADMIN) -> AppTest:
    app = signed_in(user).switch_page(f"app_pages/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def sign_in_screen() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception and [t.value for t in app.title] == ["Sign in"]
    return app


def type_in(app: AppTest, username: str, password: str) -> AppTest:
    app.text_input(key="sign_in_username").set_value(username)
    next(t for t in app.text_input if t.label == "Password").set_value(password)
    return button(app, "Sign in").click().run()


def button(app: AppTest, label: str):
    found = [b for b in app.button if b.label == label]
    assert len(found) == 1, [b.label for b in app.button]
    return found[0]


def labels(app: AppTest) -> list[str]:
    return [b.label for b in app.button]


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def errors(app: AppTest) -> list[str]:
    return [e.value for e in app.main.error]


def notices(app: AppTest) -> list[str]:
    return [s.value for s in app.main.success]


def table_with(app: AppTest, column: str) -> pd.DataFrame:
    found = [d.value for d in app.dataframe if column in d.value.columns]
    assert len(found) == 1, [list(d.value.columns) for d in app.dataframe]
    return found[0]


def numeric(api_schema: dict) -> list[dict]:
    return [f for f in api_schema["features"] if f["type"] == "number" and f.get("max") is not None]


def retrain_jobs(backend) -> list[dict]:
    return backend.get("/api/v1/jobs", params={"kind": "retrain", "limit": 200}).json()["items"]


def me(backend, token: str) -> requests.Response:
    return requests.get(f"{backend.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def scripts(app: AppTest) -> str:
    """What the page runs in the browser (st.html with JavaScript): the cookie's writer."""
    return "\n".join(h.proto.body for h in app.get("html") if h.proto.unsafe_allow_javascript)


def kept_values(app: AppTest) -> list[str]:
    return [str(v) for v in app.session_state.to_dict().values()]


# -- the frame: every page, the console's own boundaries ------------------------------------------

def test_the_console_reaches_the_rest_of_the_system_only_over_http():
    forbidden = {"control_api", "ml", "monitoring"}
    for path in (REPO_ROOT / "ui").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & forbidden, (path, names)


def test_the_console_holds_no_credentials_of_its_own():
    """It calls the API as whoever signed in: never with the server's token."""
    for path in (REPO_ROOT / "ui").rglob("*.py"):
        text = path.read_text()
        assert "OPCON_API_TOKEN" not in text and "api_token" not in text, path


@pytest.mark.parametrize("page", list(TITLES))
def test_every_page_renders_its_title_and_help_without_an_error(backend, page):
    app = open_page(page)
    assert [t.value for t in app.title] == [TITLES[page]]
    assert app.caption and len(app.caption[0].value) > 40  # one line of help under the title
    assert errors(app) == []
    status = app.sidebar.success
    assert len(status) == 1 and "version 1" in status[0].value


def test_an_unreachable_api_is_one_line_per_page_and_the_pages_recover(backend, monkeypatch):
    apps = {page: open_page(page) for page in TITLES}
    monkeypatch.setenv("OPCON_API_URL", f"http://127.0.0.1:{free_port()}")
    for page, app in apps.items():
        app.run()
        assert len(errors(app)) == 1, (page, errors(app))
        assert "not reachable" in errors(app)[0] and "reloads by itself" in errors(app)[0]
        assert "unreachable" in app.sidebar.error[0].value
        assert app.session_state["api_state"] == "unreachable"
    monkeypatch.setenv("OPCON_API_URL", backend.url)
    for page, app in apps.items():
        app.run()
        assert not app.exception and errors(app) == [], (page, errors(app))
        assert [t.value for t in app.title] == [TITLES[page]]
        assert app.session_state["api_state"] == "ready"


# -- signing in and out ----------------------------------------------------------------------------

def test_the_sign_in_screen_comes_first(backend):
    app = sign_in_screen()
    assert [t.label for t in app.text_input] == ["Username", "Password"]
    assert labels(app) == ["Sign in"] and errors(app) == []
    assert not app.sidebar.markdown and not scripts(app)  # nobody is signed in, no cookie is written
    assert session.TOKEN not in app.session_state


def test_a_wrong_password_is_one_clear_line_and_the_field_is_emptied(backend):
    app = type_in(sign_in_screen(), OPERATOR, "not the password at all")
    assert not app.exception and errors(app) == ["Wrong username or password."]
    assert next(t for t in app.text_input if t.label == "Password").value == ""
    assert app.text_input(key="sign_in_username").value == OPERATOR
    assert "not the password at all" not in kept_values(app) and session.TOKEN not in app.session_state


def test_signing_in_opens_the_page_sets_the_cookie_and_keeps_no_password(backend):
    app = type_in(sign_in_screen(), OPERATOR, PASSWORD)
    assert not app.exception and [t.value for t in app.title] == ["Predict"]
    token = app.session_state[session.TOKEN]
    assert token.startswith("ocs_") and me(backend, token).json()["username"] == OPERATOR
    assert PASSWORD not in kept_values(app)
    card = app.sidebar.markdown[0].value
    assert "Otto Tester" in card and f"`{OPERATOR}`" in card and "role **operator**" in card
    assert "Sign out" in labels(app)
    written = scripts(app)
    assert f"{COOKIE}={token}; Path=/; Expires=" in written and "GMT; SameSite=Strict" in written
    assert "location.protocol === 'https:' ? '; Secure'" in written


def test_a_locked_account_says_for_how_long(backend):
    add_user(backend, "lock.me", "viewer")
    app, tries = sign_in_screen(), 0
    while not any(e.startswith("Too many") for e in errors(app)):
        tries += 1
        assert tries <= 12, errors(app)  # 5 failures per API worker, 2 workers
        app = type_in(app, "lock.me", f"wrong password {tries}")
        assert len(errors(app)) == 1
    line = errors(app)[0]
    assert re.fullmatch(r"Too many failed sign-ins for this account: it is locked, try again in "
                        r"\d+ min \d\d s\.", line), line
    assert session.TOKEN not in app.session_state


def test_a_disabled_account_is_told_so(backend):
    add_user(backend, "gone.user", "viewer")
    assert backend.session.patch(f"{backend.url}/api/v1/users/gone.user", json={"disabled": True},
                                 timeout=30).status_code == 200
    app = type_in(sign_in_screen(), "gone.user", PASSWORD)
    assert errors(app) == ["This account is disabled: ask an administrator to enable it."]


def test_signing_out_ends_the_session_and_clears_the_cookie(backend):
    app = type_in(sign_in_screen(), VIEWER, PASSWORD)
    assert [t.value for t in app.title] == ["Models"] and errors(app) == []  # "/" is a viewer's own home
    token = app.session_state[session.TOKEN]
    button(app, "Sign out").click().run()
    assert not app.exception and [t.value for t in app.title] == ["Sign in"]
    assert [i.value for i in app.main.info] == ["You signed out."]
    assert me(backend, token).status_code == 401
    assert f"{COOKIE}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=Strict" in scripts(app)
    assert session.TOKEN not in app.session_state


def test_a_session_that_ended_elsewhere_brings_back_the_sign_in_screen(backend):
    token = sign_in(backend, VIEWER)
    app = AppTest.from_file(APP, default_timeout=60)
    app.session_state[session.TOKEN] = token
    app.run()
    assert [t.value for t in app.title] == ["Models"]  # a viewer's first page
    assert requests.post(f"{backend.url}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"},
                         timeout=30).status_code == 200
    app.run()
    assert not app.exception and [t.value for t in app.title] == ["Sign in"]
    assert "Your session has ended" in app.main.info[0].value


# -- what each role sees ---------------------------------------------------------------------------

MONITOR = ["Drift", "Quality", "Compare", "Emissions", "Service", "Jobs"]
MENUS = {
    "viewer": ["Models", "Data", *MONITOR],
    "operator": ["Predict", "Batch", "Models", "Data", *MONITOR],
    "engineer": ["Predict", "Batch", "Retrain", "Models", "Data", *MONITOR],
    "admin": ["Predict", "Batch", "Retrain", "Models", "Data", *MONITOR, "Users", "Tokens", "Audit"],
}


@pytest.mark.parametrize("user", [VIEWER, OPERATOR, ENGINEER, ADMIN])
def test_the_menu_has_the_pages_of_the_role_from_its_permissions(backend, user):
    """The menu is built from GET /me's permissions: what the API says this user may do."""
    permissions = me(backend, SESSIONS[user]).json()
    assert [s.title for s in access.usable(permissions)] == MENUS[PEOPLE[user]]
    home = access.home(permissions)
    assert [t.value for t in signed_in(user).title] == [TITLES[home.path.removeprefix("app_pages/")[:-3]]]


@pytest.mark.parametrize(("user", "page", "needs"), [
    (OPERATOR, "retrain", "jobs:start"), (OPERATOR, "users", "users:manage"),
    (ENGINEER, "audit", "audit:read"), (VIEWER, "predict", "predict"), (VIEWER, "tokens", "tokens:manage")])
def test_a_page_the_role_may_not_use_says_so_when_opened_by_its_url(backend, user, page, needs):
    app = open_page(page, user)
    title = next(s.title for s in access.SCREENS if s.path == f"app_pages/{page}.py")
    assert errors(app) == [f"Your role ({PEOPLE[user]}) may not use {title}: it needs {needs}."]
    assert [t.value for t in app.title] == [title] and labels(app) == ["Sign out"]
    home = access.home(me(backend, SESSIONS[user]).json())
    assert [link.proto.label for link in app.get("page_link")] == [f"Go to {home.title}"]


def test_buttons_the_role_lacks_are_not_shown(backend):
    data = open_page("data", OPERATOR)
    assert not data.get("file_uploader") and "Pull data (dvc pull)" not in labels(data)
    assert "Pull data (dvc pull)" in labels(open_page("data", ENGINEER))
    assert open_page("data", ENGINEER).get("file_uploader")
    assert "Run drift report now" not in labels(open_page("drift", OPERATOR))
    retrain = open_page("retrain", ENGINEER)
    assert "Retrain now" in labels(retrain)
    assert not [label for label in labels(retrain) if label.startswith(("Promote", "Roll back"))]
    assert "Version to promote" not in [s.label for s in retrain.selectbox]
    assert {"Promote v1…", "Roll back to the previous champion…"} <= set(labels(open_page("retrain")))


# -- predict -----------------------------------------------------------------------------------

def test_the_form_has_an_input_for_every_schema_field(backend, api_schema):
    app = open_page("predict", OPERATOR)
    for feature in api_schema["features"]:
        key = f"feature_{feature['name']}"
        if feature["type"] == "category":
            widget = app.selectbox(key=key)
            assert widget.options == feature["categories"]
            assert widget.value == feature.get("typical", feature["categories"][0])
            continue
        widget = app.number_input(key=key)
        assert (widget.min, widget.max) == (feature.get("min"), feature.get("max"))
        assert widget.value == feature["typical"]
        if feature.get("unit"):
            assert widget.label.endswith(f"({feature['unit']})")
        assert f"`{feature['name']}`" in widget.help
    assert len(app.number_input) + len(app.selectbox) == len(api_schema["features"])


def test_predict_shows_the_champions_answer_and_takes_feedback(backend, api_schema):
    app = open_page("predict", OPERATOR)
    button(app, "Predict").click().run()
    assert not app.exception and errors(app) == []
    result = app.session_state["prediction"]
    record = {f["name"]: f["typical"] for f in api_schema["features"]}
    assert result["record"] == record
    direct = backend.post("/api/v1/predict", json={"records": [record]}).json()["predictions"][0]
    shown = result["predictions"][0]
    assert shown["probability"] == pytest.approx(direct["probability"], abs=1e-9)
    assert metric(app, "Predicted outcome") == direct["label_text"]
    caption = " ".join(c.value for c in app.caption)
    assert result["request_id"] in caption and "version **1**" in caption
    assert f"{direct['threshold'] * 100:.1f} %" in " ".join(m.value for m in app.markdown)
    assert len(PredictionLog(backend.project.state / "predictions").find(result["request_id"])) == 1

    truth = api_schema["target"]["classes"][-1]
    app.selectbox(key="true_outcome").set_value(truth)
    button(app, "Send feedback").click().run()
    assert not app.exception and errors(app) == []
    assert any("Recorded" in s.value for s in app.success)
    given = feedback_labels(connect(f"sqlite:///{backend.project.state / 'opcon.db'}"))
    assert [(g["request_id"], g["row"], g["label"]) for g in given] == [(result["request_id"], 0, truth)]


def test_an_out_of_range_value_never_reaches_the_api(backend, api_schema):
    """The inputs carry the schema's bounds: Streamlit refuses a value outside them (the browser test
    sees the field marked invalid), so what is sent stays in range."""
    feature = numeric(api_schema)[0]
    app = open_page("predict", OPERATOR)
    app.number_input(key=f"feature_{feature['name']}").set_value(feature["max"] + 1)
    button(app, "Predict").click().run()
    assert not app.exception and errors(app) == []
    sent = app.session_state["prediction"]["record"][feature["name"]]
    assert feature["min"] <= sent <= feature["max"]
    request_id = app.session_state["prediction"]["request_id"]
    logged = PredictionLog(backend.project.state / "predictions").find(request_id)
    assert logged[feature["name"]].tolist() == [sent]


def test_an_api_refusal_is_shown_under_the_field_it_names(backend, api_schema):
    """A schema that went stale in the session (wider than the API's) lets a value through the form:
    the API's 422 names the field and the page puts its problem under that field's input."""
    feature = numeric(api_schema)[-1]
    app = open_page("predict", OPERATOR)
    widened = {**feature, "max": feature["max"] * 10 + 10}
    stale = {**api_schema, "features": [widened if f is feature else f for f in api_schema["features"]]}
    app.session_state["schema"] = stale
    app.run()
    widget = app.number_input(key=f"feature_{feature['name']}")
    widget.set_value(feature["max"] * 10 + 5)
    button(app, "Predict").click().run()
    assert not app.exception and "prediction" not in app.session_state
    shown = errors(app)
    assert len(shown) == 2 and "Not scored" in shown[1], shown
    assert "less than or equal" in shown[0] and f"{feature['max']:g}" in shown[0], shown
    column = next(c for c in app.columns if any(getattr(e, "key", None) == widget.key
                                                 for e in c.children.values()))
    inside = list(column.children.values())
    position = next(i for i, e in enumerate(inside) if getattr(e, "key", None) == widget.key)
    assert inside[position + 1].type == "error" and inside[position + 1].value == shown[0]


# -- batch -------------------------------------------------------------------------------------

def upload(app: AppTest, content: bytes, name: str = "machines.csv") -> AppTest:
    app.file_uploader[0].set_value((name, content, "text/csv")).run()
    assert not app.exception
    return app


def test_a_batch_upload_gives_a_summary_and_the_scored_csv_to_download(backend, api_schema):
    original = generate(300, 11, first_id=100_001)
    content = original.to_csv(index=False).encode()
    app = upload(open_page("batch", OPERATOR), content)
    preview = app.dataframe[0].value
    assert list(preview.columns) == list(original.columns) and len(preview) == 10
    button(app, "Score “machines.csv”").click().run()
    assert not app.exception and errors(app) == []

    scored_file = app.session_state["batch_result"]["scored"]
    scored = pd.read_csv(io.BytesIO(scored_file.content))
    assert len(scored) == 300
    assert list(scored.columns[:len(original.columns)]) == list(original.columns)
    assert {"prediction_label", "prediction_probability"} <= set(scored.columns)
    target = api_schema["target"]
    share = (scored["prediction_label"] == target["positive"]).mean()
    assert metric(app, "Rows scored") == "300"
    assert metric(app, f"Predicted “{target['labels'][str(target['positive'])]}”") == f"{share * 100:.1f} %"
    assert metric(app, "Model version") == "v1"
    downloads = app.get("download_button")
    assert [d.label for d in downloads] == ["Download scored CSV"]
    assert scored_file.file_name == f"scored-{scored_file.request_id}.csv"
    assert len(PredictionLog(backend.project.state / "predictions").find(scored_file.request_id)) == 300
    assert len(app.get("plotly_chart")) == 1


def test_a_bad_batch_names_the_missing_column_and_the_invalid_rows(backend, api_schema):
    missing = api_schema["features"][-1]["name"]
    bad = next(f for f in numeric(api_schema) if f["name"] != missing)
    frame = generate(50, 12, first_id=200_001).drop(columns=[missing])
    frame.loc[[2, 5], bad["name"]] = bad["max"] + 100
    app = upload(open_page("batch", OPERATOR), frame.to_csv(index=False).encode(), "bad.csv")
    button(app, "Score “bad.csv”").click().run()
    assert not app.exception
    assert errors(app) == ["The CSV has invalid rows or columns"]
    problems = table_with(app, "problem").set_index("column")
    assert problems.loc[missing, "problem"] == "column is missing"
    assert problems.loc[bad["name"], "problem"].startswith("outside the allowed")
    assert problems.loc[bad["name"], "rows affected"] == 2
    assert problems.loc[bad["name"], "first rows"] == "3, 6"  # data rows, counted from 1
    assert "batch_result" not in app.session_state and not app.get("download_button")


# -- models ------------------------------------------------------------------------------------

def test_models_lists_the_registry_and_shows_a_versions_card_and_links(backend):
    listing = backend.get("/api/v1/models").json()
    version = listing["versions"][0]
    app = open_page("models")
    table = app.dataframe[0].value
    assert table["version"].tolist() == [1] and table["aliases"].tolist() == ["champion"]
    primary = version["promotion"]["metric"]
    assert table["primary metric"][0] == pytest.approx(version["metrics"][f"test_{primary}"])
    assert table["F1"][0] == pytest.approx(version["metrics"]["test_f1"])
    assert table["threshold"][0] == pytest.approx(version["threshold"])
    assert version["data_version"].startswith(table["data version"][0])
    card = backend.get("/api/v1/models/1/card").json()["markdown"]
    assert any(m.value.startswith("#### Model card:") and version["run_id"] in m.value for m in app.markdown)
    assert card.startswith("# Model card:")
    urls = [b.proto.url for b in app.get("link_button")]
    assert urls == [f"http://127.0.0.1:5000/#/runs/{version['run_id']}",
                    f"http://127.0.0.1:5000/#/models/{listing['name']}/versions/1"]
    assert len(app.get("plotly_chart")) == 2  # metrics by version, the champion's timeline
    assert not [s.value for s in app.subheader if s.value == "Waiting for approval"]


# -- data --------------------------------------------------------------------------------------

def test_data_lists_versions_and_explains_a_rejected_batch(backend, api_schema):
    before = backend.get("/api/v1/datasets").json()
    app = open_page("data", ENGINEER)
    table = app.dataframe[0].value
    assert table["rows"].tolist() == [v["rows"] for v in before["versions"]]
    assert table["validation"][0] == "passed" and table["current"][0] == "●"
    target = api_schema["target"]
    shares = [table[target["labels"].get(str(c), str(c))][0] for c in target["classes"]]
    assert sum(shares) == pytest.approx(100)

    frame = generate(20, 13, first_id=300_001)
    frame[target["name"]] = 7  # not a class of the target
    app.file_uploader(key="dataset_file").set_value(("labels.csv", frame.to_csv(index=False).encode(),
                                                     "text/csv")).run()
    button(app, "Validate and add as a new version").click().run()
    assert not app.exception
    assert errors(app) == ["The batch failed validation; nothing was changed"]
    assert target["name"] in table_with(app, "problem")["column"].tolist()
    assert backend.get("/api/v1/datasets").json() == before


def test_data_pull_runs_as_a_job_and_reports_the_version(backend):
    app = open_page("data", ENGINEER)
    button(app, "Pull data (dvc pull)").click().run()
    job_id = app.session_state["data_pull_job_id"]
    job = backend.wait_job(job_id, timeout=120)
    assert job["status"] == "succeeded", job
    app.run()
    assert not app.exception
    pulled = job["result"]["data_version"][:10]
    assert any(f"Pulled data version `{pulled}`" in s.value for s in app.success)


def published_steps(backend, kind: str) -> list[str]:
    kinds = backend.get("/api/v1/jobs/kinds").json()["kinds"]
    return next(entry["steps"] for entry in kinds if entry["kind"] == kind)


def in_order(text: str, names: list[str]) -> bool:
    positions = [text.find(name) for name in names]
    return -1 not in positions and positions == sorted(positions)


# -- retrain, jobs, promotion ------------------------------------------------------------------

def test_retrain_starts_exactly_one_job_and_a_reopened_page_finds_it(backend):
    before = len(retrain_jobs(backend))
    app = open_page("retrain", ENGINEER)
    button(app, "Retrain now").click().run()
    jobs = retrain_jobs(backend)
    assert len(jobs) == before + 1
    job_id = jobs[0]["id"]
    assert app.session_state["retrain_job_id"] == job_id

    button(app, "Retrain now").click().run()  # while it runs: the same job, no second one
    assert len(retrain_jobs(backend)) == before + 1
    assert any("already" in i.value and job_id[:8] in i.value for i in app.info)

    reopened = open_page("retrain", ENGINEER)  # a new session knows nothing: it asks the API
    assert reopened.session_state["retrain_job_id"] == job_id
    assert any(f"`{job_id[:8]}`" in m.value and "retrain job" in m.value for m in reopened.markdown)
    assert len(reopened.get("progress")) == 1
    steps = published_steps(backend, "retrain")  # drawn from GET /jobs/kinds, in the worker's order
    assert any(in_order(m.value, steps) and " → " in m.value for m in reopened.markdown)
    assert any(" → ".join(steps) in c.value for c in reopened.caption)

    assert backend.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200  # spare the CPU
    assert backend.wait_job(job_id)["status"] == "cancelled"
    reopened.run()
    assert any("The retrain cancelled" in e and "Nothing was promoted" in e for e in errors(reopened))


def test_jobs_filters_and_shows_the_log_of_a_job(backend):
    app = open_page("jobs")
    table = app.dataframe[0].value
    assert {"retrain", "data_pull"} <= set(table["kind"]) and "cancelled" in set(table["status"])
    assert any("== pull" in c.value for c in app.code)  # the newest job's log

    app.selectbox(key="job_kind").set_value("retrain").run()
    assert set(app.dataframe[0].value["kind"]) == {"retrain"}
    app.selectbox(key="job_status").set_value("succeeded").run()
    assert not app.dataframe and any("No job matches" in i.value for i in app.info)


def test_promote_and_roll_back_each_ask_for_confirmation(backend):
    name = backend.get("/api/v1/models").json()["name"]
    client = registry.client()
    first = client.get_model_version(name, "1")
    second = str(client.create_model_version(name, first.source, run_id=first.run_id).version)
    app = open_page("retrain")
    chooser = next(s for s in app.selectbox if s.label == "Version to promote")
    chooser.set_value(next(o for o in chooser.options if o.startswith(f"v{second} "))).run()
    app.text_input(key="promotion_reason").set_value("approved in the console test").run()

    button(app, f"Promote v{second}…").click().run()
    assert any(f"Make **v{second}** the champion" in w.value for w in app.warning)
    button(app, "Cancel").click().run()
    assert not app.warning and str(registry.champion(name).version) == "1"

    button(app, f"Promote v{second}…").click().run()
    button(app, "Yes, do it").click().run()
    assert not app.exception
    assert [s.value for s in app.main.success] == [f"Version {second} is the champion now."]
    assert str(registry.champion(name).version) == second

    button(app, "Roll back to the previous champion…").click().run()
    assert any("Roll back from **v" in w.value for w in app.warning)
    button(app, "Yes, do it").click().run()
    assert [s.value for s in app.main.success] == ["Rolled back: version 1 is the champion again."]
    assert str(registry.champion(name).version) == "1"



def test_models_shows_who_was_champion_when_as_a_timeline_and_a_table(backend):
    periods = backend.get("/api/v1/models/champion/history").json()["periods"]
    assert [p["version"] for p in periods[-3:]] == ["1", periods[-2]["version"], "1"]  # promoted, rolled back
    assert [p["moved_by"] for p in periods[-2:]] == [ADMIN, ADMIN]
    app = open_page("models", VIEWER)
    table = table_with(app, "moved by")
    newest_first = periods[::-1]
    assert table["version"].tolist() == [f"v{p['version']}" for p in newest_first]
    assert table["moved by"].tolist() == [p["moved_by"] for p in newest_first]
    assert table["to"].isna().tolist() == [p["to"] is None for p in newest_first]  # only the serving one
    assert table["reason"][1] == periods[-2]["reason"]
    timeline = figure(app, 1)
    assert timeline["data"][0]["orientation"] == "h" and timeline["layout"]["xaxis"]["type"] == "date"
    assert timeline["data"][0]["y"] == [f"v{p['version']}" for p in periods]


def test_a_retrain_that_passes_the_gate_waits_for_another_admins_approval(backend):
    name = backend.get("/api/v1/models").json()["name"]
    app = open_page("retrain", ADMIN)
    button(app, "Retrain now").click().run()
    job = backend.wait_job(app.session_state["retrain_job_id"])
    assert job["status"] == "succeeded" and job["result"]["awaiting_approval"], job["log_tail"]
    version = str(job["result"]["model_version"])
    app.run()
    assert any(f"Version {version} passed the gate and waits for an admin's approval" in i.value
               for i in app.main.info)
    waiting = backend.get("/api/v1/approvals", params={"status": "pending"}).json()["items"]
    assert [(w["version"], w["requested_by"]) for w in waiting] == [(version, ADMIN)]
    gate = waiting[0]["comparison"]
    champion = f"v{gate['champion_version']} (champion), test PR AUC"
    assert metric(app, f"v{version} (challenger), test PR AUC") == f"{gate['challenger_score']:.4f}"
    assert metric(app, champion) == f"{gate['champion_score']:.4f}"

    app.text_input(key=f"approval_comment_{version}").set_value("my own retrain, looks fine").run()
    button(app, f"Approve v{version}").click().run()  # the four-eyes rule
    assert errors(app) == ["You started the retrain that made this version: another admin must decide."]
    viewer = open_page("models", VIEWER)
    assert not [label for label in labels(viewer) if label.endswith(f"v{version}")]
    assert any("An admin approves or rejects it" in c.value for c in viewer.caption)

    other = open_page("models", SECOND_ADMIN)
    button(other, f"Reject v{version}").click().run()
    assert errors(other) == ["Write a comment first: it is kept with the decision."]
    other.text_input(key=f"approval_comment_{version}").set_value("no better than the champion").run()
    button(other, f"Reject v{version}").click().run()
    assert not other.exception and notices(other) == [f"Rejected: version {version} stays a challenger."]
    decided = backend.get("/api/v1/approvals", params={"status": "rejected"}).json()["items"]
    assert [(d["version"], d["decided_by"], d["comment"]) for d in decided] == [
        (version, SECOND_ADMIN, "no better than the champion")]
    assert str(registry.champion(name).version) == "1"


# -- admin: users, tokens, audit -------------------------------------------------------------------

def user_to_change(app: AppTest, username: str) -> AppTest:
    chooser = app.selectbox(key="user_to_change")
    return chooser.set_value(next(o for o in chooser.options if o.startswith(f"{username} "))).run()


def test_users_lists_adds_and_changes_accounts(backend):
    app = open_page("users")
    listed = table_with(app, "display name")
    assert set(listed["username"]) == {u["username"] for u in backend.get("/api/v1/users").json()["items"]}
    app.text_input(key="new_user_0_name").set_value("rita")
    app.text_input(key="new_user_0_display_name").set_value("Rita Ops")
    app.selectbox(key="new_user_0_role").set_value("viewer")
    app.text_input(key="new_user_password_0").set_value("too short")
    button(app, "Add user").click().run()
    assert errors(app) and "password" in errors(app)[0], errors(app)  # the API's reason, one line
    assert app.text_input(key="new_user_password_1").value == "" and "too short" not in kept_values(app)
    assert app.text_input(key="new_user_0_name").value == "rita"  # kept: only the password is typed again
    app.text_input(key="new_user_password_1").set_value(PASSWORD)
    button(app, "Add user").click().run()
    assert notices(app) == ["Added person `rita` with role viewer."] and PASSWORD not in kept_values(app)
    assert app.text_input(key="new_user_1_name").value == ""
    rita = next(u for u in backend.get("/api/v1/users").json()["items"] if u["username"] == "rita")
    assert (rita["display_name"], rita["role"], rita["kind"], rita["disabled"]) == (
        "Rita Ops", "viewer", "person", False)

    before = sign_in(backend, "rita")
    user_to_change(app, "rita").selectbox(key="role_of_rita").set_value("engineer").run()
    button(app, "Change role").click().run()
    assert notices(app) == ["`rita` now has role engineer; their sessions were ended."]
    assert me(backend, before).status_code == 401
    assert me(backend, sign_in(backend, "rita")).json()["role"] == "engineer"
    button(user_to_change(app, "rita"), "Disable rita").click().run()
    assert "is disabled" in notices(app)[0]
    refused = requests.post(f"{backend.url}/api/v1/auth/login",
                            json={"username": "rita", "password": PASSWORD}, timeout=30)
    assert refused.status_code == 403
    button(user_to_change(app, "rita"), "Enable rita").click().run()
    assert notices(app) == ["`rita` can sign in again."]
    password = next(t for t in user_to_change(app, "rita").text_input if t.label == "New password")
    password.set_value("a brand new password").run()
    button(app, "Set new password").click().run()
    assert notices(app) == ["New password set for `rita`; their sessions were ended."]
    assert "a brand new password" not in kept_values(app)
    assert me(backend, sign_in(backend, "rita", "a brand new password")).json()["username"] == "rita"
    assert button(user_to_change(app, ADMIN), f"Disable {ADMIN}").proto.disabled  # not oneself


def test_a_service_account_gets_a_token_shown_once_then_revoked(backend):
    app = open_page("users")
    app.segmented_control(key="new_user_kind").set_value("service").run()
    assert "Password" not in [t.label for t in app.text_input]
    app.text_input(key="new_user_0_name").set_value("batch.bot")
    app.selectbox(key="new_user_0_role").set_value("operator")
    button(app, "Add user").click().run()
    assert notices(app) == ["Added service `batch.bot` with role operator."]

    app = open_page("tokens")
    owner = app.selectbox(key="token_owner")
    owner.set_value(next(o for o in owner.options if o.startswith("batch.bot "))).run()
    assert app.selectbox(key="token_role_batch.bot").options == ["viewer", "operator"]  # up to the owner's
    app.text_input(key="token_name").set_value("nightly scoring")
    app.number_input(key="token_days").set_value(30)
    button(app, "Create token").click().run()
    assert not app.exception and errors(app) == []
    secret = app.code[0].value
    assert secret.startswith("oct_") and "shown this once" in notices(app)[0]
    assert secret not in kept_values(app)
    acting = me(backend, secret).json()
    assert (acting["username"], acting["role"], acting["auth"]) == ("batch.bot", "operator", "token")
    listed = table_with(app, "prefix").set_index("name").loc["nightly scoring"]
    assert (listed["owner"], listed["role"], listed["state"]) == ("batch.bot", "operator", "active")
    assert secret.startswith(listed["prefix"].removesuffix("…"))
    app.run()
    assert not app.code  # shown once: not on the next run

    chooser = app.selectbox(key="token_to_revoke_choice")
    chooser.set_value(next(o for o in chooser.options if o.startswith("nightly scoring"))).run()
    button(app, "Revoke…").click().run()
    assert any("Revoke **nightly scoring" in w.value for w in app.warning)
    button(app, "Yes, revoke it").click().run()
    assert notices(app) == [f"Revoked {chooser.value}."]
    assert me(backend, secret).status_code == 401
    assert table_with(app, "prefix").set_index("name").loc["nightly scoring", "state"] == "revoked"


def test_the_audit_trail_is_filtered_paged_downloaded_and_verified(backend):
    app = open_page("audit")
    total = backend.get("/api/v1/audit", params={"limit": 1}).json()["total"]
    assert notices(app)[0].startswith("Audit chain intact: all") and errors(app) == []
    shown = table_with(app, "action")
    assert len(shown) == min(audit_trail.PAGE_SIZE, total) and shown["seq"].is_monotonic_decreasing
    assert f"of {total}, newest first" in " ".join(c.value for c in app.caption)

    app.number_input(key="audit_page").set_value(2).run()
    second = table_with(app, "action")
    assert second["seq"].iloc[0] < shown["seq"].iloc[-1]  # older, no overlap
    app.number_input(key="audit_page").set_value(1)
    app.text_input(key="audit_actor").set_value(SECOND_ADMIN).run()
    mine = table_with(app, "action")
    assert set(mine["actor"]) == {SECOND_ADMIN} and {"auth.login", "approvals.reject"} <= set(mine["action"])
    app.selectbox(key="audit_action").set_value("approvals.reject").run()
    rejected = table_with(app, "action")
    assert len(rejected) == 1 and rejected["target"][0].startswith("model:")
    app.text_input(key="audit_actor").set_value("")
    app.selectbox(key="audit_action").set_value(None)
    app.text_input(key="audit_target").set_value("user:rita").run()
    assert set(table_with(app, "action")["target"]) == {"user:rita"}

    filters = {"actor": OPERATOR, "action": "auth.login", "target": None, "since": None, "until": None}
    as_admin = ApiClient(backend.url, SESSIONS[ADMIN])
    downloaded = pd.read_csv(io.BytesIO(audit_trail.csv_of(as_admin, filters)()))
    every = backend.get("/api/v1/audit", params={"actor": OPERATOR, "action": "auth.login",
                                                 "limit": 1000}).json()
    assert downloaded["seq"].tolist() == [e["seq"] for e in every["items"]]
    assert len(downloaded) == every["total"]
    assert set(downloaded["outcome"]) >= {"ok", "denied"}  # its wrong password earlier, then its sign-ins


# -- monitoring: drift, emissions, service -----------------------------------------------------

def figure(app: AppTest, index: int) -> dict:
    return json.loads(app.get("plotly_chart")[index].proto.spec)


def markdown_with(app: AppTest, text: str) -> str:
    found = [m.value for m in app.markdown if text in m.value]
    assert len(found) == 1, [m.value for m in app.markdown]
    return found[0]


def batch_predict(backend, frame: pd.DataFrame) -> None:
    answer = backend.post("/api/v1/predict/batch", files={"file": ("rows.csv", frame.to_csv(index=False))})
    assert answer.status_code == 200, answer.text


def drift_report(backend, rows: int) -> dict:
    started = backend.post("/api/v1/jobs", json={"kind": "drift_report", "params": {"last_rows": rows}})
    job = backend.wait_job(started.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job["log_tail"]
    return backend.get(f"/api/v1/reports/{job['result']['report_id']}").json()


@pytest.fixture(scope="module")
def drift_reports(backend, tmp_path_factory) -> tuple[dict, dict]:
    """Two reports: the project's held-out rows (no drift), then the same number of rows generated
    with hotter air and more torque (drift)."""
    prepared = backend.project.path / "data" / "prepared"
    held_out = pd.concat([pd.read_parquet(prepared / f"{name}.parquet") for name in ("validation", "test")])
    batch_predict(backend, held_out)
    calm = drift_report(backend, len(held_out))
    hot = tmp_path_factory.mktemp("hot") / "hot.csv"
    generator.main(["--rows", str(len(held_out)), "--seed", "31", "--air-shift", "5", "--torque-shift", "8",
                    "--out", str(hot)])
    batch_predict(backend, pd.read_csv(hot))
    return calm, drift_report(backend, len(held_out))


def test_a_columns_score_reads_in_the_direction_of_its_test():
    distance = {"name": "a", "test": "Wasserstein distance (normed)", "statistic": 0.35, "threshold": 0.1,
                "drifted": True}
    p_value = {"name": "b", "test": "K-S p_value", "statistic": 0.001, "threshold": 0.05, "drifted": True}
    assert drift_view.how_much(distance) == "3.5× its threshold"
    assert drift_view.how_much(p_value) == "p = 0.001 (drift below 0.05)"
    assert drift_view.drift_ratio(distance) == pytest.approx(3.5)
    assert drift_view.drift_ratio(p_value) == pytest.approx(50)
    reports = [{"created": f"2024-05-0{day}T10:00:00+00:00", "columns": [{**distance, "drifted": drifted}]}
               for day, drifted in ((3, True), (2, True), (1, False))]  # newest first
    assert drift_view.column_since(reports, "a") == "since 2 May 10:00 UTC (2 reports in a row)"
    assert drift_view.column_since(reports[2:], "a") == "—"


def test_drift_puts_the_verdict_first_with_its_history_a_column_and_evidentlys_page(backend, drift_reports):
    calm, drifted = drift_reports
    assert not calm["dataset_drift"] and drifted["dataset_drift"]
    app = open_page("drift")
    assert errors(app) == []
    warning = app.main.warning[0].value
    assert warning.startswith("**Dataset drift**") and "first seen in the latest report" in warning
    names = drifted["drifted_columns"]
    assert metric(app, "Drifted features") == f"{len(names)} of {len(drifted['columns'])}"
    ratio = {c["name"]: c["statistic"] / c["threshold"] for c in drifted["columns"]}
    verdict = next(m.value for m in app.markdown if m.value.startswith("- **"))
    listed = [line.split("**")[1] for line in verdict.splitlines() if line.startswith("- ")]
    assert listed == sorted(names, key=ratio.get, reverse=True)  # the most drifted first
    assert f"**{listed[0]}**: {ratio[listed[0]]:.1f}× its threshold" in verdict
    assert [link.proto.page for link in app.get("page_link")] == ["retrain", "data"]

    shares = figure(app, 0)["data"][0]["y"]
    reports = backend.get("/api/v1/reports").json()["items"]
    assert shares == pytest.approx([r["drift_share"] * 100 for r in reversed(reports)])
    table = table_with(app, "how much").set_index("column")
    assert table["drifted"].to_dict() == {c["name"]: c["drifted"] for c in drifted["columns"]}

    chosen = app.selectbox(key="drift_column").value
    assert chosen == listed[0]
    spread = drifted["distributions"][chosen]
    assert [trace["y"] for trace in figure(app, 1)["data"]] == [
        pytest.approx([share * 100 for share in spread[side]]) for side in ("reference", "current")]
    frame = app.get("iframe")[0].proto.srcdoc
    assert '<iframe sandbox="allow-scripts"' in frame and "allow-same-origin" not in frame
    assert len(frame) > 1_000_000 and "drawDashboard" in frame and "&lt;script&gt;" in frame


def test_a_drift_report_started_on_the_page_is_followed_to_its_verdict(backend, drift_reports):
    app = open_page("drift")
    app.selectbox(key="drift_window").set_value(1_000).run()
    button(app, "Run drift report now").click().run()
    assert not app.exception and errors(app) == []
    job = backend.wait_job(app.session_state["drift_job_id"], timeout=120)
    assert job["status"] == "succeeded" and job["params"] == {"last_rows": 1_000}
    assert job["reason"] == "drift report requested from the console"
    app.run()
    newest = backend.get("/api/v1/reports/" + job["result"]["report_id"]).json()
    assert metric(app, "Rows compared") == "1,000"
    created = pd.Timestamp(newest["created"]).strftime("%-d %b %H:%M UTC")
    shown = next(s for s in app.selectbox if s.label == "Report")
    assert shown.value == shown.options[0] and shown.value.startswith(created)  # the newest, just made


def test_emissions_show_every_training_run_in_units_people_read(backend):
    answer = backend.get("/api/v1/emissions").json()
    runs, total = answer["items"], answer["total_emissions_kg_co2eq"]
    assert 0 < total < 1e-3  # a small model: mg is the unit that reads
    app = open_page("emissions")
    assert errors(app) == []
    assert metric(app, "Training runs") == str(len(runs))
    shown = metric(app, "CO₂eq emitted, all training")
    assert shown.endswith(" mg") and float(shown.removesuffix(" mg")) == pytest.approx(total * 1e6, rel=5e-3)
    assert metric(app, "Power readings") == " and ".join(sorted({r["tracking_mode"] for r in runs}))
    distance = re.search(r"driving \*\*([\d.,]+) (mm|cm|m)\*\*", markdown_with(app, "petrol car")).groups()
    metres = float(distance[0]) * {"mm": 1e-3, "cm": 1e-2, "m": 1}[distance[1]]
    assert metres == pytest.approx(total / 0.17 * 1000, rel=5e-3)
    assert any("0.17 kg CO₂eq per km" in c.value for c in app.caption)
    per_run = figure(app, 0)["data"]
    assert per_run[0]["y"] == pytest.approx([r["emissions_kg_co2eq"] * 1e6 for r in runs])
    assert per_run[2]["y"] == pytest.approx([r["duration_s"] for r in runs])
    app.segmented_control(key="emissions_group").set_value("version").run()
    versions = figure(app, 0)["data"][0]["x"]
    assert versions == sorted({f"v{r['model_version']}" for r in runs if r["model_version"]},
                              key=lambda v: int(v[1:]))


def service_metric(app: AppTest, label: str) -> float:
    value = metric(app, label)
    assert value != "—", label
    return float(value.split()[0].replace(",", ""))


def test_service_reads_the_apis_own_metrics_and_the_prediction_log(backend, api_schema):
    app = open_page("service")
    record = {f["name"]: f["typical"] for f in api_schema["features"]}
    for _ in range(3):
        assert backend.post("/api/v1/predict", json={"records": [record]}).status_code == 200
    assert backend.post("/api/v1/predict", json={"records": [{}]}).status_code == 422
    time.sleep(1.1)
    app.run()
    assert not app.exception and errors(app) == []
    readings = app.session_state["service_metrics_readings"]
    first, last = readings[0], readings[-1]
    assert last.requests - first.requests >= 4  # ours, and the page's own
    per_second = (last.requests - first.requests) / (last.at - first.at)
    assert service_metric(app, "Requests") == pytest.approx(per_second, rel=2e-3)
    assert metric(app, "Errors (5xx)") == "0.0 %"  # the refused request is a 4xx
    assert 0 < service_metric(app, "Latency p50") <= service_metric(app, "Latency p99") < 10_000
    summary = backend.get("/api/v1/predictions/summary").json()
    assert f"**{summary['total']:,} rows predicted in the last hour**" in markdown_with(app, "rows predicted")
    bars = figure(app, 2)["data"]
    assert sum(sum(trace["y"]) for trace in bars) == summary["total"]
    labels = api_schema["target"]["labels"]
    assert {trace["name"] for trace in bars} == {labels.get(k, k) for k in summary["labels"]}
    waiting = sum(backend.get("/api/v1/jobs", params={"status": status}).json()["total"]
                  for status in ("queued", "running"))
    assert metric(app, "Jobs waiting") == str(waiting)


def test_service_reads_prometheus_when_it_is_configured(backend, api_schema, tmp_path_factory, monkeypatch):
    prometheus = PrometheusServer(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{backend.port}")
    try:
        prometheus.wait_value('up{job="opcon-api"}', 1)
        record = {f["name"]: f["typical"] for f in api_schema["features"]}
        for _ in range(3):
            assert backend.post("/api/v1/predict", json={"records": [record]}).status_code == 200
        logged = len(PredictionLog(backend.project.state / "predictions").read())
        prometheus.wait_value("sum(opcon_predictions_total)", logged)
        monkeypatch.setenv("PROMETHEUS_URL", prometheus.url)
        app = open_page("service")
        assert errors(app) == []
        assert any(f"Source: Prometheus at {prometheus.url}" in c.value for c in app.caption)
        assert service_metric(app, "Requests") > 0 and metric(app, "Errors (5xx)") == "0.0 %"
        assert 0 < service_metric(app, "Latency p50") <= service_metric(app, "Latency p99") < 10_000
        assert service_metric(app, "Jobs waiting") == 0
        over_time = figure(app, 0)["data"]
        assert over_time[0]["name"] == "requests/s" and max(v for v in over_time[0]["y"] if v is not None) > 0
        assert sum(sum(trace["y"]) for trace in figure(app, 2)["data"]) >= 3

        # without Prometheus the page computes percentiles itself: the same as histogram_quantile
        reading = service_metrics.parse(requests.get(f"{backend.url}/metrics", timeout=10).text, time.time())
        for q in service_metrics.PERCENTILES.values():
            theirs = prometheus.scalar(f"histogram_quantile({q}, sum by (le) (flask_http_request_duration_"
                                       'seconds_bucket{method="POST", url_rule="/api/v1/predict"}))')
            assert service_metrics.quantile(q, reading.latency) == pytest.approx(theirs)
    finally:
        prometheus.stop()


# -- data, once more: the last test, as a new data version changes what a retrain above trains on --

def test_a_valid_batch_is_added_by_a_job_the_page_follows(backend):
    before = backend.get("/api/v1/datasets").json()
    app = open_page("data", ENGINEER)
    frame = generate(30, 14, first_id=400_001)
    app.file_uploader(key="dataset_file").set_value(("week-9.csv", frame.to_csv(index=False).encode(),
                                                     "text/csv")).run()
    button(app, "Validate and add as a new version").click().run()
    assert not app.exception and errors(app) == []
    job_id = app.session_state["dataset_upload_job_id"]  # the page follows the job, not the request
    job = backend.wait_job(job_id, timeout=180)
    assert job["kind"] == "dataset_upload" and job["status"] == "succeeded", job
    app.run()
    assert not app.exception
    added = job["result"]["data_version"][:10]
    assert any(f"Added: data version `{added}`" in s.value and "Retrain to use it" in s.value
               for s in app.success)
    table = app.dataframe[0].value
    assert len(table) == len(before["versions"]) + 1 and table["current"][0] == "●"
    assert table["data version"][0] == added
