"""The typed schema of params.yaml: the one place where params are validated.

Every stage calls ``load_params()`` first. Unknown keys, wrong types and
out-of-range values stop it before any work with one line that names the key,
the value given and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    create_model,
    model_validator,
)

from stages.core import paths
from stages.core.models import REGISTRY, ModelSpec
from stages.core.tasks import TASKS


class ParamsError(ValueError):
    """A params.yaml problem, already phrased as one line for the user."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ModelName = Literal[tuple(REGISTRY)]  # type: ignore[valid-type]
TaskName = Literal[tuple(TASKS)]  # type: ignore[valid-type]

# One optional field per registered model, built from the registry so that a new
# model needs no edit here.
Arch = create_model(  # type: ignore[call-overload]
    "Arch",
    __config__=ConfigDict(extra="forbid", frozen=True),
    **{name: (spec | None, None) for name, spec in REGISTRY.items()},
)


class GenerateParams(Strict):
    task: TaskName = "first_last"  # type: ignore[valid-type]
    seed: NonNegativeInt = 0
    n_train: PositiveInt = 2000
    n_val: PositiveInt = 300
    n_test: PositiveInt = 1000


class FitParams(Strict):
    seed: NonNegativeInt | None = None  # the forecast's training seed; memory lists its seeds instead
    max_epochs: PositiveInt = 100
    batch_size: PositiveInt = 256
    learning_rate: PositiveFloat = 1e-3
    patience: PositiveInt | None = None
    target_val_loss: PositiveFloat | None = None
    clipnorm: PositiveFloat | None = None
    lr_decay_every: PositiveInt | None = None
    lr_decay_factor: float = Field(default=0.1, gt=0.0, le=1.0)


class TrainParams(Strict):
    models: list[ModelName] = Field(min_length=1)  # type: ignore[valid-type]
    fit: FitParams
    arch: Arch  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _every_model_has_arch(self) -> TrainParams:
        for name in self.models:
            if getattr(self.arch, name) is None:
                raise ValueError(f"model {name!r} is listed but has no entry under arch")
        return self

    def spec(self, name: str) -> ModelSpec:
        return getattr(self.arch, name)


class MemoryTrainParams(TrainParams):
    # Keep only the last `truncate` steps of each sequence before the model sees
    # it (brief, section C: long sequences). Cheaper, and x[0] is lost by
    # construction when truncate < seq; null keeps every step.
    truncate: PositiveInt | None = None
    # One model per seed: the spread of the probes across seeds says how much a
    # verdict owes to luck. The sweep uses three; a plain `dvc repro` one.
    seeds: list[NonNegativeInt] = Field(default=[0], min_length=1)

    @model_validator(mode="after")
    def _seeds_in_one_place(self) -> MemoryTrainParams:
        if self.fit.seed is not None:
            raise ValueError("fit.seed is not used here: list the training seeds in train_memory.seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self


class EvaluateMemoryParams(Strict):
    change_factor: float = Field(default=1.5, gt=0.0)
    min_abs_pred: float = Field(default=0.05, ge=0.0)
    blind_rows: int = Field(default=10, ge=2)
    ideal_change_pct: float = 25.0
    change_tolerance_pct: PositiveFloat = 7.5
    blind_mse_threshold: PositiveFloat = 0.05


class DatasetParams(Strict):
    file: str
    time_col: str
    value_col: str
    time_kind: Literal["integer"] = "integer"
    # What to do with a blank value or a missing period: "none" rejects the
    # file; "ffill" repeats the last value; "linear" interpolates. Filled points
    # are counted in the forecast metrics and the summary.
    fill: Literal["none", "ffill", "linear"] = "none"


class PreprocessParams(Strict):
    diff_order: int = Field(default=1, ge=0, le=2)
    test_len: PositiveInt = 10


class ArimaParams(Strict):
    order: tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt] = (1, 1, 1)


class EvaluateForecastParams(Strict):
    baselines: list[Literal["naive", "drift"]] = ["naive"]


class ForecastTrainParams(TrainParams):
    @model_validator(mode="after")
    def _has_a_seed(self) -> ForecastTrainParams:
        if self.fit.seed is None:
            raise ValueError("fit.seed is required: the training seed of the forecasters")
        return self


class Params(Strict):
    seq: int = Field(default=70, ge=2)
    num_steps: PositiveInt = 3
    generate: GenerateParams
    train_memory: MemoryTrainParams
    evaluate_memory: EvaluateMemoryParams
    datasets: dict[str, DatasetParams] = Field(min_length=1)
    preprocess: PreprocessParams
    train_forecast: ForecastTrainParams
    arima: ArimaParams
    evaluate_forecast: EvaluateForecastParams

    def dataset(self, name: str) -> DatasetParams:
        if name not in self.datasets:
            raise ParamsError(f"params.yaml: datasets: no dataset named {name!r} (have: {', '.join(self.datasets)})")
        return self.datasets[name]


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if error["type"] == "missing":
        return f"{loc}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if isinstance(error["input"], dict):  # a rule across keys: the whole section would be noise
        return f"{loc}: {message}"
    return f"{loc}: {message} (got {error['input']!r})"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise ParamsError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ParamsError(f"{source}: {_describe(errors[0])}{more}") from None


def load_params(path: Path | None = None) -> Params:
    path = path or paths.params_file()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path.name}: file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_params(raw, source=path.name)
