"""The console in Debian's Chromium (Playwright), against `streamlit run` and a real API + job worker.

One browser session, in file order: predict (and a refused out-of-range value), a batch scored and
downloaded, a retrain followed to its end and its version promoted, a drift report run from its page
on drifted predictions, the service page refreshing itself, then every page opened. Each
page's screenshot goes to tests/artifacts/screenshots (docs/screenshots with
OPCON_UPDATE_SCREENSHOTS=1). Feature names come from GET /schema.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from ml import generate as generator
from ml.generate import generate
from monitoring.prediction_log import PredictionLog
from ui.components.forms import label

pytestmark = [pytest.mark.browser, pytest.mark.live]

PAGES = {"Predict": "Predict", "Batch": "Batch scoring", "Retrain": "Retrain", "Models": "Models",
         "Data": "Data", "Drift": "Drift", "Emissions": "Emissions", "Service": "Service", "Jobs": "Jobs"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RETRAIN_SECONDS = 240
saved: set[str] = set()  # pages already shown in a richer state by an earlier test


def go_to(page: Page, nav: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=nav).click()
    expect(page.get_by_role("heading", name=PAGES[nav], level=1)).to_be_visible()


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


def test_predict_refuses_an_out_of_range_value_then_answers(page, backend, shots):
    schema = backend.get("/api/v1/schema").json()
    expect(page.get_by_role("heading", name="Predict", level=1)).to_be_visible()
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


def test_a_retrain_is_followed_to_its_new_version_which_is_then_promoted(page, backend, shots):
    go_to(page, "Retrain")
    page.get_by_role("button", name="Retrain now").click()
    expect(page.get_by_text(re.compile(r"retrain job .* is (queued|running)"))).to_be_visible()
    expect(page.get_by_text("step “train”")).to_be_visible(timeout=RETRAIN_SECONDS * 1000)
    save(page, shots, "retrain-running")
    go_to(page, "Jobs")  # leave the page and come back: it still shows the job
    go_to(page, "Retrain")
    outcome = page.get_by_text(re.compile(r"Version 2 was (promoted|registered as challenger)"))
    expect(outcome).to_be_visible(timeout=RETRAIN_SECONDS * 1000)
    # the same data and seed give the same scores: the gate keeps the champion
    expect(page.get_by_text("Version 2 was registered as challenger; the champion stays v1.")).to_be_visible()
    expect(page.get_by_text("CO₂ cost of training")).to_be_visible()
    assert_no_error_on_screen(page)
    save(page, shots, "retrain")

    page.get_by_role("button", name="Promote v2…").click()
    page.get_by_role("button", name="Yes, do it").click()
    expect(page.get_by_text("Version 2 is the champion now.")).to_be_visible()
    assert backend.get("/api/v1/models").json()["champion"] == "2"
    sidebar = page.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text(re.compile(r"version 2$"))).to_be_visible(timeout=15_000)


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
    report = page.frame_locator('iframe[title="st.iframe"]').frame_locator(
        'iframe[title="Evidently drift report"]')
    expect(report.get_by_text("Dataset Drift is detected")).to_be_visible(timeout=30_000)
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
    assert main_errors.count() == 0
