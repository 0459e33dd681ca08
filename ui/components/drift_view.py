"""Drift reports as people read them: which columns drifted, by how much, since when.

Reports come from GET /reports (newest first). A column's `statistic` is the score of the test
Evidently chose for it: a distance (drift at or above the threshold) or a p-value (drift below it).
"""

from __future__ import annotations

import html

import pandas as pd

from ui.components import formatting

# Evidently's tests whose score is a p-value (the others are distances or divergences)
P_VALUE_TESTS = ("p_value", "Fisher", "Mann-Whitney", "t_test", "g_test", "Epps-Singleton", "Anderson",
                 "Cramer", "empirical_mmd", "Total-Variation")
REPORT_SCALE = 0.72


def is_p_value(test: str) -> bool:
    return any(marker in test for marker in P_VALUE_TESTS)


def how_much(column: dict) -> str:
    """The score against its threshold in words: `10.9× its threshold` or `p = 0.003 (drift below 0.05)`."""
    score, threshold = column.get("statistic"), column["threshold"]
    if score is None:
        return "no score"
    if is_p_value(column["test"]):
        return f"p = {score:.2g} (drift below {threshold:g})"
    if threshold > 0:
        return f"{score / threshold:.1f}× its threshold"
    return f"{score:.3g} (threshold {threshold:g})"


def drift_ratio(column: dict) -> float | None:
    """How far past (> 1) or short of (< 1) its threshold a column is, whatever the test's direction."""
    score, threshold = column.get("statistic"), column["threshold"]
    if score is None or threshold <= 0:
        return None
    if is_p_value(column["test"]):
        return threshold / score if score > 0 else float("inf")
    return score / threshold


def column_of(report: dict, name: str) -> dict | None:
    return next((c for c in report["columns"] if c["name"] == name), None)


def streak(reports: list[dict], drifting) -> list[dict]:
    """The newest reports, in a row, for which `drifting(report)` holds (newest first)."""
    found = []
    for report in reports:
        if not drifting(report):
            break
        found.append(report)
    return found


def moment(value: str) -> str:
    """`24 Nov 05:38 UTC`: short enough for a line of text."""
    return formatting.timestamp(value).strftime("%-d %b %H:%M UTC")


def since_text(run: list[dict]) -> str:
    if not run:
        return "—"
    if len(run) == 1:
        return "first seen in the latest report"
    return f"since {moment(run[-1]['created'])} ({len(run)} reports in a row)"


def column_since(reports: list[dict], name: str) -> str:
    return since_text(streak(reports, lambda r: bool((column_of(r, name) or {}).get("drifted"))))


def dataset_since(reports: list[dict]) -> str:
    return since_text(streak(reports, lambda r: r["dataset_drift"]))


def window_text(window: dict) -> str:
    rows = window.get("rows")
    rows_text = f"{rows:,} predictions" if rows is not None else "predictions"
    span = ""
    if window.get("first") and window.get("last"):
        span = f", logged {moment(window['first'])} to {moment(window['last'])}"
    if window.get("last_rows"):
        return f"the last {rows_text}{span}"
    return f"{rows_text}{span}"


def columns_table(report: dict, reports: list[dict]) -> pd.DataFrame:
    """One row per feature of a report: the verdict first, the most drifted on top."""
    rows = [{"column": c["name"], "drifted": bool(c["drifted"]), "how much": how_much(c),
             "drifting": column_since(reports, c["name"]) if c["drifted"] else "", "test": c["test"],
             "score": c.get("statistic"), "threshold": c["threshold"],
             "_order": drift_ratio(c) or 0.0} for c in report["columns"]]
    frame = pd.DataFrame(rows).sort_values(["drifted", "_order"], ascending=False)
    return frame.drop(columns="_order").reset_index(drop=True)


def history(reports: list[dict]) -> pd.DataFrame:
    """One row per report, oldest first: when, the share of drifted features, the verdict."""
    frame = pd.DataFrame([{
        "created": formatting.timestamp(r["created"]), "drift_share": r["drift_share"],
        "threshold": r.get("drift_share_threshold"), "dataset_drift": bool(r["dataset_drift"]),
        "drifted": ", ".join(r["drifted_columns"]) or "none", "rows": r["window"].get("rows"),
        "model_version": r["model_version"]} for r in reports])
    return frame.sort_values("created").reset_index(drop=True)


def column_history(reports: list[dict], name: str) -> pd.DataFrame:
    rows = []
    for report in reports:
        if (column := column_of(report, name)) is not None:
            rows.append({"created": formatting.timestamp(report["created"]), "score": column.get("statistic"),
                         "threshold": column["threshold"], "drifted": bool(column["drifted"]),
                         "test": column["test"]})
    return pd.DataFrame(rows).sort_values("created").reset_index(drop=True) if rows else pd.DataFrame()


def report_label(report: dict) -> str:
    verdict = "drift" if report["dataset_drift"] else "no drift"
    return (f"{moment(report['created'])} · {verdict} · "
            f"{formatting.percent(report['drift_share'], 0)} of features · v{report['model_version']}")


def sandboxed(page: str, scale: float = REPORT_SCALE) -> str:
    """Evidently's page inside a frame of its own with scripts but no origin: it draws its charts
    (its JavaScript and fonts are inlined) but cannot reach the console's page, cookies or storage.
    Scaled down: its tables need about 1,100 px, more than the console's main column."""
    size = f"{100 / scale:.2f}%"
    return ('<!DOCTYPE html><html><head><style>html,body{margin:0;height:100%;overflow:hidden}'
            f'iframe{{border:0;width:{size};height:{size};transform:scale({scale});transform-origin:0 0}}'
            '</style></head><body>'
            f'<iframe sandbox="allow-scripts" title="Evidently drift report" srcdoc="{html.escape(page)}">'
            '</iframe></body></html>')
