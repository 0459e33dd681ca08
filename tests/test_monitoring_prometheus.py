"""Prometheus: prometheus.yml and the alert rules pass promtool and their unit tests, the rules use
only metrics the code exports, and the real Prometheus (Debian package `prometheus`) scrapes a live
API and answers queries about it through its HTTP API."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from ml.config import REPO_ROOT
from tests.helpers import EXPORTED_METRICS, binary, build_project, metric_names, typical_record
from tests.live import PrometheusServer, Services

CONFIG = REPO_ROOT / "prometheus.yml"
RULES = REPO_ROOT / "monitoring" / "alerts" / "opcon.rules.yml"
RULE_TESTS = REPO_ROOT / "monitoring" / "alerts" / "opcon.rules.test.yml"
API_JOB = "opcon-api"

REQUIRED_ALERTS = {"OpconApiDown", "OpconApiErrorRatioHigh", "OpconPredictLatencyHigh",
                   "OpconDatasetDrift", "OpconFeatureDriftPersists", "OpconRetrainFailed"}
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str) -> str:
    done = subprocess.run([binary("promtool"), *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_metric_names_ignores_functions_labels_and_keywords():
    expr = ('histogram_quantile(0.99, sum by (le) (rate(a_bucket{url_rule="/x", le!="1e3"}[5m])))'
            ' > 0.05 or b_total > 0 unless c offset 30m and on(kind) time() - d_seconds > 1e3')
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d_seconds"}


def test_prometheus_config_is_valid_and_loads_the_rules():
    out = promtool("check", "config", str(CONFIG))
    assert "SUCCESS: 1 rule files found" in out
    config = yaml.safe_load(CONFIG.read_text())
    assert [(REPO_ROOT / path).resolve() for path in config["rule_files"]] == [RULES]
    assert [job["job_name"] for job in config["scrape_configs"]] == [API_JOB]


def test_alert_rules_are_valid():
    out = promtool("check", "rules", str(RULES))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


def test_alert_rules_unit_tests_pass():
    assert "SUCCESS" in promtool("test", "rules", str(RULE_TESTS))


def test_every_alert_is_labelled_explained_and_uses_exported_metrics_only():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert len(rule["annotations"]["summary"]) > 10, rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]
        assert metric_names(rule["expr"]) <= EXPORTED_METRICS, rule["alert"]
    api_down = next(rule for rule in rules if rule["alert"] == "OpconApiDown")
    assert api_down["expr"].strip() == f'up{{job="{API_JOB}"}} == 0'


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for name in {rule["alert"] for rule in alert_rules()}:
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: firing and not firing cases needed"


@pytest.fixture(scope="module")
def scraped(module_state, tmp_path_factory):
    """A live API (gunicorn, 2 workers) with a champion, and Prometheus scraping it every second."""
    binary("prometheus")
    project = build_project(module_state, rows=2000)
    project.train()
    services = Services(project.path, project.state)
    services.start_api()
    prometheus = None
    try:
        services.wait_ready()
        prometheus = PrometheusServer(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{services.port}")
        services.record = typical_record(project.params.schema)
        services.prometheus = prometheus
        yield services
    finally:
        if prometheus is not None:
            prometheus.stop()
        services.stop()


@pytest.mark.live
def test_prometheus_scrapes_the_live_api_and_answers_queries(scraped):
    prometheus = scraped.prometheus
    prometheus.wait_value(f'up{{job="{API_JOB}"}}', 1)
    rows = 0
    for count in (1, 2, 4):  # spread over both gunicorn workers
        response = scraped.post("/api/v1/predict", json={"records": [scraped.record] * count})
        assert response.status_code == 200, response.text
        rows += count

    prometheus.wait_value("sum(opcon_predictions_total)", rows)
    champion = prometheus.api("query", query="opcon_champion_info")["result"]
    assert [series["metric"]["version"] for series in champion] == ["1"]  # one series for all workers
    by_version = prometheus.api("query", query="sum by (model_version) (opcon_predictions_total)")
    assert [series["metric"]["model_version"] for series in by_version["result"]] == ["1"]
    prometheus.wait_value('sum(flask_http_request_total{method="POST", status="200"})', 3)
    # the selector of the latency alert matches what the API exports
    prometheus.wait_value('sum(flask_http_request_duration_seconds_count{method="POST", '
                          'url_rule="/api/v1/predict", status=~"2.."})', 3)


@pytest.mark.live
def test_the_rules_are_loaded_evaluated_and_quiet_on_a_healthy_api(scraped):
    prometheus = scraped.prometheus

    def evaluated_rules():
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(rule.get("lastEvaluation", "").startswith("20")
                                      for rule in rules) else None

    rules = prometheus._wait(evaluated_rules, "evaluating its rules")
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in alert_rules()}
    assert {rule["name"]: rule["health"] for rule in rules} == {rule["name"]: "ok" for rule in rules}
    # evaluated again, a whole second later, on the scraped series (UTC to the second: ordered as text)
    seen = max(rule["lastEvaluation"][:19] for rule in rules)
    prometheus._wait(lambda: (again := evaluated_rules()) and all(
        rule["lastEvaluation"][:19] > seen for rule in again), "evaluating its rules again")
    assert prometheus.api("alerts")["alerts"] == []


@pytest.mark.live
def test_every_grafana_dashboard_query_is_valid_promql(scraped):
    dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "dashboards" / "opcon.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert queries
    for query in queries:  # Prometheus answers 400 with the parse error otherwise
        scraped.prometheus.api("query", query=query.replace("$__rate_interval", "1m"))
