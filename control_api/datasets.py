"""Data versions: the raw data's DVC versions, and appending a validated labelled batch to it."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from filelock import FileLock

from control_api.db import data_versions, row_dict
from ml.params import Params
from ml.validate import ValidationReport, read_csv, validate_frame
from ml.versioning import add_and_push, data_version


class BatchRejectedError(Exception):
    def __init__(self, report: ValidationReport, stage: str):
        super().__init__(report.summary())
        self.report, self.stage = report, stage


def dvc_lock(state_dir: Path) -> FileLock:
    (state_dir / "locks").mkdir(parents=True, exist_ok=True)
    return FileLock(state_dir / "locks" / "dvc.lock")


def _describe(frame: pd.DataFrame, params: Params) -> dict:
    balance = frame[params.schema.target.name].value_counts(normalize=True).sort_index()
    return {"rows": len(frame), "class_balance": {str(k): round(float(v), 6) for k, v in balance.items()}}


def record(engine: sa.Engine, project: Path, params: Params, source: str,
           validation: dict | None = None) -> dict:
    """Remember the raw data's current version (once per md5)."""
    raw = project / params.dataset.raw
    md5 = data_version(raw)
    with engine.connect() as conn:
        found = conn.execute(sa.select(data_versions).where(data_versions.c.md5 == md5)).first()
    if found is not None:
        return row_dict(found)
    if validation is None:
        path = project / "data" / "validation.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        validation = ({"success": report["success"], "failures": report.get("failures", [])}
                      if report.get("data_version") == md5 else {"success": None, "failures": []})
    pointer = Path(f"{raw}.dvc")
    row = {"md5": md5, "path": params.dataset.raw, **_describe(read_csv(raw, params.schema), params),
           "created_at": datetime.now(UTC), "validation": validation, "source": source,
           "pointer": pointer.read_text() if pointer.exists() else ""}
    try:
        with engine.begin() as conn:
            conn.execute(data_versions.insert().values(**row))
    except sa.exc.IntegrityError:
        pass  # another worker recorded it first
    return row


def listing(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(data_versions).order_by(data_versions.c.created_at.desc()))
        return [row_dict(r) for r in rows]


def append_batch(engine: sa.Engine, project: Path, state_dir: Path, params: Params, *,
                 upload: Path, source: str) -> dict:
    """Validate the batch, then the data with it; only then replace the raw file and push.

    Any failure leaves the raw file, its DVC pointer and the recorded versions as they were.
    """
    schema = params.schema
    batch = read_csv(upload, schema)
    report = validate_frame(batch, schema)
    if not report.success:
        raise BatchRejectedError(report, "batch")
    with dvc_lock(state_dir):
        raw = project / params.dataset.raw
        record(engine, project, params, "existing data")
        merged = pd.concat([read_csv(raw, schema), batch[schema.columns]], ignore_index=True)
        report = validate_frame(merged, schema)
        if not report.success:
            raise BatchRejectedError(report, "data with the batch")
        pointer = Path(f"{raw}.dvc")
        with tempfile.TemporaryDirectory(dir=raw.parent) as tmp:
            backup_raw, backup_pointer = Path(tmp) / "raw", Path(tmp) / "pointer"
            shutil.copy2(raw, backup_raw)
            shutil.copy2(pointer, backup_pointer)
            staged = Path(tmp) / "staged.csv"
            merged.to_csv(staged, index=False, lineterminator="\n")
            try:
                staged.replace(raw)
                add_and_push(project, params.dataset.raw)
            except Exception:
                shutil.copy2(backup_raw, raw)
                shutil.copy2(backup_pointer, pointer)
                raise
        summary = {"success": True, "failures": [], "batch_rows": len(batch)}
        return record(engine, project, params, source, summary)
