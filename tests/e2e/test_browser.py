"""The console in Debian's Chromium (Playwright), against `streamlit run` and a real API + job worker.

One browser tab, in file order: the sign-in page first (a wrong password is one line); an operator
signs in, predicts (and is refused an out-of-range value), scores a batch, finds no Retrain, data upload
or Admin page and is refused Retrain by its URL; an admin adds an engineer on the Users page; the
engineer retrains, followed to a version that waits for approval; the admin approves it; a drift
report runs from its page on drifted predictions; the service page refreshes itself; every page opens;
the audit trail names who did all of it; a reload keeps the session; the API goes away and comes back;
signing out returns to the sign-in page. Each page's screenshot goes to tests/artifacts/screenshots
(docs/screenshots with OPCON_UPDATE_SCREENSHOTS=1). Feature names come from GET /schema.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from ml import generate as generator
from ml.generate import generate
from monitoring.prediction_log import PredictionLog
from tests.e2e.servers import PASSWORD, add_user
from tests.live import wait_until
from ui.components.forms import label
from ui.components.session_cookie import NAME as COOKIE

pytestmark = [pytest.mark.browser, pytest.mark.live]

PAGES = {"Predict": "Predict", "Batch": "Batch scoring", "Retrain": "Retrain", "Models": "Models",
         "Data": "Data", "Drift": "Drift", "Quality": "Quality", "Compare": "Compare",
         "Emissions": "Emissions", "Service": "Service", "Jobs": "Jobs", "Users": "Users",
         "Tokens": "Tokens", "Audit": "Audit"}
ADMIN, OPERATOR, ENGINEER = "ada", "otto", "emma"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RETRAIN_SECONDS = 240
saved: set[str] = set()  # pages already shown in a richer state by an earlier test


@pytest.fixture(scope="module", autouse=True)
def people(backend):
    """The admin and the operator, made with the service token; the engineer is made on the Users page."""
    add_user(backend, ADMIN, "admin", display_name="Ada Admin")
    add_user(backend, OPERATOR, "operator", display_name="Otto Operator")


def go_to(page: Page, nav: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=nav).click()
    expect(page.get_by_role("heading", name=PAGES[nav], level=1)).to_be_visible()


def menu(page: Page) -> list[str]:
    links = page.locator('[data-testid="stSidebarNavLink"]')
    expect(links.first).to_be_visible()
    return [text.split()[-1] for text in links.all_inner_texts()]  # after the icon's name


def sidebar(page: Page):
    return page.locator('[data-testid="stSidebar"]')


def sign_in_form(page: Page):
    """The sign-in form (the page signed out of may still be fading out around it)."""
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    return page.locator('[data-testid="stForm"]', has=page.get_by_role("button", name="Sign in"))


def sign_in_as(page: Page, username: str, password: str = PASSWORD) -> None:
    form = sign_in_form(page)
    form.get_by_role("textbox", name="Username").fill(username)
    form.get_by_role("textbox", name="Password").fill(password)
    form.get_by_role("button", name="Sign in").click()
    expect(sidebar(page).get_by_role("button", name="Sign out")).to_be_visible()
    expect(sidebar(page).get_by_text(username, exact=True)).to_be_visible()


def sign_out(page: Page) -> None:
    sidebar(page).get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    expect(page.get_by_text("You signed out.")).to_be_visible()
    page.wait_for_function(f"!document.cookie.includes('{COOKIE}=')")  # cleared by the sign-in screen


def session_cookie(page: Page) -> dict | None:
    return next((c for c in page.context.cookies() if c["name"] == COOKIE), None)


def assert_no_error_on_screen(page: Page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in page.locator("body").inner_text()


def save(page: Page, shots, name: str) -> None:
    page.wait_for_timeout(800)  # charts finish drawing
    page.screenshot(path=shots / f"{name}.png")
    saved.add(name)


def metric_value(page: Page, label: str):
    return page.locator('[data-testid="stMetric"]', has_text=label).locator('[data-testid="stMetricValue"]')


def logged_rows(backend) -> int:
    return len(PredictionLog(backend.project.state / "predictions").read())


def test_the_sign_in_page_comes_first_and_a_wrong_password_is_one_line(page, shots):
    form = sign_in_form(page)
    assert page.locator('[data-testid="stSidebarNavLink"]').count() == 0
    save(page, shots, "sign-in")
    form.get_by_role("textbox", name="Username").fill(OPERATOR)
    form.get_by_role("textbox", name="Password").fill("not the password")
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong username or password.")).to_be_visible()
    assert page.locator('[data-testid="stAlertContentError"]').count() == 1
    expect(form.get_by_role("textbox", name="Password")).to_have_value("")
    assert session_cookie(page) is None


def test_an_operator_signs_in_and_the_session_is_kept_in_a_strict_cookie(page):
    sign_in_as(page, OPERATOR)
    expect(sidebar(page).get_by_text("Otto Operator")).to_be_visible()
    expect(sidebar(page).get_by_text("role operator")).to_be_visible()
    expect(page.get_by_role("heading", name="Predict", level=1)).to_be_visible()
    page.wait_for_function(f"document.cookie.includes('{COOKIE}=ocs_')")  # set by the sidebar's last element
    cookie = session_cookie(page)
    assert cookie is not None and cookie["value"].startswith("ocs_"), page.context.cookies()
    assert (cookie["sameSite"], cookie["path"], cookie["secure"]) == ("Strict", "/", False)  # http here
    assert cookie["expires"] > 0  # until the session's end, not the browser's


def test_predict_refuses_an_out_of_range_value_then_answers(page, backend, shots):
    schema = backend.get("/api/v1/schema").json()
    go_to(page, "Predict")
    bounded = [f for f in schema["features"] if f["type"] == "number" and f.get("max") is not None]
    field = page.get_by_role("spinbutton", name=label(bounded[0]), exact=True)
    before = logged_rows(backend)
    field.fill(str(bounded[0]["max"] + 1))
    field.press("Tab")
    expect(field).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Predict").click()
    page.wait_for_timeout(1500)
    assert page.get_by_text("Predicted outcome").count() == 0 and logged_rows(backend) == before

    record = {f["name"]: f["typical"] for f in schema["features"]}
    record[bounded[-1]["name"]] = bounded[-1]["max"]  # the edge of the range is allowed
    field.fill(str(record[bounded[0]["name"]]))
    other = page.get_by_role("spinbutton", name=label(bounded[-1]), exact=True)
    other.fill(str(bounded[-1]["max"]))
    other.press("Tab")
    page.get_by_role("button", name="Predict").click()
    expect(page.get_by_text("Predicted outcome")).to_be_visible()

    request_id = UUID.search(page.locator("code", has_text=UUID).first.inner_text()).group(0)
    logged = PredictionLog(backend.project.state / "predictions").find(request_id)
    assert logged[bounded[-1]["name"]].tolist() == [bounded[-1]["max"]]
    expected = backend.post("/api/v1/predict", json={"records": [record]}).json()["predictions"][0]
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == expected["label_text"]
    assert_no_error_on_screen(page)
    save(page, shots, "predict")


def test_a_csv_is_scored_and_downloaded(page, backend, shots, tmp_path):
    go_to(page, "Batch")
    original = generate(400, 21, first_id=500_001)
    path = tmp_path / "machines.csv"
    original.to_csv(path, index=False)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(path)
    page.get_by_role("button", name="Score “machines.csv”").click()
    expect(page.get_by_text("Rows scored")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download scored CSV").click()
    assert download.value.suggested_filename.startswith("scored-")
    scored = pd.read_csv(download.value.path())
    assert len(scored) == len(original)
    assert list(scored.columns[:len(original.columns)]) == list(original.columns)
    assert {"prediction_label", "prediction_probability"} <= set(scored.columns)
    assert_no_error_on_screen(page)
    save(page, shots, "batch")


def test_an_operator_finds_no_retrain_data_upload_or_admin_page_and_is_refused_one_by_its_url(page, console):
    assert menu(page) == ["Predict", "Batch", "Models", "Data", "Drift", "Quality", "Compare", "Emissions",
                          "Service", "Jobs"]
    go_to(page, "Data")
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()  # the versions: the page is drawn
    assert page.get_by_role("heading", name="Add a labelled batch").count() == 0
    assert page.locator('[data-testid="stFileUploader"]').count() == 0
    page.goto(f"{console.url}/retrain")  # a new page load: signed in again from the cookie
    expect(page.get_by_text("Your role (operator) may not use Retrain: it needs jobs:start.")).to_be_visible()
    assert page.get_by_role("button", name="Retrain now").count() == 0
    expect(sidebar(page).get_by_text("Otto Operator")).to_be_visible()
    sign_out(page)
    assert session_cookie(page) is None


def test_an_admin_adds_an_engineer_on_the_users_page(page, backend):
    sign_in_as(page, ADMIN)
    assert menu(page)[-3:] == ["Users", "Tokens", "Audit"]
    go_to(page, "Users")
    form = page.locator('[data-testid="stForm"]')
    form.get_by_role("textbox", name="Username").fill(ENGINEER)
    form.get_by_role("textbox", name="Display name").fill("Emma Engineer")
    form.get_by_role("combobox", name="Role").click()
    page.get_by_role("option", name="engineer").click()
    form.get_by_role("textbox", name="Password").fill(PASSWORD)
    form.get_by_role("button", name="Add user").click()
    expect(page.get_by_text(f"Added person {ENGINEER} with role engineer.")).to_be_visible()
    made = next(u for u in backend.get("/api/v1/users").json()["items"] if u["username"] == ENGINEER)
    assert (made["role"], made["display_name"]) == ("engineer", "Emma Engineer")
    sign_out(page)


def test_the_engineer_retrains_to_a_version_that_waits_for_approval(page, backend, shots):
    sign_in_as(page, ENGINEER)
    go_to(page, "Retrain")
    page.get_by_role("button", name="Retrain now").click()
    expect(page.get_by_text(re.compile(r"retrain job .* is (queued|running)"))).to_be_visible()
    expect(page.get_by_text("step “train”")).to_be_visible(timeout=RETRAIN_SECONDS * 1000)
    save(page, shots, "retrain-running")
    go_to(page, "Jobs")  # leave the page and come back: it still shows the job
    go_to(page, "Retrain")
    waiting = page.get_by_text("Version 2 passed the gate and waits for an admin's approval; until then the "
                               "champion stays v1.")
    expect(waiting).to_be_visible(timeout=RETRAIN_SECONDS * 1000)
    expect(page.get_by_text("CO₂ cost of training")).to_be_visible()
    expect(page.get_by_text("v2 waits for approval")).to_be_visible()
    expect(metric_value(page, "v2 (challenger), test PR AUC")).to_have_text(re.compile(r"^0\.\d{4}$"))
    assert page.get_by_role("button", name="Approve v2").count() == 0  # engineers do not approve
    assert page.get_by_role("button", name=re.compile("^Promote")).count() == 0
    assert_no_error_on_screen(page)
    save(page, shots, "retrain")
    assert backend.get("/api/v1/models").json()["champion"] == "1"
    sign_out(page)


def test_the_waiting_challenger_shadows_live_traffic_and_compare_and_quality_fill_up(page, backend, shots):
    """v2 waits for approval, so it is the challenger: live requests are also scored by it."""
    names = [f["name"] for f in backend.get("/api/v1/schema").json()["features"]]
    frame = generate(400, 23, first_id=600_001)
    target = backend.project.params.schema.target.name
    sent = []

    def shadowed_enough() -> bool:
        start = len(sent)
        for index in range(start, min(start + 40, len(frame))):
            answer = backend.post("/api/v1/predict", json={"records": [frame.iloc[index][names].to_dict()]})
            assert answer.status_code == 200 and answer.json()["model"]["version"] == "1"
            sent.append((answer.json()["request_id"], frame.iloc[index][target]))
        return backend.get("/api/v1/models/compare").json()["compared_rows"] >= 150

    wait_until(shadowed_enough, 60, "the challenger has scored 150 live rows in the shadow")
    counted = [None]

    def settled() -> bool:  # the shadow threads have written what they gathered
        now = backend.get("/api/v1/models/compare").json()["compared_rows"]
        before, counted[0] = counted[0], now
        return now == before

    wait_until(settled, 30, "the shadow log has stopped growing", interval=0.3)
    items = [{"request_id": rid, "row": 0, "label": int(label)} for rid, label in sent]
    assert backend.post("/api/v1/feedback", json={"items": items}).status_code == 200
    body = backend.get("/api/v1/models/compare").json()
    assert body["challenger_versions"] == ["2"] and body["quality"]["labelled_rows"] == body["compared_rows"]

    sign_in_as(page, ENGINEER)
    go_to(page, "Compare")
    expect(page.get_by_text(f"on {body['compared_rows']:,} labelled live rows")).to_be_visible(timeout=30_000)
    expect(metric_value(page, "Live rows compared")).to_have_text(f"{body['compared_rows']:,}")
    expect(page.get_by_role("heading", name="The evidence")).to_be_visible()
    assert page.get_by_role("button", name="Approve v2").count() == 0  # engineers do not approve
    assert_no_error_on_screen(page)
    save(page, shots, "compare")
    go_to(page, "Quality")
    expect(page.get_by_text(re.compile(r"^Estimated ROC AUC \d\.\d{3} \(band"))).to_be_visible()
    assert_no_error_on_screen(page)
    save(page, shots, "quality")
    sign_out(page)


def test_the_admin_approves_it_and_it_becomes_the_champion(page, backend, shots):
    sign_in_as(page, ADMIN)
    go_to(page, "Models")
    comment = page.get_by_role("textbox", name="Comment (kept with the decision)")
    comment.fill("same data, same scores: fine to serve")
    comment.press("Enter")
    page.get_by_role("button", name="Approve v2").click()
    expect(page.get_by_text("Approved: version 2 is the champion now.")).to_be_visible()
    assert backend.get("/api/v1/models").json()["champion"] == "2"
    expect(sidebar(page).get_by_text(re.compile(r"version 2$"))).to_be_visible(timeout=15_000)
    history = backend.get("/api/v1/models/champion/history").json()["periods"]
    assert (history[-1]["version"], history[-1]["moved_by"]) == ("2", ADMIN)
    expect(page.get_by_role("heading", name="Champion history")).to_be_visible()
    assert_no_error_on_screen(page)
    save(page, shots, "models")


def predict_batch(backend, content: bytes) -> None:
    scored = backend.post("/api/v1/predict/batch", files={"file": ("rows.csv", content)})
    assert scored.status_code == 200, scored.text


def test_a_drift_report_runs_from_its_page_and_evidently_draws_offline(page, backend, shots, tmp_path):
    prepared = backend.project.path / "data" / "prepared"  # held-out rows: an earlier, calm report
    held_out = pd.concat([pd.read_parquet(prepared / f"{name}.parquet") for name in ("validation", "test")])
    predict_batch(backend, held_out.to_csv(index=False).encode())
    calm = backend.post("/api/v1/jobs", json={"kind": "drift_report", "params": {"last_rows": len(held_out)}})
    assert backend.wait_job(calm.json()["id"], timeout=120)["status"] == "succeeded"
    hot = tmp_path / "hot.csv"
    generator.main(["--rows", "1000", "--seed", "41", "--air-shift", "5", "--torque-shift", "8",
                    "--out", str(hot)])
    predict_batch(backend, hot.read_bytes())
    go_to(page, "Drift")
    page.get_by_role("combobox", name="Window").click()
    page.get_by_role("option", name="the last 1,000 predictions").click()
    fetched = []  # what the report's frames ask the network for: nothing (its JS and fonts are inlined)

    def from_the_report(request) -> None:
        if request.frame.url == "about:srcdoc" and not request.url.startswith(("data:", "blob:")):
            fetched.append(request.url)

    page.on("request", from_the_report)
    page.get_by_role("button", name="Run drift report now").click()
    expect(page.get_by_text(re.compile(r"^Dataset drift: \d of \d features drifted"))).to_be_visible(
        timeout=120_000)
    # while the page reruns, the previous report's frame can still stand beside the new one
    frames = page.locator('iframe[title="st.iframe"]')

    def report_says_drift() -> bool:
        return any(frames.nth(i).content_frame.frame_locator('iframe[title="Evidently drift report"]')
                   .get_by_text("Dataset Drift is detected").is_visible() for i in range(frames.count()))

    wait_until(report_says_drift, 30, "Evidently's report says the data set drifted")
    assert fetched == []
    expect(metric_value(page, "Rows compared")).to_have_text("1,000")
    expect(page.get_by_role("link", name="Retrain the model")).to_be_visible()
    assert_no_error_on_screen(page)
    save(page, shots, "drift")


def test_the_service_page_refreshes_itself(page, backend, shots):
    go_to(page, "Service")
    expect(metric_value(page, "Requests")).to_have_text("—")  # one reading: no rate yet
    schema = backend.get("/api/v1/schema").json()
    record = {f["name"]: f["typical"] for f in schema["features"]}
    for _ in range(5):
        assert backend.post("/api/v1/predict", json={"records": [record]}).status_code == 200
    # nobody touches the page: its next reading shows the rate and the latency of those requests
    expect(metric_value(page, "Requests")).to_have_text(re.compile(r"^[\d.]+ /s$"), timeout=15_000)
    expect(metric_value(page, "Latency p50")).to_have_text(re.compile(r"^[\d.]+ ms$"))
    assert_no_error_on_screen(page)
    save(page, shots, "service")


@pytest.mark.parametrize("nav", list(PAGES))
def test_every_page_opens_without_an_error(page, shots, nav):
    go_to(page, nav)
    page.wait_for_timeout(1000)  # the page's API calls and charts
    assert_no_error_on_screen(page)
    name = nav.lower()
    if name not in saved:
        save(page, shots, name)


def test_the_audit_page_names_who_did_what(page, shots):
    go_to(page, "Jobs")  # from another page: what is on screen then is this run's, the download's too
    go_to(page, "Audit")
    expect(page.get_by_text(re.compile(r"^Audit chain intact: all \d+ events verified\.$"))).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile(r"^Download all \d+ as CSV$")).click()
    events = pd.read_csv(download.value.path())
    done = {(e.actor, e.action, e.outcome) for e in events.itertuples()}
    expected = {(OPERATOR, "auth.login", "denied"), (OPERATOR, "auth.login", "ok"),
                (OPERATOR, "auth.logout", "ok"), (ADMIN, "users.create_user", "ok"),
                (ENGINEER, "auth.login", "ok"), (ENGINEER, "jobs.start", "ok"),
                (ADMIN, "approvals.approve", "ok")}
    assert expected <= done, done
    assert events["seq"].is_monotonic_decreasing  # newest first
    made = events[events["action"] == "users.create_user"]
    by_target = dict(zip(made["target"], made["actor"], strict=True))
    assert by_target[f"user:{ENGINEER}"] == ADMIN  # the others were made with the service token
    assert by_target[f"user:{OPERATOR}"] != ADMIN
    assert_no_error_on_screen(page)
    save(page, shots, "audit")


def test_a_reload_keeps_the_session(page):
    page.reload()
    expect(page.get_by_role("heading", name="Audit", level=1)).to_be_visible()
    expect(sidebar(page).get_by_text("Ada Admin")).to_be_visible()


def test_when_the_api_goes_away_the_page_says_so_and_recovers_by_itself(page, api_link):
    go_to(page, "Models")
    main_errors = page.locator('[data-testid="stMain"] [data-testid="stAlertContentError"]')
    expect(page.get_by_text("Intended use")).to_be_visible()
    api_link.stop()
    expect(main_errors.filter(has_text="is not reachable")).to_be_visible(timeout=20_000)
    assert main_errors.count() == 1
    assert_no_error_on_screen(page)
    api_link.start()  # nobody touches the page: the sidebar's status check reruns it
    expect(page.get_by_text("Intended use")).to_be_visible(timeout=20_000)
    expect(main_errors).to_have_count(0)  # the rerun replaces the page's elements one by one


def test_signing_out_returns_to_the_sign_in_page_and_a_reload_stays_there(page):
    sign_out(page)
    assert session_cookie(page) is None
    page.reload()
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    assert page.locator('[data-testid="stSidebarNavLink"]').count() == 0
