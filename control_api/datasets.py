"""Data versions: the raw data's DVC versions, and appending a validated labelled batch to it.

The version of the data is the one its DVC pointer (`<raw>.dvc`) names; a version is described
(rows, class balance, validation) once, when it first appears, and read from the database after.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from control_api.db import data_versions, row_dict
from ml.params import Params
from ml.tables import read_csv
from ml.validation import ValidationReport, validate_frame
from ml.versioning import data_version, pointer_version


class BatchRejectedError(Exception):
    def __init__(self, report: ValidationReport, stage: str):
        super().__init__(report.summary())
        self.report, self.stage = report, stage


def uploads_dir(state_dir: Path) -> Path:
    """Where uploaded batches wait for their `dataset_upload` job (never in the project)."""
    return state_dir / "uploads"


def upload_path(state_dir: Path, job_id: str) -> Path:
    return uploads_dir(state_dir) / f"{job_id}.csv"


def current_version(project: Path, params: Params) -> str | None:
    """The data version the DVC pointer names (the pointer is read; the data is not)."""
    return pointer_version(project / params.dataset.raw)


def _describe(frame: pd.DataFrame, params: Params) -> dict:
    balance = frame[params.schema.target.name].value_counts(normalize=True).sort_index()
    return {"rows": len(frame), "class_balance": {str(k): round(float(v), 6) for k, v in balance.items()}}


def _stored(engine: sa.Engine, md5: str) -> dict | None:
    with engine.connect() as conn:
        found = conn.execute(sa.select(data_versions).where(data_versions.c.md5 == md5)).first()
    return None if found is None else row_dict(found)


def record(engine: sa.Engine, project: Path, params: Params, source: str, *,
           validation: dict | None = None, frame: pd.DataFrame | None = None) -> dict | None:
    """Remember the version the pointer names, once per md5. The data is read only for a version
    not recorded yet, and only when the workspace holds that version (None otherwise).
    `frame`: the data already in memory (it is the pointer's version)."""
    raw = project / params.dataset.raw
    md5 = pointer_version(raw)
    if md5 is None:
        return None
    if (found := _stored(engine, md5)) is not None:
        return found
    if frame is None:
        if data_version(raw) != md5:
            return None  # the workspace holds other data than the pointer names: nothing to describe
        frame = read_csv(raw, params.schema)
    if validation is None:
        path = project / "data" / "validation.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        validation = ({"success": report["success"], "failures": report.get("failures", [])}
                      if report.get("data_version") == md5 else {"success": None, "failures": []})
    row = {"md5": md5, "path": params.dataset.raw, **_describe(frame, params),
           "created_at": datetime.now(UTC), "validation": validation, "source": source,
           "pointer": Path(f"{raw}.dvc").read_text()}
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


def checked_batch(project: Path, params: Params, upload: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the batch, the data with it), each validated against the schema. Raises DataError for a
    file that is not a readable CSV of the schema's columns, BatchRejectedError for failed
    expectations."""
    schema = params.schema
    batch = read_csv(upload, schema)
    report = validate_frame(batch, schema)
    if not report.success:
        raise BatchRejectedError(report, "batch")
    merged = pd.concat([read_csv(project / params.dataset.raw, schema), batch[schema.columns]],
                       ignore_index=True)
    report = validate_frame(merged, schema)
    if not report.success:
        raise BatchRejectedError(report, "data with the batch")
    return batch, merged


def replace_raw(project: Path, params: Params, merged: pd.DataFrame,
                track: Callable[[str], None]) -> None:
    """Write the data with the batch as the raw file, then `track(target)` (DVC add and push).
    Any failure puts the raw file and its DVC pointer back as they were. The caller holds the DVC
    lock."""
    raw = project / params.dataset.raw
    pointer = Path(f"{raw}.dvc")
    with tempfile.TemporaryDirectory(dir=raw.parent) as tmp:
        backup_raw, backup_pointer = Path(tmp) / "raw", Path(tmp) / "pointer"
        shutil.copy2(raw, backup_raw)
        shutil.copy2(pointer, backup_pointer)
        staged = Path(tmp) / "staged.csv"
        merged.to_csv(staged, index=False, lineterminator="\n")
        try:
            staged.replace(raw)
            track(params.dataset.raw)
        except BaseException:
            shutil.copy2(backup_raw, raw)
            shutil.copy2(backup_pointer, pointer)
            raise
