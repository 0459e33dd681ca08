"""Response and request bodies shared by the routes (they make the OpenAPI spec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ml.schema import Feature as FeatureOut  # the schema's own model describes a feature

MAX_INDEX = 2**31 - 1  # databases keep 64-bit integers at most; no offset, row or version is larger
SECURITY = [{"bearer": []}]  # every /api/v1 operation needs the bearer token


class Problem(BaseModel):
    field: str
    problem: str
    value: Any = None
    count: int | None = None
    rows: list[int] | None = None


class ErrorBody(BaseModel):
    error: str
    details: list[Problem] = []


class JobRef(ErrorBody):
    job: dict


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    champion: str | None = None
    queue: str
    reasons: list[str] = []


class TargetOut(BaseModel):
    name: str
    classes: list[Any]
    positive: Any = None
    labels: dict[str, str] = {}


class SchemaOut(BaseModel):
    features: list[FeatureOut]
    target: TargetOut


class ModelRef(BaseModel):
    name: str
    version: str
    alias: str


class Prediction(BaseModel):
    label: Any
    label_text: str
    probability: float | None = Field(None, description="of the positive class (binary target)")
    probabilities: dict[str, float] | None = Field(None, description="per class (multi-class)")
    threshold: float | None = None


class PredictResponse(BaseModel):
    model: ModelRef
    request_id: str
    served_by: Literal["onnx", "sklearn"]
    predictions: list[Prediction]


class BatchForm(BaseModel):
    file: Any = Field(json_schema_extra={"type": "string", "format": "binary"},
                      description="CSV with a header row; feature columns plus any others")


class VersionPath(BaseModel):
    version: int = Field(ge=1, le=MAX_INDEX)


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("promoted through the API", max_length=500)


class ModelVersionOut(BaseModel):
    version: str
    aliases: list[str]
    created: datetime
    run_id: str | None
    data_version: str | None
    metrics: dict[str, float]
    emissions_kg_co2eq: float | None
    threshold: float | None
    promotion: dict[str, str]
    onnx: str | None


class ModelList(BaseModel):
    name: str
    champion: str | None
    versions: list[ModelVersionOut]


class PromoteOut(BaseModel):
    name: str
    champion: str


class JobKind(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["retrain", "data_pull", "validate"]
    params: dict[str, Any] = {}
    reason: str = Field("requested through the API", max_length=500)


class JobOut(BaseModel):
    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
    params: dict[str, Any]
    reason: str
    step: str | None
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None
    log_tail: str
    cancel_requested: bool


class JobPath(BaseModel):
    job_id: str = Field(min_length=1, max_length=64)


class JobQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["retrain", "data_pull", "validate"] | None = None
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] | None = None
    limit: int = Field(20, ge=1, le=200)
    offset: int = Field(0, ge=0, le=MAX_INDEX)


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class DataVersionOut(BaseModel):
    md5: str
    path: str
    rows: int
    class_balance: dict[str, float]
    created_at: datetime
    validation: dict[str, Any]
    source: str


class DataVersionList(BaseModel):
    current: str | None
    versions: list[DataVersionOut]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64)
    row: int = Field(0, ge=0, le=MAX_INDEX)
    label: int | str | bool


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[FeedbackItem] = Field(min_length=1, max_length=10_000)


class FeedbackOut(BaseModel):
    accepted: int
