"""Benchmark of the console in headless Chromium: page load and predict round trip.

In one run, on loopback, in a throw-away DVC project with its own $OPCON_HOME (tests/e2e/servers.py
`start_backend`: 2,000 generated rows, a trained champion, the API under gunicorn and a job worker;
then `streamlit run ui/streamlit_app.py`; one data pull so the Jobs page has a row; an admin signed
in, its session in the browser's cookie as the sign-in page leaves it):

1. every page, cold: a new tab opens the page's URL (Streamlit's bundle, websocket, script run);
   time until the page's main content (the part filled from the API) is visible;
2. every page, warm: a click in the sidebar of an open session, to the same content;
3. predict: click on Predict until a new request id is on screen (form → API → result drawn).

    .venv/bin/python bench/ui.py                    # 5 rounds, 20 predictions (about 2 minutes)
    .venv/bin/python bench/ui.py --rounds 3 --predictions 10

Prints the table and the goals (page ≤ 2 s, predict ≤ 0.5 s) as PASS/MISS lines; exits 0 unless
something crashes. The figures are also written to bench/results/ui.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from tests.e2e.servers import (  # noqa: E402
    VIEWPORT,
    add_user,
    chromium,
    sign_in,
    start_backend,
    start_streamlit,
)
from tests.helpers import STATE_VARIABLES  # noqa: E402

RESULTS = REPO / "bench" / "results" / "ui.json"
GOAL_PAGE_S = 2.0
GOAL_PREDICT_S = 0.5
# nav label -> (URL path, what shows that the page's content from the API is there)
PAGES = {
    "Predict": ("", 'button:has-text("Predict")'),
    "Batch": ("batch", '[data-testid="stFileUploaderDropzone"]'),
    "Retrain": ("retrain", 'text="Version to promote"'),
    "Models": ("models", 'text="Intended use"'),
    "Data": ("data", '[data-testid="stDataFrame"]'),
    "Jobs": ("jobs", 'text="Job to inspect"'),
}
NEW_REQUEST_ID = """old => {
    const ids = [...document.querySelectorAll('code')].map(c => c.textContent)
        .filter(t => /^[0-9a-f]{8}-[0-9a-f]{4}-/.test(t));
    return ids.length > 0 && ids[0] !== old;
}"""


def timed_wait(page: Page, selector: str, action) -> float:
    started = time.perf_counter()
    action()
    page.locator(selector).first.wait_for(state="visible", timeout=30_000)
    return time.perf_counter() - started


def cold_load(context, url: str, selector: str) -> float:
    tab = context.new_page()
    try:
        return timed_wait(tab, selector, lambda: tab.goto(url))
    finally:
        tab.close()


def warm_load(page: Page, nav: str, selector: str) -> float:
    link = page.locator('[data-testid="stSidebarNavLink"]', has_text=nav)
    return timed_wait(page, selector, link.click)


def request_id_on_screen(page: Page) -> str:
    return page.evaluate("""() => ([...document.querySelectorAll('code')].map(c => c.textContent)
        .find(t => /^[0-9a-f]{8}-[0-9a-f]{4}-/.test(t)) || '')""")


def predict_round_trips(page: Page, count: int) -> list[float]:
    page.locator('[data-testid="stSidebarNavLink"]', has_text="Predict").click()
    button = page.get_by_role("button", name="Predict")
    button.wait_for()
    times = []
    for _ in range(count + 1):  # the first one warms the model's and the page's caches: not counted
        before = request_id_on_screen(page)
        started = time.perf_counter()
        button.click()
        page.wait_for_function(NEW_REQUEST_ID, arg=before, polling="raf", timeout=30_000)
        times.append(time.perf_counter() - started)
    return times[1:]


def summary(values: list[float]) -> dict:
    return {"p50": statistics.median(values), "max": max(values), "n": len(values)}


def measure(console_url: str, session_token: str, rounds: int, predictions: int) -> dict:
    with sync_playwright() as playwright:
        browser = chromium(playwright)
        context = browser.new_context(viewport=VIEWPORT)
        context.add_cookies([{"name": "opcon_session", "value": session_token, "url": console_url,
                              "sameSite": "Strict"}])
        cold = {nav: [] for nav in PAGES}
        for _ in range(rounds):
            for nav, (path, selector) in PAGES.items():
                cold[nav].append(cold_load(context, f"{console_url}/{path}", selector))
        page = context.new_page()
        page.goto(console_url)
        page.locator(PAGES["Predict"][1]).first.wait_for()
        warm = {nav: [] for nav in PAGES}
        for _ in range(rounds):
            for nav, (_, selector) in [*list(PAGES.items())[1:], ("Predict", PAGES["Predict"])]:
                warm[nav].append(warm_load(page, nav, selector))
        predict = predict_round_trips(page, predictions)
        browser.close()
    return {"pages": {nav: {"cold": summary(cold[nav]), "warm": summary(warm[nav])} for nav in PAGES},
            "predict": summary(predict)}


def report(figures: dict) -> list[str]:
    lines = [f"{'page':<10}{'cold p50':>10}{'cold max':>10}{'warm p50':>10}{'warm max':>10}   goal",
             "-" * 70]
    for nav, times in figures["pages"].items():
        cold, warm = times["cold"], times["warm"]
        verdict = "PASS" if max(cold["p50"], warm["p50"]) <= GOAL_PAGE_S else "MISS"
        lines.append(f"{nav:<10}{cold['p50']:>9.2f}s{cold['max']:>9.2f}s{warm['p50']:>9.2f}s"
                     f"{warm['max']:>9.2f}s   {verdict} (p50 ≤ {GOAL_PAGE_S:g} s)")
    predict = figures["predict"]
    verdict = "PASS" if predict["p50"] <= GOAL_PREDICT_S else "MISS"
    lines += ["", f"predict click → result on screen: p50 {predict['p50'] * 1000:.0f} ms, "
                  f"max {predict['max'] * 1000:.0f} ms (n={predict['n']})   {verdict} "
                  f"(p50 ≤ {GOAL_PREDICT_S * 1000:.0f} ms)"]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="loads of every page, cold and warm")
    parser.add_argument("--predictions", type=int, default=20, help="predict round trips timed")
    parser.add_argument("--rows", type=int, default=2000, help="rows of the generated training data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opcon-bench-ui-") as tmp:
        root = Path(tmp)
        for name in STATE_VARIABLES:
            os.environ.pop(name, None)
        os.environ["OPCON_HOME"] = str(root / "state")
        print("training a champion and starting the API, a worker and the console…", flush=True)
        backend = start_backend(root, rows=args.rows)
        console = None
        try:
            job = backend.post("/api/v1/jobs", json={"kind": "data_pull"}).json()
            backend.wait_job(job["id"], timeout=120)
            add_user(backend, "bench", "admin")
            console = start_streamlit(backend)
            figures = measure(console.url, sign_in(backend, "bench"), args.rounds, args.predictions)
        finally:
            if console is not None:
                console.stop()
            backend.stop()
    lines = report(figures)
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**figures, "rounds": args.rounds}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
