"""The one catalogue of job kinds: what each takes, the steps the worker runs (in order), and the
states a job goes through. The API validates, lists and publishes (GET /jobs/kinds) from here, the
worker runs the steps named here, and the console draws progress from what is published.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from control_api.timestamps import IsoDatetime

ACTIVE = ("queued", "running")  # a job of a kind in one of these holds that kind's single flight
FINAL = ("succeeded", "failed", "cancelled", "interrupted")
STATUSES = ACTIVE + FINAL
THROUGH_JOBS = "POST /api/v1/jobs"


class DriftWindow(BaseModel):
    """The rows of the prediction log a drift report looks at: the last N, or a time range
    (`until` defaults to when the job runs). Neither: the last OPCON_DRIFT_WINDOW_ROWS rows."""

    model_config = ConfigDict(extra="forbid")
    last_rows: int | None = Field(None, ge=1, le=100_000_000, strict=True)
    since: IsoDatetime | None = None
    until: IsoDatetime | None = None

    @field_validator("since", "until")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a time without an offset is UTC, as everywhere here
        return value if value is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _one_form(self) -> DriftWindow:
        if self.last_rows is not None and (self.since or self.until):
            raise ValueError("give either `last_rows` or `since` (and `until`), not both")
        if self.until is not None and self.since is None:
            raise ValueError("`until` needs `since`")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("`since` must be before `until`")
        return self

    def as_params(self, settings) -> dict:
        """What the job record keeps: the window made explicit (`settings`: the API's Settings)."""
        if self.since is not None:
            window = {"since": self.since.isoformat()}
            return window | ({"until": self.until.isoformat()} if self.until else {})
        return {"last_rows": self.last_rows or settings.drift_window_rows}


class DatasetUpload(BaseModel):
    """What POST /datasets records for the job; the batch itself waits in the state dir."""

    model_config = ConfigDict(extra="forbid")
    file_name: str = Field(max_length=100, description="the uploaded file's name, as the client sent it")
    batch_rows: int = Field(ge=1, description="rows in the batch")


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    description: str
    steps: tuple[str, ...]
    params: type[BaseModel] | None = None  # None: the kind takes no params
    started_by: str = THROUGH_JOBS

    def params_schema(self) -> dict:
        if self.params is None:
            return {"type": "object", "properties": {}, "additionalProperties": False}
        return self.params.model_json_schema()

    def describe(self) -> dict:
        return {"kind": self.name, "description": self.description, "started_by": self.started_by,
                "params": self.params_schema(), "steps": list(self.steps)}


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("retrain", "Pull the data, validate it, train, register the new version (promoted when it "
         "passes the gate), push every output to the DVC remote.",
         ("pull", "validate", "train", "register and promote", "push")),
    Kind("data_pull", "Bring the workspace's data to the version its DVC pointer names.", ("pull",)),
    Kind("validate", "Check the current data against the schema (Great Expectations).", ("validate",)),
    Kind("drift_report", "Compare a window of the prediction log with the champion's training data; "
         "store the report; retrain when the policy says so.",
         ("read predictions", "reference", "compare", "html report", "store", "retrain policy"),
         params=DriftWindow),
    Kind("dataset_upload", "Append a validated labelled batch to the raw data: the next DVC data "
         "version, added and pushed. A failure leaves the data and its pointer as they were.",
         ("validate", "add and push"), params=DatasetUpload, started_by="POST /api/v1/datasets"),
)}
STARTABLE = tuple(name for name, kind in KINDS.items() if kind.started_by == THROUGH_JOBS)


def catalogue() -> dict:
    """What GET /jobs/kinds answers."""
    return {"kinds": [kind.describe() for kind in KINDS.values()],
            "states": {"active": list(ACTIVE), "final": list(FINAL)}}
