"""The M-competitions' classical benchmarks: Naive2 and Comb S-H-D, on seasonally adjusted data.

Both forecast the series after the M4 competition's seasonal adjustment and
multiply the forecast back by the seasonal indices: where a 90% autocorrelation
test finds a season (season m > 1, at least three seasons of history), the
series is divided by the indices of a classical multiplicative decomposition.

- Naive2: the last adjusted value, re-seasonalised.
- Comb S-H-D: the mean of simple exponential smoothing, Holt's linear trend and
  the damped trend, each fitted to the same adjusted series.

The arithmetic follows the M4 competition's published benchmark code
(Mcompetitions/M4-methods: ``Benchmarks and Evaluation.R``, which made the
statistical benchmarks' forecasts, and ``ML_benchmarks.py``'s ``acf``,
``seasonality_test`` and ``deseasonalize``). Where the two differ the R script
is followed, as it produced Naive2 and Comb S-H-D (see ``is_seasonal`` and
``centred_moving_average``).

On M3 this is M4's Naive2, not M3's: the M3 organisers' own NAIVE2 forecasts
(the competition's forecast file) use medial-average indices (the mean of each
season's ratios less the largest and the smallest) and a seasonality decision
that the M4 test does not reproduce, so its quarterly and monthly scores differ
from the M3 paper's (tests/test_m4_benchmarks.py gives the numbers).

statsforecast is imported inside the methods, so validating params stays cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.lib.forecast.base import Forecaster, as_array
from stages.lib.forecast.specs import CombSHDSpec, NaiveTwoSpec

T_CRIT = 1.645  # one-sided 90% normal quantile, as in the M4 benchmarks' test


# ------------------------------------------------------------ seasonal adjustment

def acf(y: np.ndarray, lag: int) -> float:
    """Sample autocorrelation at ``lag``: deviations from the whole series' mean, over the total sum of squares
    (R's ``acf`` and the M4 code's ``acf``). NaN for a constant series."""
    d = as_array(y) - np.mean(y)
    total = float(d @ d)
    return float(d[lag:] @ d[:-lag]) / total if total > 0 else np.nan


def seasonality_limit(y: np.ndarray, m: int) -> float:
    """The 90% limit for |acf at lag m|: 1.645 * sqrt((1 + 2 * sum_{k<m} acf_k^2) / n) (Bartlett's variance)."""
    squares = sum(acf(y, k) ** 2 for k in range(1, m))
    return T_CRIT * np.sqrt((1 + 2 * squares) / len(y))


def is_seasonal(y: np.ndarray, m: int) -> bool:
    """The M4 benchmarks' seasonality test: |acf at lag m| above the 90% limit, with three seasons of history.

    Every acf_k is squared in the limit, as in the R script that made Naive2; the
    M4 Python code adds acf_1 unsquared, a slip its own comment acknowledges (on
    M3 it moves quarterly Naive2's sMAPE from 10.03 to 10.05). Unlike R's ``acf``,
    no default lag.max silently turns the test off for long seasons (52 weeks).
    """
    y = as_array(y)
    if m <= 1 or len(y) < 3 * m:
        return False
    r = acf(y, m)
    return bool(np.isfinite(r) and abs(r) > seasonality_limit(y, m))


def centred_moving_average(y: np.ndarray, m: int) -> np.ndarray:
    """The centred moving average of order m (2 x m for even m), NaN where the window leaves the series.

    As R's ``decompose``. The M4 Python code uses the 2 x m average only when the
    series' length is even (a slip its comment acknowledges: it should test m).
    """
    y = as_array(y)
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    half = len(weights) // 2
    out = np.full(len(y), np.nan)
    if len(y) >= len(weights):
        out[half:len(y) - half] = np.convolve(y, weights, mode="valid")  # symmetric weights: no flip needed
    return out


def seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    """Classical multiplicative seasonal indices, by position from the first point, with mean 1.

    Each is the mean of its position's ratios of the series to its centred moving
    average, then all are divided by their mean (R's ``decompose``; the M4 code's
    ``deseasonalize`` in percent).
    """
    y = as_array(y)
    ratios = y / centred_moving_average(y, m)
    padded = np.r_[ratios, np.full(-len(y) % m, np.nan)].reshape(-1, m)
    indices = np.nanmean(padded, axis=0)
    return indices / indices.mean()


def adjustment_indices(y: np.ndarray, m: int) -> np.ndarray:
    """The indices the benchmarks divide by: seasonal_indices where the test finds a season, else ones.

    A series with a zero or a negative value is left unadjusted: a multiplicative
    index means nothing there (the M3 and M4 series are all positive, so this
    changes none of their forecasts).
    """
    y = as_array(y)
    if is_seasonal(y, m) and np.all(y > 0):
        return seasonal_indices(y, m)
    return np.ones(max(m, 1))


def at_positions(indices: np.ndarray, start: int, length: int) -> np.ndarray:
    """The indices of positions start, start + 1, ..., counted from the first point of the history."""
    return indices[np.arange(start, start + length) % len(indices)]


class SeasonallyAdjusted(Forecaster):
    """Forecasts the seasonally adjusted history and re-seasonalises: the frame of the M4 statistical
    benchmarks. Subclasses forecast the adjusted series (``fit_adjusted``, ``predict_adjusted``,
    ``fitted_adjusted``)."""

    name = ""

    def fit(self, history: np.ndarray) -> SeasonallyAdjusted:
        self.history = as_array(history)
        self.indices = adjustment_indices(self.history, self.m)
        self.adjusted = self.history / at_positions(self.indices, 0, len(self.history))
        self.fit_adjusted()
        return self

    def update(self, history: np.ndarray) -> SeasonallyAdjusted:
        # Keeps the indices and what fit_adjusted estimated; conditions on the longer history.
        self.history = as_array(history)
        self.adjusted = self.history / at_positions(self.indices, 0, len(self.history))
        return self

    def fit_adjusted(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def predict_adjusted(self, horizon: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def fitted_adjusted(self) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, horizon: int) -> np.ndarray:
        return self.predict_adjusted(horizon) * at_positions(self.indices, len(self.history), horizon)

    def fitted(self) -> np.ndarray:
        return self.fitted_adjusted() * at_positions(self.indices, 0, len(self.history))

    @property
    def seasonal(self) -> bool:
        return bool(np.any(self.indices != 1.0))

    def summary(self) -> dict[str, Any]:
        return {"model": f"{self.name}({'multiplicative season' if self.seasonal else 'no season'})"}

    def facts(self) -> dict[str, Any]:
        return {**self.summary(), "seasonal_indices": [round(float(v), 6) for v in self.indices]}


# --------------------------------------------------------------------- Naive2

class NaiveTwo(SeasonallyAdjusted):
    """Naive2: the last seasonally adjusted value, re-seasonalised."""

    spec: NaiveTwoSpec
    name = "Naive2"

    def fit_adjusted(self) -> None:
        """Nothing to estimate beyond the indices."""

    def predict_adjusted(self, horizon: int) -> np.ndarray:
        return np.full(horizon, self.adjusted[-1])

    def fitted_adjusted(self) -> np.ndarray:
        return np.concatenate([[np.nan], self.adjusted[:-1]])


# ---------------------------------------------------------------- Comb S-H-D

# The M4 R script's members: forecast's ses(), holt() and holt(damped = TRUE), i.e.
# ETS(A,N,N), ETS(A,A,N) and ETS(A,Ad,N) fitted by mean squared error. statsforecast's
# AutoETS with a fixed model maximises the likelihood, which for additive errors is
# the same minimum of the squared errors, with the same parameter bounds (phi in
# [0.8, 0.98]). Its Holt class is AutoETS with model AAN; its
# SimpleExponentialSmoothingOptimized is not used as a member because it fixes the
# initial level at the first value where ses() estimates it.
MEMBERS: dict[str, tuple[str, bool]] = {"ses": ("ANN", False), "holt": ("AAN", False), "damped": ("AAN", True)}
# Where the history is too short for a member (statsforecast fits an ETS model to
# more than 4 points beyond its parameters: SES 7, Holt 9, damped 10), the next
# simpler one stands in, and below 7 points the SES of fixed initial level.
# forecast's ets() drops damping too and falls back to HoltWinters-style fits: the
# fallbacks differ in detail, on histories no M-competition series is as short as.
SIMPLER: tuple[tuple[str, bool], ...] = (("AAN", True), ("AAN", False), ("ANN", False))


def fit_smoother(y: np.ndarray, model: str, damped: bool):
    """A fitted statsforecast exponential smoothing model of ``y``: ETS(model, damped), or the next simpler
    one that the history is long enough for."""
    from statsforecast.models import AutoETS, SimpleExponentialSmoothingOptimized

    for simpler, simpler_damped in SIMPLER[SIMPLER.index((model, damped)):]:
        try:
            return AutoETS(model=simpler, damped=simpler_damped).fit(y)
        except NotImplementedError:  # statsforecast's "tiny datasets"
            continue
    return SimpleExponentialSmoothingOptimized().fit(y)


def smoother_name(fitted) -> str:
    """What a fitted member is: its ETS model (statsforecast fits ETS(A,N,N) to a constant series whatever
    was asked), or the fallback SES of very short histories."""
    model = fitted.model_
    if "components" not in model:
        return "SES(initial level = first value)"
    error, trend, season, damped = model["components"]
    return f"ETS({error},{trend}{'d' if damped == 'D' else ''},{season})"


class CombSHD(SeasonallyAdjusted):
    """Comb S-H-D: the mean of SES, Holt and damped trend exponential smoothing of the seasonally adjusted
    history, re-seasonalised."""

    spec: CombSHDSpec
    name = "Comb S-H-D"

    def fit_adjusted(self) -> None:
        self.estimated = self.adjusted  # the series the members' parameters were estimated on
        self.members = {name: fit_smoother(self.adjusted, model, damped) for name, (model, damped) in MEMBERS.items()}

    # After an update, a member keeps its parameters and is conditioned on the longer history
    # (statsforecast's forward); the fallback SES has no forward and is refitted (a very short history).
    def _member_forecast(self, member, horizon: int) -> np.ndarray:
        if self.adjusted is self.estimated:
            out = member.predict(horizon)
        elif hasattr(member, "forward"):
            out = member.forward(self.adjusted, horizon)
        else:
            out = type(member)().fit(self.adjusted).predict(horizon)
        return np.asarray(out["mean"], dtype=float)

    def _member_fitted(self, member) -> np.ndarray:
        if self.adjusted is self.estimated:
            out = member.predict_in_sample()
        elif hasattr(member, "forward"):
            out = member.forward(self.adjusted, 1, fitted=True)
        else:
            out = type(member)().fit(self.adjusted).predict_in_sample()
        return np.asarray(out["fitted"], dtype=float)

    def predict_adjusted(self, horizon: int) -> np.ndarray:
        return np.mean([self._member_forecast(member, horizon) for member in self.members.values()], axis=0)

    def fitted_adjusted(self) -> np.ndarray:
        return np.mean([self._member_fitted(member) for member in self.members.values()], axis=0)

    def facts(self) -> dict[str, Any]:
        members = {name: smoother_name(member) for name, member in self.members.items()}
        return {**super().facts(), "members": members, "library": "statsforecast"}
