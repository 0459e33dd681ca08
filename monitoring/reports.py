"""Drift reports on disk: `<id>.json` (the summary) and `<id>.html` (Evidently's page).

Ids start with the UTC creation time, so names sort newest last. The HTML is written first and the
summary renamed into place last: a listed report is always complete. Only the newest `keep_html`
reports keep their (4 MB) page; every summary is kept.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path

ID_PATTERN = r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{6}$"
_ID = re.compile(ID_PATTERN)


def new_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(3)}"


def _write(path: Path, data: bytes) -> None:
    partial = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


class ReportStore:
    def __init__(self, directory: Path, keep_html: int = 500):
        self.directory = Path(directory)
        self.keep_html = keep_html

    def _ids(self) -> list[str]:
        """Every complete report, newest first."""
        if not self.directory.is_dir():
            return []
        names = (n.removesuffix(".json") for n in os.listdir(self.directory) if n.endswith(".json"))
        return sorted((n for n in names if _ID.match(n)), reverse=True)

    def save(self, summary: dict, page: str | None) -> None:
        report_id = summary["id"]
        if not _ID.match(report_id):
            raise ValueError(f"not a report id: {report_id!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        if page is not None:
            _write(self.directory / f"{report_id}.html", page.encode())
        _write(self.directory / f"{report_id}.json", json.dumps(summary, indent=1).encode())
        self.prune()

    def get(self, report_id: str) -> dict | None:
        if not _ID.match(report_id):
            return None
        try:
            return json.loads((self.directory / f"{report_id}.json").read_text())
        except FileNotFoundError:
            return None

    def html_path(self, report_id: str) -> Path | None:
        path = self.directory / f"{report_id}.html"
        return path if _ID.match(report_id) and path.is_file() else None

    def list(self, limit: int = 20, offset: int = 0) -> tuple[list[dict], int]:
        ids = self._ids()
        page = [self.get(i) for i in ids[offset:offset + limit]]
        return [p for p in page if p is not None], len(ids)

    def latest(self, count: int = 1) -> list[dict]:
        return self.list(limit=count)[0]

    def prune(self) -> None:
        for report_id in self._ids()[self.keep_html:]:
            (self.directory / f"{report_id}.html").unlink(missing_ok=True)
