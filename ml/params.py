"""params.yaml, checked before any work: a bad file stops the pipeline with the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ml import config
from ml.errors import ParamsError
from ml.schema import Schema

ESTIMATORS = ("random_forest", "hist_gradient_boosting", "logistic_regression")
METRICS = ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Generator(_Strict):
    rows: int = Field(gt=0)
    seed: int


class Dataset(_Strict):
    name: str
    description: str = ""
    raw: str
    # what the model's answers are for, in its users' words (the model card's "Intended use")
    intended_use: str = ""
    # what to keep in mind about this data, one line each (the dataset card's "Known limits")
    limits: list[str] = []
    generator: Generator | None = None


class Split(_Strict):
    seed: int
    test_size: float = Field(gt=0, lt=1)
    validation_size: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _leaves_training_data(self) -> Split:
        if self.test_size + self.validation_size >= 0.9:
            raise ValueError("test_size + validation_size must leave at least 10 % for training")
        return self


class Threshold(_Strict):
    rule: Literal["max_f1", "min_recall", "min_precision", "fixed"] = "max_f1"
    target: float | None = Field(default=None, ge=0, le=1)
    value: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _has_its_number(self) -> Threshold:
        if self.rule in ("min_recall", "min_precision") and self.target is None:
            raise ValueError(f"threshold rule `{self.rule}` needs `target` (0 to 1)")
        if self.rule == "fixed" and self.value is None:
            raise ValueError("threshold rule `fixed` needs `value` (0 to 1)")
        return self


class Train(_Strict):
    seed: int
    estimator: Literal[ESTIMATORS]
    class_weight: Literal["balanced"] | None = "balanced"
    hyperparameters: dict[str, dict] = {}
    threshold: Threshold = Threshold()

    @property
    def estimator_params(self) -> dict:
        return dict(self.hyperparameters.get(self.estimator) or {})


class Evaluate(_Strict):
    primary_metric: Literal[METRICS] = "pr_auc"
    min_improvement: float = Field(default=0.0, ge=0)
    min_lift_over_baseline: float = Field(default=0.0, ge=0)


class Registry(_Strict):
    model_name: str = Field(min_length=1)
    experiment: str = Field(min_length=1)
    # a challenger that passes the gate waits for an admin's approval instead of replacing the
    # champion (the first champion of a model is promoted without one)
    require_approval: bool = False


class Emissions(_Strict):
    country_iso_code: str = Field(min_length=3, max_length=3)
    measure_power_secs: float = Field(default=15, gt=0)
    # passed to CodeCarbon's OfflineEmissionsTracker as they are (e.g. force_cpu_power)
    tracker_options: dict = {}

    @model_validator(mode="after")
    def _known_country(self) -> Emissions:
        import pycountry

        if pycountry.countries.get(alpha_3=self.country_iso_code.upper()) is None:
            raise ValueError(f"country_iso_code `{self.country_iso_code}` is not an ISO 3166 alpha-3 code")
        self.country_iso_code = self.country_iso_code.upper()
        return self


class Monitoring(_Strict):
    # the lowest estimated figure (monitoring.performance_estimation) the champion may show on live
    # traffic before the OpconEstimatedPerformanceLow alert: metric (roc_auc, f1, accuracy) → floor
    performance_floor: dict[Literal["roc_auc", "f1", "accuracy"], float] = {}


class Params(_Strict):
    dataset: Dataset
    schema_: Schema = Field(alias="schema")
    split: Split
    train: Train
    evaluate: Evaluate = Evaluate()
    registry: Registry
    emissions: Emissions
    monitoring: Monitoring = Monitoring()

    @property
    def schema(self) -> Schema:
        return self.schema_


def describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "params"
        lines.append(f"  {where}: {item['msg']}")
    return "params.yaml is invalid:\n" + "\n".join(lines)


def parse(raw: dict) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(describe(error)) from None


def load(project: Path | None = None) -> Params:
    path = (project or config.project_dir()) / "params.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} does not exist") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections")
    return parse(raw)
