"""Response and request bodies shared by the routes (they make the OpenAPI spec)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from control_api.jobs.kinds import KINDS, STARTABLE, STATUSES
from control_api.parameters import Parameters
from control_api.timestamps import IsoDatetime
from ml.schema import Feature as FeatureOut  # the schema's own model describes a feature
from monitoring.reports import ID_PATTERN

MAX_INDEX = 2**31 - 1  # databases keep 64-bit integers at most; no offset, row or version is larger


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
    ready: bool  # a champion is loaded: predictions are answered
    champion: str | None = None
    queue: str  # "ok", or why the job queue does not answer
    jobs: str  # "ok", or why the job records do not answer
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


class Reason(BaseModel):
    feature: str
    value: Any
    contribution: float
    text: str


class Explanation(BaseModel):
    explained_class: Any = Field(description="the class the record was given")
    output: Literal["probability", "log-odds"] = Field(description="what the contributions add up to")
    base_value: float = Field(description="the model's average output for that class")
    value: float = Field(description="base_value + the sum of the contributions: the model's output")
    contributions: dict[str, float] = Field(description="per feature, towards the class (SHAP)")
    reasons: list[Reason] = Field(description="the strongest contributions, most first, in words")


class Prediction(BaseModel):
    label: Any
    label_text: str
    probability: float | None = Field(None, description="of the positive class (binary target)")
    probabilities: dict[str, float] | None = Field(None, description="per class (multi-class)")
    threshold: float | None = None
    explanation: Explanation | None = Field(None, description="with explain=true only")


class ExplainedBy(BaseModel):
    name: str
    version: str
    method: str


class PredictResponse(BaseModel):
    model: ModelRef
    request_id: str
    served_by: Literal["onnx", "sklearn"]
    predictions: list[Prediction]
    explained_by: ExplainedBy | None = Field(None, description="the version whose own model explained "
                                                               "the answers (explain=true)")


class PredictQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    explain: bool = Field(False, description="add each record's feature contributions (SHAP) towards "
                                             "the class it was given, from the serving model itself")


CSV_MEDIA_TYPE = "text/csv"


class BatchForm(Parameters):
    # a file part (`format: binary` is what makes it one for clients and for flask-openapi3) whose
    # content is CSV text in UTF-8: anything else is refused with 422
    model_config = ConfigDict(openapi_extra={"encoding": {"file": {
        "contentType": f"{CSV_MEDIA_TYPE}; charset=utf-8"}}})
    file: Any = Field(json_schema_extra={"type": "string", "format": "binary",
                                         "contentMediaType": CSV_MEDIA_TYPE},
                      description="a CSV file in UTF-8 with a header row: the feature columns, plus "
                                  "any others")


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
    approval: dict[str, Any] | None = Field(None, description="the approval record when "
                                            "registry.require_approval held this version back")


class ModelList(BaseModel):
    name: str
    champion: str | None
    versions: list[ModelVersionOut]


class PromoteOut(BaseModel):
    name: str
    champion: str


JOB_KINDS = Literal[STARTABLE]  # what POST /jobs starts
ANY_JOB_KIND = Literal[tuple(KINDS)]
JOB_STATUSES = Literal[STATUSES]


def _params_per_kind(schema: dict) -> None:
    """The spec says which params each kind takes (the route checks them against the same models)."""
    schema["oneOf"] = [{"properties": {"kind": {"const": name}, "params": KINDS[name].params_schema()},
                        "required": ["kind"]} for name in STARTABLE]


class JobKind(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_params_per_kind)
    kind: JOB_KINDS
    params: dict[str, Any] = Field({}, description="only `drift_report` takes params: see "
                                                   "GET /jobs/kinds")
    reason: str = Field("requested through the API", max_length=500)


class KindOut(BaseModel):
    kind: str
    description: str
    started_by: str = Field(description="the request that starts a job of this kind")
    params: dict[str, Any] = Field(description="JSON Schema of the params the job takes")
    steps: list[str] = Field(description="the steps the worker runs, in order")


class JobStates(BaseModel):
    active: list[str] = Field(description="queued or running: the kind's single flight is held")
    final: list[str]


class JobCatalogue(BaseModel):
    kinds: list[KindOut]
    states: JobStates


class JobOut(BaseModel):
    id: str
    kind: str
    status: JOB_STATUSES
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
    requested_by: str | None = Field(None, description="who started it: a user, or a policy")


class JobPath(BaseModel):
    job_id: str = Field(min_length=1, max_length=64)


class JobQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    kind: ANY_JOB_KIND | None = None
    status: JOB_STATUSES | None = None
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


def _same_json_value(value, accepted) -> bool:
    """Equal as JSON values are: 1 and 1.0 alike, but a boolean is not a number, nor "1" a number."""
    kinds = (isinstance(value, bool), isinstance(value, str))
    return kinds == (isinstance(accepted, bool), isinstance(accepted, str)) and value == accepted


def class_label(target) -> Any:
    """The type of a true label: one of the target's classes, as its JSON value or its text ("1" for
    1). It validates to the class itself."""
    texts = [str(c) for c in target.classes if not isinstance(c, str)]
    accepted = list(dict.fromkeys([*target.classes, *texts]))
    allowed = ", ".join(str(c) for c in target.classes)

    def to_class(value):
        for candidate in accepted:
            if _same_json_value(value, candidate):
                return next(c for c in target.classes if str(c) == str(candidate))
        raise PydanticCustomError("class_label", "not a class of `{target}`; allowed: {allowed}",
                                  {"target": target.name, "allowed": allowed})

    return Annotated[Any, PlainValidator(to_class), WithJsonSchema({"enum": accepted})]


def feedback_body(target) -> type[BaseModel]:
    """The body of POST /feedback for this target's classes."""
    item = create_model(
        "FeedbackItem", __config__=ConfigDict(extra="forbid"),
        request_id=(str, Field(min_length=1, max_length=64,
                               description="the `request_id` a prediction answered with")),
        row=(int, Field(0, ge=0, le=MAX_INDEX, strict=True,
                        description="the record's index in that request")),
        label=(class_label(target), Field(description=f"the true `{target.name}`")))
    return create_model("FeedbackBody", __config__=ConfigDict(extra="forbid"),
                        items=(list[item], Field(min_length=1, max_length=10_000)))


class FeedbackOut(BaseModel):
    accepted: int


class PageQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=200)
    offset: int = Field(0, ge=0, le=MAX_INDEX)


class ReportPath(BaseModel):
    report_id: str = Field(pattern=ID_PATTERN, max_length=40,
                           description="a report id, e.g. 20250101T120000000000Z-1a2b3c")


class ColumnDriftOut(BaseModel):
    name: str
    drifted: bool
    test: str = Field(description="Evidently's drift test for this column")
    statistic: float | None = Field(description="the test's score (a distance, or a p-value)")
    threshold: float


class ReportOut(BaseModel):
    id: str
    created: datetime
    window: dict[str, Any] = Field(description="last_rows or since/until, rows, first/last row "
                                               "time, model versions seen")
    model_version: str = Field(description="the champion whose reference the window is compared to")
    reference: dict[str, Any]
    dataset_drift: bool
    drift_share: float
    drift_share_threshold: float
    drifted_columns: list[str]
    columns: list[ColumnDriftOut]
    prediction_drift: dict[str, Any]
    quality: dict[str, Any] | None = Field(description="classification quality on the rows with "
                                                       "feedback, null without feedback")
    estimated_performance: dict[str, Any] | None = Field(
        None, description="the champion's ROC AUC, F1 and accuracy on the window estimated without "
                          "labels (value and 95 % band), and its figures at training")
    distributions: dict[str, dict[str, Any]] = Field(
        {}, description="per column, both sides' share of rows per bin (edges) or per category")
    html: dict[str, Any] | None = None
    job_id: str | None = None
    reason: str | None = None
    timings: dict[str, float] = {}


class ReportPage(BaseModel):
    items: list[ReportOut]
    total: int
    limit: int
    offset: int


class EmissionsRun(BaseModel):
    timestamp: datetime
    run_id: str
    model_name: str
    model_version: str | None = Field(description="the registered version trained by this run")
    estimator: str | None
    rows: int | None = Field(description="training rows")
    duration_s: float | None
    energy_kwh: float | None
    emissions_kg_co2eq: float | None
    cpu_power_w: float | None
    ram_power_w: float | None
    tracking_mode: Literal["measured", "estimated", "unknown"]
    tracking_detail: str = Field(description="CodeCarbon's devices and how each was read")
    country_iso_code: str | None
    primary_metric: str
    primary_metric_value: float | None = Field(description="the run's test score on the metric")


class EmissionsOut(BaseModel):
    items: list[EmissionsRun]
    total_emissions_kg_co2eq: float
    total_energy_kwh: float
    primary_metric: str


class PredictionsQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    minutes: int = Field(60, ge=1, le=1440)


class MinuteCounts(BaseModel):
    minute: datetime
    total: int
    labels: dict[str, int]


class PredictionsSummary(BaseModel):
    minutes: int
    since: datetime
    until: datetime
    total: int
    labels: dict[str, int]
    positive_class: str | None
    positive_rate: float | None
    model_versions: dict[str, int]
    served_by: dict[str, int]
    per_minute: list[MinuteCounts]


class CompareQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    last: int = Field(5_000, ge=1, le=200_000, description="the newest N shadowed rows (without since)")
    since: IsoDatetime | None = Field(None, description="rows shadowed at or after this time (ISO 8601; "
                                                       "without an offset, UTC)")
    until: IsoDatetime | None = Field(None, description="rows shadowed before this time (ISO 8601)")
    top: int = Field(20, ge=0, le=500, description="disagreements listed, most different first")

    @field_validator("since", "until")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class CompareOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    shadow: dict
    compared_rows: int
    agreement: float | None
    disagreeing_rows: int
    champion_versions: list[str]
    challenger_versions: list[str]
    probabilities: dict
    disagreement_features: list[dict]
    quality: dict
    verdict: dict
    top_disagreements: list[dict]


class QualityQuery(Parameters):
    model_config = ConfigDict(extra="forbid")
    window_minutes: int = Field(60, ge=1, le=10_080, description="length of each window")
    windows: int = Field(24, ge=1, le=500, description="how many windows, ending with the current one")


class QualityOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    champion: dict | None
    performance_floor: dict
    windows: list[dict]
