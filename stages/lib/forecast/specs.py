"""The settings of every forecaster kind, validated from params.yaml: the params schema's part.

Each kind is a pydantic spec with a unique ``kind`` tag and ``min_history``, the
fewest points it needs to fit. The specs import no forecaster: the params schema
(stages/lib/config.py), which every stage validates, needs only these, so a
change to a forecaster's code does not touch the memory stages. The code of each
kind is in its family's module, listed by kind in ``registry.FORECASTERS``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError,
                      field_validator, model_validator)

from stages.lib.nn.models import REGISTRY as MODELS
from stages.lib.nn.models import FitParams, ModelSpec


class Spec(BaseModel):
    """Base of every forecaster's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    refit_every: PositiveInt = 1
    # The datasets it is backtested on; null: every one. Its stage on any other
    # dataset writes an empty result in a second, so a forecaster that only makes
    # sense on some series (a window of two seasons) costs nothing elsewhere.
    datasets: tuple[str, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _datasets_once(self) -> Spec:
        if self.datasets is not None and len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets: each name once (got {list(self.datasets)})")
        return self

    def runs_on(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets

    def min_history(self, season_length: int, num_steps: int) -> int:
        """Fewest points a history needs for this forecaster to fit."""
        return 2

    def min_panel_history(self, season_length: int, num_steps: int, horizon: int) -> int:
        """Fewest points a panel series' history needs (a global direct model's depends on the horizon)."""
        return self.min_history(season_length, num_steps)

    def scored_names(self, name: str, horizon: int) -> list[str]:
        """The names its forecasts are scored under (an ensemble adds its first member alone)."""
        return [name]

    def member_names(self, name: str, horizon: int) -> list[str]:
        """An ensemble's other members alone (the second on): written and scored for the spread over the members
        beside the ensemble, not reported one by one."""
        return []


def min_calibration(level: int) -> int:
    """Fewest calibration errors a split-conformal interval at ``level`` % can be formed from (backtest.py): the
    least n with ceil((n + 1) * level / 100) <= n, i.e. ceil(level / (100 - level)): 4 for 80%, 19 for 95%.
    Here, beside the specs, because params.yaml is checked against it (config.py)."""
    return -(-level // (100 - level))


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
    # When an `auto` order is chosen: once, at the first origin's history, or again at every refit.
    select: Literal["once", "every_fit"] = "once"

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


# ------------------------------------------- classical benchmarks (statsforecast)

class EtsSpec(Spec):
    """Exponential smoothing with error, trend (damped allowed) and season chosen by AICc (Hyndman's ets)."""

    kind: Literal["ets"]
    model: str = Field(default="ZZZ", pattern=r"^[AMZ][ANMZ][ANMZ]$")  # error, trend, season: A, M, N or Z (choose)
    damped: bool | None = None  # None: both are tried

    def min_history(self, season_length: int, num_steps: int) -> int:
        # statsforecast's ets refuses a history of npars + 4 points or fewer ("tiny datasets"), npars counting
        # alpha and l0, beta and b0 for a fixed trend, gamma and s for a fixed season, and phi if damped.
        npars = 2 + 2 * (self.model[1] in "AM") + 2 * (self.model[2] in "AM") + int(self.damped is True)
        # A seasonal state needs two full seasons; statsforecast falls back to no season below that.
        return max(npars + 5, 2 * season_length + 2 if season_length > 1 else 0)


class ThetaSpec(Spec):
    """The standard Theta method, with classical seasonal adjustment where a 90% test finds a season."""

    kind: Literal["theta"]
    decomposition: Literal["multiplicative", "additive"] = "multiplicative"  # as in Hyndman's thetaf

    def min_history(self, season_length: int, num_steps: int) -> int:
        return 2 * season_length + 2 if season_length > 1 else 4


class AutoArimaSpec(Spec):
    """statsforecast's AutoARIMA: Hyndman and Khandakar's stepwise search by AICc, with drift allowed."""

    kind: Literal["auto_arima"]
    max_p: int = Field(default=5, ge=0, le=5)
    max_d: int = Field(default=2, ge=0, le=2)
    max_q: int = Field(default=5, ge=0, le=5)
    max_P: int = Field(default=2, ge=0, le=2)
    max_D: int = Field(default=1, ge=0, le=1)
    max_Q: int = Field(default=2, ge=0, le=2)
    stepwise: bool = True
    allowdrift: bool = True

    def min_history(self, season_length: int, num_steps: int) -> int:
        seasonal = 2 * season_length if season_length > 1 else 0
        return max(10, seasonal + 4)


COMBINABLE = ("ets", "theta", "auto_arima", "arima")


class CombinationSpec(Spec):
    """The mean of the point forecasts of several members. A member is an entry of the ``statistical:`` section,
    with its settings there, or else a kind with its default settings."""

    kind: Literal["combination"]
    members: tuple[str, ...] = Field(default=("ets", "auto_arima", "theta"), min_length=2)
    # Filled by the params schema from the statistical: entries the members name (stages/lib/config.py), so that
    # a change to `ets:` reaches the combination too; logged with the resolved params. Not written by hand.
    member_specs: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _members_known(self) -> CombinationSpec:
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"members: each once (got {list(self.members)})")
        for name in self.members:
            kind = self.member_specs.get(name, {}).get("kind", name)
            if kind not in COMBINABLE:
                raise ValueError(f"members: {name!r} is neither a statistical: entry of kind "
                                 f"{', '.join(COMBINABLE)} nor one of those kinds")
        return self

    def member_spec(self, name: str) -> Spec:
        """A member's settings, refitted as often as the combination (every origin) and on every dataset."""
        settings = {**self.member_specs.get(name, {"kind": name}), "refit_every": 1}
        settings.pop("datasets", None)
        return SPECS[settings["kind"]].model_validate(settings)

    def min_history(self, season_length: int, num_steps: int) -> int:
        return max(self.member_spec(name).min_history(season_length, num_steps) for name in self.members)


# ------------------------------------------------ M-competition benchmarks

class NaiveTwoSpec(Spec):
    """Naive2 of the M3 and M4 competitions: the naive forecast of the series, seasonally adjusted (classical
    multiplicative decomposition) where the M4 benchmarks' 90% autocorrelation test finds a season."""

    kind: Literal["naive2"]

    def min_history(self, season_length: int, num_steps: int) -> int:
        # The adjustment needs three seasons and is skipped below that, as in the M4 code.
        return 3


class CombSHDSpec(Spec):
    """Comb S-H-D of the M3 and M4 competitions: the mean of SES, Holt and damped trend exponential smoothing
    of the series, seasonally adjusted as for Naive2."""

    kind: Literal["comb_shd"]

    def min_history(self, season_length: int, num_steps: int) -> int:
        # Members too short for their ETS model give way to simpler ones; the adjustment needs three seasons.
        return 3


# ------------------------------------------------------------- Keras models

class KerasSpec(Spec):
    """A model of the Keras registry (stages/lib/nn/models.py) trained on windows of differences."""

    kind: Literal["keras"]
    model: Literal[tuple(MODELS)]  # type: ignore[valid-type]
    diff_order: int = Field(default=1, ge=0, le=2)
    # Past values per window: null takes the top-level num_steps (the article's 3);
    # auto: two seasons where the dataset has one, so the model can see it, else num_steps.
    input_size: int | str | None = None
    fit: FitParams
    arch: dict[str, Any] = {}
    # One network per seed, the median of their forecasts; null: fit.seed alone.
    seeds: tuple[NonNegativeInt, ...] | None = None
    # With fit.patience: the share of a history's windows, at its end, that validates (early stopping).
    validation: float = Field(default=0.2, gt=0.0, lt=1.0)
    # With fit.patience: retrain from the same seed on every window, validation's included, for the epochs
    # validation chose (a second training per fit; the panels' direct models do it by default).
    refit: bool = False

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and not value:
            raise ValueError("an ensemble needs at least one member (an empty list has none; null: fit.seed)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"each seed once (got {list(value)})")
        return value

    def seed_list(self) -> list[int]:
        """The training seeds: one network each."""
        return list(self.seeds) if self.seeds is not None else [self.fit.seed or 0]

    @field_validator("input_size")
    @classmethod
    def _input_size(cls, value: int | str | None) -> int | str | None:
        if value is None or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return value
        raise ValueError("must be a positive integer, auto or null")

    def window(self, season_length: int, num_steps: int) -> int:
        """The input window on a dataset with this season length."""
        if self.input_size == "auto":
            return max(2 * season_length, num_steps) if season_length > 1 else num_steps
        return self.input_size or num_steps

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
        return self.diff_order + self.window(season_length, num_steps) + 2  # at least two training windows


LOSSES = ("mse", "smape", "mape", "mase")  # global direct models' training losses (global_direct.keras_loss)


@dataclass(frozen=True)
class MemberConfig:
    """One network of a global direct model's ensemble: its seed, its look-back (values) and its loss."""

    seed: int
    lookback: int
    loss: str

    @property
    def label(self) -> str:
        return f"seed{self.seed}-L{self.lookback}-{self.loss}"


def member_configs(seeds: list[int], lookbacks: list[int], losses: list[str]) -> list[MemberConfig]:
    """Every combination, the loss varying fastest, then the look-back, then the seed: the first k members
    of an ensemble mix losses and look-backs before they repeat them with another seed."""
    return [MemberConfig(s, lb, loss) for s, lb, loss in itertools.product(seeds, lookbacks, losses)]


class PanelKerasSpec(KerasSpec):
    """A Keras forecaster of panels (section ``panel_models:``): one model per series, or one across them all."""

    # global: one model trained on the windows of every series of the panel, each
    # series scaled by its own history; per_series: one model per series, as a
    # forecaster of `forecasters:` is trained on one dataset.
    mode: Literal["global", "per_series"] = "global"
    # recursive: one step ahead, fed back `horizon` times (differenced, scaled by the
    # history's largest difference). direct: the whole horizon at once from a window of
    # levels, trained and validated as N-BEATS is (stages/lib/forecast/global_direct.py).
    output: Literal["recursive", "direct"] = "recursive"
    # direct only. The look-back in horizons (N-BEATS: 2..7); a list makes one ensemble
    # member per value. null: input_size values.
    lookback: PositiveInt | tuple[PositiveInt, ...] | None = None
    loss: str | tuple[str, ...] = "mse"  # one of LOSSES; a list: one member per loss
    batches_per_epoch: PositiveInt = 100  # sampled batches between two validations
    history_limit: PositiveFloat | None = None  # windows end in the last this-many horizons (N-BEATS' L_H)
    # Retrain on every window, validation's included, for the epochs validation chose. Unset: on for the direct
    # models (N-BEATS' protocol; they always validate), off for a per_series model, as for the forecaster of
    # `forecasters:` it is (it needs fit.patience). The global recursive model never refits.
    refit: bool = False
    # direct only: the level the forecast starts from, the network adding the departure (mean: the look-back's
    # mean; last: its last value, as the official N-BEATS). global_direct.from_the_window says why.
    start: Literal["mean", "last"] = "mean"

    @model_validator(mode="before")
    @classmethod
    def _refit_by_output(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "refit" not in raw:
            return {**raw, "refit": raw.get("output") == "direct"}
        return raw

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        unknown = [v for v in ((value,) if isinstance(value, str) else value) if v not in LOSSES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a loss: use one of {', '.join(LOSSES)} (or a list of them)")
        return value

    @model_validator(mode="after")
    def _global_batches(self) -> PanelKerasSpec:
        if self.mode == "global" and self.fit.batch_size == "auto":
            # `auto` is the article's fifth of one series; a global model's windows come from thousands.
            raise ValueError("fit.batch_size: a global model needs a number of windows per batch (auto is a fifth "
                             "of one series, for per_series)")
        if self.output == "direct" and self.mode != "global":
            raise ValueError("output: direct is for mode: global (a per_series model forecasts recursively)")
        if self.output == "recursive":
            changed = [key for key in ("lookback", "history_limit") if getattr(self, key) is not None]
            changed += ["start"] if self.start != "mean" else []
            changed += ["seeds"] if self.mode == "global" and self.seeds is not None else []
            changed += ["loss"] if self.loss != "mse" else []
            if changed:
                raise ValueError(f"{changed[0]}: only for output: direct (this model forecasts recursively)")
            if self.model == "nbeats":
                raise ValueError("model: nbeats forecasts the whole horizon at once: set output: direct")
            if self.mode == "global" and self.refit:
                # It validates one step ahead and never retrains (docs/panels.md): accepted, it would be ignored.
                raise ValueError("refit: the global recursive model never retrains; refit is for output: direct "
                                 "or mode: per_series")
        for key in ("lookback", "loss"):
            value = getattr(self, key)
            if isinstance(value, tuple) and not value:
                raise ValueError(f"{key}: an ensemble needs at least one member (an empty list has none)")
            if isinstance(value, tuple) and len(set(value)) != len(value):
                raise ValueError(f"{key}: each value once (got {list(value)})")
        return self

    def _as_list(self, key: str) -> list:
        value = getattr(self, key)
        return list(value) if isinstance(value, tuple) else [value]

    def lookbacks(self, horizon: int, season_length: int, num_steps: int) -> list[int]:
        """The input windows, in values, of the ensemble's members."""
        if self.lookback is None:
            return [self.window(season_length, num_steps)]
        return [k * horizon for k in self._as_list("lookback")]

    def members(self, horizon: int, season_length: int, num_steps: int) -> list[MemberConfig]:
        """Every member of the ensemble (one for a single network)."""
        return member_configs(self.seed_list(), self.lookbacks(horizon, season_length, num_steps),
                              self._as_list("loss"))

    def scored_names(self, name: str, horizon: int) -> list[str]:
        """The forecasts it writes: the ensemble under its name and, for an ensemble of several, its first
        member alone under ``<name>_single``, so the report shows what the ensemble buys."""
        several = self.output == "direct" and len(self.members(horizon, 1, 1)) > 1
        return [name, f"{name}_single"] if several else [name]

    def member_names(self, name: str, horizon: int) -> list[str]:
        count = len(self.members(horizon, 1, 1)) if self.output == "direct" else 1
        return [f"{name}_member{i}" for i in range(2, count + 1)]

    def check_horizon(self, horizon: int) -> None:
        """Raise ValueError naming the key where the network cannot forecast ``horizon`` points."""
        if self.output == "direct":
            for steps in self.lookbacks(horizon, 1, 1):
                self.model_spec().check_outputs(steps, horizon)

    def min_panel_history(self, season_length: int, num_steps: int, horizon: int) -> int:
        if self.output == "direct":
            # Windows are padded on the left (N-BEATS): two origins with a full horizon after each.
            return horizon + 2
        return self.min_history(season_length, num_steps)


SPECS: dict[str, type[Spec]] = {
    "naive": NaiveSpec,
    "seasonal_naive": SeasonalNaiveSpec,
    "drift": DriftSpec,
    "arima": ArimaSpec,
    "ets": EtsSpec,
    "theta": ThetaSpec,
    "auto_arima": AutoArimaSpec,
    "combination": CombinationSpec,
    "naive2": NaiveTwoSpec,
    "comb_shd": CombSHDSpec,
    "keras": KerasSpec,
}
BASELINE_KINDS = ("naive", "seasonal_naive", "drift")
# What the statistical: section may hold.
STATISTICAL_KINDS = ("ets", "theta", "auto_arima", "arima", "combination", "naive2", "comb_shd")


def window_pairs(forecasters: dict[str, Any]) -> list[tuple[str, str]]:
    """(article's window, two-season window) pairs: forecasters with the same settings but input_size null and auto."""
    def rest(spec: Any) -> dict:
        return spec.model_dump(exclude={"input_size", "datasets"})

    windowed = {name: spec for name, spec in forecasters.items() if hasattr(spec, "input_size")}
    return [(plain, auto) for auto, a in windowed.items() if a.input_size == "auto"
            for plain, p in windowed.items() if p.input_size is None and rest(p) == rest(a)]
