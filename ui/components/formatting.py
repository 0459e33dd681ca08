"""Numbers and times as people read them, with their units; target classes by their labels."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd


def timestamp(value: str | None) -> pd.Timestamp | None:
    """An ISO 8601 time from the API, in UTC."""
    return None if not value else pd.Timestamp(value).tz_convert(UTC)


def when(value: str | None) -> str:
    stamp = timestamp(value)
    return "—" if stamp is None else stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start:
        return None
    finish = timestamp(end) if end else pd.Timestamp(datetime.now(UTC))
    return max(0.0, (finish - timestamp(start)).total_seconds())


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def job_duration(job: dict) -> str:
    """From start to finish, or until now while it runs."""
    return duration(seconds_between(job.get("started_at"), job.get("finished_at")))


def percent(share: float | None, digits: int = 1) -> str:
    return "—" if share is None else f"{share * 100:.{digits}f} %"


def grams_co2(kilograms: float | None) -> str:
    if kilograms is None:
        return "—"
    grams = kilograms * 1000
    if grams < 1:
        return f"{grams * 1000:.3g} mg CO₂eq"
    return f"{grams:.3g} g CO₂eq" if grams < 100 else f"{grams:,.0f} g CO₂eq"


def short_hash(md5: str | None) -> str:
    return "—" if not md5 else md5[:10]


def metric_name(key: str) -> str:
    """`test_pr_auc` → `PR AUC`."""
    name = key.removeprefix("test_").removeprefix("val_")
    known = {"pr_auc": "PR AUC", "roc_auc": "ROC AUC", "f1": "F1"}
    return known.get(name, name.replace("_", " ").capitalize())


# -- the target, as GET /schema describes it --------------------------------------------------------

def class_label(schema: dict, value) -> str:
    return schema["target"]["labels"].get(str(value), str(value))


def positive_class(schema: dict):
    """The class the threshold applies to (binary targets), else None."""
    target = schema["target"]
    return target.get("positive") if len(target["classes"]) == 2 else None
