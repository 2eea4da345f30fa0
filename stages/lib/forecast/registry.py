"""Every forecaster by its kind: the class that forecasts (settings: specs.SPECS under the same kind)."""

from __future__ import annotations

from stages.lib.forecast.arima import Arima
from stages.lib.forecast.base import Forecaster
from stages.lib.forecast.baselines import Drift, Naive, SeasonalNaive
from stages.lib.forecast.combination import Combination
from stages.lib.forecast.keras import KerasForecaster
from stages.lib.forecast.m4_benchmarks import CombSHD, NaiveTwo
from stages.lib.forecast.specs import Spec
from stages.lib.forecast.statistical import AutoArima, Ets, Theta

FORECASTERS: dict[str, type[Forecaster]] = {
    "naive": Naive,
    "seasonal_naive": SeasonalNaive,
    "drift": Drift,
    "arima": Arima,
    "ets": Ets,
    "theta": Theta,
    "auto_arima": AutoArima,
    "combination": Combination,
    "naive2": NaiveTwo,
    "comb_shd": CombSHD,
    "keras": KerasForecaster,
}


def build(spec: Spec, season_length: int, num_steps: int) -> Forecaster:
    """A fresh forecaster of the spec's kind."""
    return FORECASTERS[spec.kind](spec, season_length, num_steps)
