"""The HTML drift report: Evidently's DataDriftPreset plus prediction drift, on a seeded sample.

Evidently's widgets cost seconds per million rows, and its HTML is about 4 MB whatever the size, so
the page is drawn from at most `rows` rows of each side (uniform, seeded: the same window gives the
same page). Each column uses the test the full-data verdict used (pinned by name), and a banner says
when the page shows a sample; the verdicts of record are the full-data ones in the JSON summary.
"""

from __future__ import annotations

import html

import pandas as pd

from monitoring.drift import NUMERIC, ColumnDrift

SEED = 20240501


def sample(frame: pd.DataFrame, rows: int, seed: int = SEED) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def _banner(current_rows: int, current_total: int, reference_rows: int, reference_total: int) -> str:
    text = (f"Drawn from {current_rows:,} of {current_total:,} rows of the window and "
            f"{reference_rows:,} of {reference_total:,} reference rows (uniform seeded sample). "
            "The verdicts of record, computed on every row, are in the report's JSON summary.")
    return ('<div style="font-family:sans-serif;padding:8px 16px;background:#fff8e1;'
            f'border-bottom:1px solid #e0c060">{html.escape(text)}</div>')


def render(reference: pd.DataFrame, current: pd.DataFrame, *, features: list[ColumnDrift],
           predictions: list[ColumnDrift], kinds: dict[str, str], drift_share: float,
           rows: int) -> tuple[str, dict]:
    """The page, and how it was sampled: {"current_rows", "reference_rows", "seed", "statistics":
    {column: the page's own score}} (on a sample the scores differ a little from the full data's)."""
    from monitoring.evidently_lib import DataDefinition, DataDriftPreset, Dataset, Report, ValueDrift

    names = [c.name for c in features + predictions]
    ref, cur = sample(reference[names], rows), sample(current[names], rows)
    definition = DataDefinition(numerical_columns=[n for n in names if kinds[n] == NUMERIC],
                                categorical_columns=[n for n in names if kinds[n] != NUMERIC])
    metrics = [DataDriftPreset(columns=[c.name for c in features], drift_share=drift_share,
                               per_column_method={c.name: c.method for c in features})]
    metrics += [ValueDrift(column=c.name, method=c.method) for c in predictions]
    snapshot = Report(metrics).run(Dataset.from_pandas(cur, data_definition=definition),
                                   Dataset.from_pandas(ref, data_definition=definition))
    page = snapshot.get_html_str(as_iframe=False)
    if len(cur) < len(current) or len(ref) < len(reference):
        page = page.replace("<body>", "<body>" + _banner(len(cur), len(current), len(ref),
                                                         len(reference)), 1)
    statistics = {m["config"]["column"]: float(m["value"]) for m in snapshot.dict()["metrics"]
                  if m["config"].get("type", "").endswith(":ValueDrift")}
    return page, {"current_rows": len(cur), "reference_rows": len(ref), "seed": SEED,
                  "statistics": statistics}
