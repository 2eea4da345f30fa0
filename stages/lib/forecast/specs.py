"""The settings of every forecaster kind, validated from params.yaml: the params schema's part.

Each kind is a pydantic spec with a unique ``kind`` tag and ``min_history``, the
fewest points it needs to fit. The specs import no forecaster: the params schema
(stages/lib/config.py), which every stage validates, needs only these, so a
change to a forecaster's code does not touch the memory stages. The code of each
kind is in its family's module, listed by kind in ``registry.FORECASTERS``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from stages.lib.nn.models import REGISTRY as MODELS
from stages.lib.nn.models import FitParams, ModelSpec


class Spec(BaseModel):
    """Base of every forecaster's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    refit_every: PositiveInt = 1

    def min_history(self, season_length: int, num_steps: int) -> int:
        """Fewest points a history needs for this forecaster to fit."""
        return 2


# ------------------------------------------------------------ baselines

class NaiveSpec(Spec):
    kind: Literal["naive"]


class SeasonalNaiveSpec(Spec):
    kind: Literal["seasonal_naive"]

    def min_history(self, season_length: int, num_steps: int) -> int:
        return season_length + 1


class DriftSpec(Spec):
    kind: Literal["drift"]


# ---------------------------------------------------------------- ARIMA

class ArimaSpec(Spec):
    """ARIMA with a fixed order, or ``auto``: chosen once by AIC over the bounded grid."""

    kind: Literal["arima"]
    order: tuple[int, int, int] | Literal["auto"] = "auto"
    seasonal_order: tuple[int, int, int] | Literal["auto"] = "auto"  # (P, D, Q); used where the dataset has a season
    max_p: int = Field(default=2, ge=0, le=5)
    max_d: int = Field(default=2, ge=0, le=2)
    max_q: int = Field(default=2, ge=0, le=5)
    max_P: int = Field(default=1, ge=0, le=2)
    max_D: int = Field(default=1, ge=0, le=1)
    max_Q: int = Field(default=1, ge=0, le=2)

    @model_validator(mode="after")
    def _orders_non_negative(self) -> ArimaSpec:
        for key in ("order", "seasonal_order"):
            value = getattr(self, key)
            if value != "auto" and min(value) < 0:
                raise ValueError(f"{key}: every term must be 0 or more (got {list(value)})")
        return self

    def min_history(self, season_length: int, num_steps: int) -> int:
        seasonal = 2 * season_length if season_length > 1 else 0
        return max(10, seasonal + 4)


# ------------------------------------------------------------- Keras models

class KerasSpec(Spec):
    """A model of the Keras registry (stages/lib/nn/models.py) trained on windows of differences."""

    kind: Literal["keras"]
    model: Literal[tuple(MODELS)]  # type: ignore[valid-type]
    diff_order: int = Field(default=1, ge=0, le=2)
    fit: FitParams
    arch: dict[str, Any] = {}

    def model_spec(self) -> ModelSpec:
        return MODELS[self.model].model_validate(self.arch)

    @model_validator(mode="after")
    def _arch_fits_the_model(self) -> KerasSpec:
        try:
            self.model_spec()
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = ".".join(str(part) for part in error["loc"])
            raise ValueError(f"arch.{loc}: {error['msg']} (model {self.model!r})") from None
        return self

    def min_history(self, season_length: int, num_steps: int) -> int:
        return self.diff_order + num_steps + 2  # at least two training windows


SPECS: dict[str, type[Spec]] = {
    "naive": NaiveSpec,
    "seasonal_naive": SeasonalNaiveSpec,
    "drift": DriftSpec,
    "arima": ArimaSpec,
    "keras": KerasSpec,
}
BASELINE_KINDS = ("naive", "seasonal_naive", "drift")
