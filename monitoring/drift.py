"""Data and prediction drift of a window of the prediction log against the reference: pure functions.

Each column's verdict is Evidently's own: the test Evidently picks by default for that column
(`get_stattest`: Wasserstein distance normed / Jensen-Shannon distance above 1,000 reference rows,
K-S / chi-square / Z-test below), called on the full columns exactly as Evidently's `ValueDrift`
calls it (infinities and missing values dropped first). That costs a sort per column, about 0.1 s
per million rows, where a full Evidently report on a million rows takes many seconds: most of its
time goes into widgets. The HTML report (monitoring.drift_html) is drawn from a seeded sample.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

NUMERIC, CATEGORICAL = "num", "cat"  # Evidently's column type names


@dataclasses.dataclass
class ColumnDrift:
    name: str
    drifted: bool
    test: str  # Evidently's display name of the test
    method: str  # Evidently's registered name (pins the same test in the HTML report)
    statistic: float
    threshold: float

    def as_dict(self) -> dict:
        return {"name": self.name, "drifted": self.drifted, "test": self.test,
                "statistic": self.statistic, "threshold": self.threshold}


def _clean(column: pd.Series, kind: str) -> pd.Series:
    """What Evidently drops first (`replace([-inf, inf], nan).dropna()`), without its slow pass
    over text columns, which cannot hold infinities."""
    if kind == NUMERIC:
        return column[np.isfinite(column.to_numpy(dtype="float64"))]
    return column.dropna()


def column_drift(name: str, reference: pd.Series, current: pd.Series, kind: str) -> ColumnDrift:
    from monitoring.evidently_lib import get_stattest

    reference, current = _clean(reference, kind), _clean(current, kind)
    if reference.empty or current.empty:
        side = "reference" if reference.empty else "window"
        raise ValueError(f"column `{name}` has no values in the {side}")
    test = get_stattest(reference, current, kind, None)
    result = test(reference, current, kind, None)
    return ColumnDrift(name=name, drifted=bool(result.drifted), test=test.display_name,
                       method=test.name, statistic=float(result.drift_score),
                       threshold=float(result.actual_threshold))


def columns_drift(reference: pd.DataFrame, current: pd.DataFrame,
                  kinds: dict[str, str]) -> list[ColumnDrift]:
    """Every column of `kinds` ({name: "num" | "cat"}), in that order; columns run in parallel
    (the sorts release the GIL)."""
    def one(name: str) -> ColumnDrift:
        return column_drift(name, reference[name], current[name], kinds[name])

    with ThreadPoolExecutor(max_workers=min(len(kinds), os.cpu_count() or 1, 4) or 1) as pool:
        return list(pool.map(one, kinds))


def distribution(reference: pd.Series, current: pd.Series, kind: str, bins: int = 20) -> dict:
    """Both sides' share of rows per bin (numbers: equal bins over both ranges) or per category
    (the reference's most common first, at most `bins`), for drawing one column."""
    reference, current = _clean(reference, kind), _clean(current, kind)
    if kind == NUMERIC:
        both = np.concatenate([reference.to_numpy(), current.to_numpy()])
        edges = np.histogram_bin_edges(both, bins=bins) if len(both) else np.array([0.0, 1.0])
        shares = [np.histogram(side.to_numpy(), bins=edges)[0] / max(len(side), 1)
                  for side in (reference, current)]
        return {"kind": NUMERIC, "edges": edges.tolist(), "reference": shares[0].tolist(),
                "current": shares[1].tolist()}
    counts = [_counts(side) for side in (reference, current)]
    ranked = sorted(counts[0], key=counts[0].get, reverse=True)
    categories = (ranked + sorted(set(counts[1]) - set(ranked), key=counts[1].get, reverse=True))[:bins]
    return {"kind": CATEGORICAL, "categories": [str(c) for c in categories],
            **{name: [side.get(c, 0) / max(sum(side.values()), 1) for c in categories]
               for name, side in zip(("reference", "current"), counts, strict=True)}}


def _counts(column: pd.Series) -> dict:
    """{value: rows}, by codes (fast for a million rows of a few distinct values)."""
    codes, uniques = pd.factorize(column)
    return {value: int(count) for value, count in zip(uniques, np.bincount(codes, minlength=len(uniques)),
                                                      strict=True) if count}


def distributions(reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str]) -> dict:
    return {name: distribution(reference[name], current[name], kind) for name, kind in kinds.items()}


def dataset_verdict(columns: list[ColumnDrift], drift_share: float) -> tuple[bool, float]:
    """Evidently's rule: dataset drift when the share of drifted columns reaches `drift_share`."""
    share = sum(c.drifted for c in columns) / len(columns) if columns else 0.0
    return share >= drift_share, share


def positive_rate(labels: pd.Series, positive) -> float | None:
    """Share of `labels` equal to the positive class, compared as text (a few distinct values:
    compared once each, not once per row)."""
    if not len(labels):
        return None
    codes, uniques = pd.factorize(labels)
    matching = [i for i, value in enumerate(uniques) if str(value) == str(positive)]
    return float(np.isin(codes, matching).mean())


def summary(*, feature_drift: list[ColumnDrift], prediction_drift: list[ColumnDrift],
            drift_share: float, positive=None, reference_labels: pd.Series | None = None,
            current_labels: pd.Series | None = None) -> dict:
    """The verdict part of a report: dataset drift, per-column results, prediction drift."""
    dataset_drift, share = dataset_verdict(feature_drift, drift_share)
    predictions = {"drifted": any(c.drifted for c in prediction_drift),
                   "columns": [c.as_dict() for c in prediction_drift]}
    if positive is not None and reference_labels is not None and current_labels is not None:
        predictions["positive_class"] = positive
        predictions["positive_rate"] = {"reference": positive_rate(reference_labels, positive),
                                        "current": positive_rate(current_labels, positive)}
    return {"dataset_drift": dataset_drift, "drift_share": share, "drift_share_threshold": drift_share,
            "drifted_columns": [c.name for c in feature_drift if c.drifted],
            "columns": [c.as_dict() for c in feature_drift], "prediction_drift": predictions}
