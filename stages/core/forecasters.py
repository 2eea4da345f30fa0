"""Forecasters behind one interface: ``fit(history)``, ``update(history)``, ``predict(horizon)``.

In the spirit of statsforecast, every forecaster has the same verbs and a unique
``kind`` in ``FORECASTERS``, so the backtest is one loop with no branch on a
model's name. Each kind is a pydantic spec (its settings, validated from
params.yaml) with one ``build(season_length, num_steps)`` that returns a fresh
forecaster. Adding a forecaster is one spec, one class and one registry line.

- ``fit(history)`` estimates everything from ``history`` alone: parameters,
  scalers, differencing origins. Nothing else is ever shown to it.
- ``update(history)`` conditions on a longer history without re-estimating
  (between the refits that ``refit_every`` asks for).
- ``predict(horizon)`` forecasts the next ``horizon`` values, recursively where
  the model is one-step.
- ``predict_interval(horizon, levels)`` gives model-based intervals where the
  model has them (ARIMA); ``None`` leaves them to the backtest's empirical
  intervals from past errors.

statsmodels and Keras are imported inside the methods that need them, so that
validating params stays cheap.
"""

from __future__ import annotations

import itertools
import os
import warnings
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from stages.core.models import REGISTRY as MODELS
from stages.core.models import FitParams, ModelSpec
from stages.core.series import difference, make_windows, undifference_next

Intervals = dict[int, tuple[np.ndarray, np.ndarray]]


class Forecaster:
    """Base of every forecaster. Baselines are statistics of the data, so by
    default ``update`` simply recomputes them."""

    refit_every: int = 1

    def fit(self, history: np.ndarray) -> Forecaster:  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, history: np.ndarray) -> Forecaster:
        return self.fit(history)

    def predict(self, horizon: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def predict_interval(self, horizon: int, levels: list[int]) -> Intervals | None:
        return None

    def fitted(self) -> np.ndarray:
        """In-sample one-step predictions of the last history (NaN where there are none)."""
        return np.full(len(self.history), np.nan)

    def facts(self) -> dict[str, Any]:
        """What was chosen or learnt that is worth logging (an ARIMA order, epochs run)."""
        return {}


class Spec(BaseModel):
    """Base of every forecaster's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    refit_every: PositiveInt = 1

    def build(self, season_length: int, num_steps: int) -> Forecaster:  # pragma: no cover - interface
        raise NotImplementedError

    def min_history(self, season_length: int, num_steps: int) -> int:
        """Fewest points a history needs for this forecaster to fit."""
        return 2


def _as_array(history: np.ndarray) -> np.ndarray:
    return np.asarray(history, dtype=float).reshape(-1)


# ------------------------------------------------------------ baselines

class Naive(Forecaster):
    """The last value, repeated."""

    def fit(self, history: np.ndarray) -> Naive:
        self.history = _as_array(history)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.full(horizon, self.history[-1])

    def fitted(self) -> np.ndarray:
        return np.concatenate([[np.nan], self.history[:-1]])


class SeasonalNaive(Forecaster):
    """The value one season earlier; the naive forecast when there is no season."""

    def __init__(self, season_length: int) -> None:
        self.m = season_length

    def fit(self, history: np.ndarray) -> SeasonalNaive:
        self.history = _as_array(history)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        last_season = self.history[-self.m:]
        return np.array([last_season[h % self.m] for h in range(horizon)])

    def fitted(self) -> np.ndarray:
        return np.concatenate([np.full(self.m, np.nan), self.history[:-self.m]])


class Drift(Forecaster):
    """The last value plus h times the mean step of the history (a line through its ends)."""

    def fit(self, history: np.ndarray) -> Drift:
        self.history = _as_array(history)
        self.slope = (self.history[-1] - self.history[0]) / (len(self.history) - 1)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return self.history[-1] + self.slope * np.arange(1, horizon + 1)

    def fitted(self) -> np.ndarray:
        return np.concatenate([[np.nan], self.history[:-1] + self.slope])


class NaiveSpec(Spec):
    kind: Literal["naive"]

    def build(self, season_length: int, num_steps: int) -> Forecaster:
        return Naive()


class SeasonalNaiveSpec(Spec):
    kind: Literal["seasonal_naive"]

    def build(self, season_length: int, num_steps: int) -> Forecaster:
        return SeasonalNaive(season_length)

    def min_history(self, season_length: int, num_steps: int) -> int:
        return season_length + 1


class DriftSpec(Spec):
    kind: Literal["drift"]

    def build(self, season_length: int, num_steps: int) -> Forecaster:
        return Drift()


# ---------------------------------------------------------------- ARIMA

Order = tuple[int, int, int]
Trend = Literal["n", "c", "t"]


def kpss_diffs(y: np.ndarray, max_d: int, alpha: float = 0.05) -> int:
    """Differences needed for stationarity by repeated KPSS tests (as R's ndiffs).

    The order of differencing is chosen by a test, not by AIC: models with
    different d are fitted to different data, so their AICs do not compare.
    """
    from statsmodels.tsa.stattools import kpss

    d = 0
    while d < max_d:
        z = np.diff(y, n=d) if d else y
        if len(z) < 8 or np.ptp(z) == 0:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # p-values outside the table's range are clipped, with a warning
            p_value = kpss(z, regression="c", nlags="auto")[1]
        if p_value >= alpha:
            break
        d += 1
    return d


def seasonal_strength(y: np.ndarray, m: int) -> float:
    """Hyndman's seasonal strength from an STL decomposition: 1 - Var(R) / Var(S + R)."""
    from statsmodels.tsa.seasonal import STL

    if len(y) < 2 * m + 1:
        return 0.0
    parts = STL(y, period=m, robust=True).fit()
    both = np.var(parts.seasonal + parts.resid)
    return float(max(0.0, 1.0 - np.var(parts.resid) / both)) if both > 0 else 0.0


def trend_for(d: int, D: int) -> Trend:
    # A constant on the undifferenced scale is a drift after one difference and
    # meaningless after two, as in R's auto.arima.
    return "c" if d + D == 0 else ("t" if d + D == 1 else "n")


def fit_arima(y: np.ndarray, order: Order, seasonal: tuple[int, int, int, int], trend: Trend):
    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        # Short series make statsmodels warn about starting values and convergence;
        # the fit is still usable and its AIC is what the selection compares.
        warnings.simplefilter("ignore")
        return ARIMA(y, order=order, seasonal_order=seasonal, trend=trend).fit()


def _aic(y: np.ndarray, order: Order, seasonal: tuple[int, int, int, int], trend: Trend) -> float | None:
    try:
        return float(fit_arima(y, order, seasonal, trend).aic)
    except (ValueError, np.linalg.LinAlgError):
        return None


# Below this many fits the grid runs in-process: starting the workers (each
# imports statsmodels) costs more than the second core saves.
PARALLEL_MIN_FITS = 24
MAX_WORKERS = 4


def grid_aics(y: np.ndarray, candidates: list[tuple]) -> list[float | None]:
    """The AIC of every (order, seasonal_order, trend), None where it cannot be fitted.

    The fits are independent, so a large grid is spread over the cores with
    joblib's worker processes (statsmodels' filter holds the GIL: threads do not
    help; joblib also keeps each worker's BLAS to one thread, without which two
    workers ran 3x slower than one process). The results come back in grid
    order, so the choice is the same whatever the number of cores. Measured on
    El Nino's 72-model grid: 13.9 s in one process, 9.1 s over 2 cores, the
    workers' start-up included.
    """
    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    if len(candidates) < PARALLEL_MIN_FITS or workers < 2:
        return [_aic(y, *c) for c in candidates]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=workers)(delayed(_aic)(y, *c) for c in candidates)


def select_order(y: np.ndarray, season_length: int, spec: ArimaSpec) -> dict[str, Any]:
    """(p, d, q)(P, D, Q) by AIC over the bounded grid of ``spec``.

    d by KPSS tests, D by seasonal strength above 0.64 (the tests R's auto.arima
    uses), then every (p, q, P, Q) of the grid with and without the trend term,
    keeping the lowest AIC. Written here because statsmodels has no order search
    for seasonal models and pmdarima pins older numpy than ours.
    """
    m = season_length if season_length > 1 else 0
    D = 0
    if m and spec.seasonal_order == "auto" and spec.max_P + spec.max_Q + spec.max_D > 0:
        D = int(spec.max_D >= 1 and seasonal_strength(y, m) > 0.64)
    if m and spec.seasonal_order != "auto":
        D = spec.seasonal_order[1]
    seasonally_differenced = y[m:] - y[:-m] if D else y
    d = kpss_diffs(seasonally_differenced, spec.max_d) if spec.order == "auto" else spec.order[1]
    # A fixed part of the order stays fixed: only the "auto" part is searched.
    ps, qs = ((range(spec.max_p + 1), range(spec.max_q + 1)) if spec.order == "auto"
              else ([spec.order[0]], [spec.order[2]]))
    if not m:
        seasonal_grid = [(0, 0)]
    elif spec.seasonal_order == "auto":
        seasonal_grid = list(itertools.product(range(spec.max_P + 1), range(spec.max_Q + 1)))
    else:
        seasonal_grid = [(spec.seasonal_order[0], spec.seasonal_order[2])]
    candidates = [((p, d, q), (P, D, Q, m), trend)
                  for p, q in itertools.product(ps, qs) for P, Q in seasonal_grid
                  for trend in dict.fromkeys([trend_for(d, D), "n"])]
    best: dict[str, Any] | None = None
    tried = 0
    for (order, seasonal, trend), aic in zip(candidates, grid_aics(y, candidates), strict=True):
        if aic is None:
            continue  # a grid point statsmodels cannot fit (e.g. too few points) is skipped
        tried += 1
        if np.isfinite(aic) and (best is None or aic < best["aic"]):
            best = {"order": order, "seasonal_order": seasonal, "trend": trend, "aic": aic}
    if best is None:
        raise ValueError(f"no ARIMA order of the grid could be fitted to {len(y)} points")
    return {**best, "models_tried": tried}


class Arima(Forecaster):
    """statsmodels ARIMA; the order is fixed or chosen once, on the first history it is fitted to."""

    def __init__(self, spec: ArimaSpec, season_length: int) -> None:
        self.spec, self.m = spec, season_length
        self.choice: dict[str, Any] | None = None
        self.refit_every = spec.refit_every

    def _choose(self, y: np.ndarray) -> dict[str, Any]:
        if self.spec.order == "auto" or (self.spec.seasonal_order == "auto" and self.m > 1):
            return select_order(y, self.m, self.spec)
        m = self.m if self.m > 1 else 0
        seasonal = (*self.spec.seasonal_order, m) if m and self.spec.seasonal_order != "auto" else (0, 0, 0, 0)
        order = tuple(self.spec.order)
        return {"order": order, "seasonal_order": seasonal, "trend": trend_for(order[1], seasonal[1])}

    def fit(self, history: np.ndarray) -> Arima:
        self.history = _as_array(history)
        if self.choice is None:
            self.choice = self._choose(self.history)
        c = self.choice
        # Each refit starts from statsmodels' default start, not the last origin's
        # estimates: that was 2.4x faster on El Nino but, on short series, stuck
        # in worse optima (log-likelihood up to 5.3 lower on sales, 1.7 on Nile).
        self.result = fit_arima(self.history, c["order"], c["seasonal_order"], c["trend"])
        return self

    def update(self, history: np.ndarray) -> Arima:
        self.history = _as_array(history)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.result = self.result.apply(self.history)  # same parameters, conditioned on the longer history
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.asarray(self.result.forecast(horizon), dtype=float)

    def predict_interval(self, horizon: int, levels: list[int]) -> Intervals:
        forecast = self.result.get_forecast(horizon)
        out = {}
        for level in levels:
            bounds = np.asarray(forecast.conf_int(alpha=1 - level / 100), dtype=float)
            out[level] = (bounds[:, 0], bounds[:, 1])
        return out

    def fitted(self) -> np.ndarray:
        values = np.asarray(self.result.fittedvalues, dtype=float).copy()
        # The first d + D*m values have no past to difference from: statsmodels reports the raw data there.
        order, seasonal = self.choice["order"], self.choice["seasonal_order"]
        values[:order[1] + seasonal[1] * seasonal[3]] = np.nan
        return values

    def facts(self) -> dict[str, Any]:
        c = self.choice or {}
        return {"order": list(c.get("order", [])), "seasonal_order": list(c.get("seasonal_order", [])),
                "trend": c.get("trend"), "selected_by": "aic" if "models_tried" in c else "params",
                "models_tried": c.get("models_tried"), "aic": float(self.result.aic)}


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

    def build(self, season_length: int, num_steps: int) -> Forecaster:
        return Arima(self, season_length)

    def min_history(self, season_length: int, num_steps: int) -> int:
        seasonal = 2 * season_length if season_length > 1 else 0
        return max(10, seasonal + 4)


# ------------------------------------------------------------- Keras models

def resolved_fit(fit: FitParams, n_points: int) -> FitParams:
    """``batch_size: auto`` made a number: the article's batch of a fifth of the series,
    so every fit takes about five steps per epoch whatever the series' length."""
    if fit.batch_size != "auto":
        return fit
    return fit.model_copy(update={"batch_size": max(1, round(n_points / 5))})


class KerasForecaster(Forecaster):
    """A Keras sequence-to-one model made a forecaster: it owns its preprocessing.

    ``fit`` differences the history, fits the scaler on those differences only
    (max |difference| = 1, the article's normalisation without its look at the
    test period), cuts windows of ``num_steps`` and trains from the seed.
    ``update`` keeps the weights but refits the scaler and the difference origin
    on the longer history, so every statistic comes from the data before the
    current origin, whether or not the network was retrained there.
    ``predict`` runs the model one step at a time on its own outputs and turns
    the predicted differences back into levels.
    """

    def __init__(self, spec: KerasSpec, num_steps: int) -> None:
        self.spec, self.num_steps = spec, num_steps
        self.refit_every = spec.refit_every
        self.model_spec = spec.model_spec()
        self.histories: list = []

    def fit(self, history: np.ndarray) -> KerasForecaster:
        from stages.core.training import seed_everything, train

        z = self._observe(history)
        X, target = make_windows(z, self.num_steps)
        seed_everything(self.spec.fit.seed or 0)
        self.model = self.model_spec.build(self.num_steps, 1)
        self.histories.append(train(self.model, X, target, resolved_fit(self.spec.fit, len(self.history))))
        return self

    def update(self, history: np.ndarray) -> KerasForecaster:
        self._observe(history)
        return self

    def _observe(self, history: np.ndarray) -> np.ndarray:
        """Take the history up to the origin and refit the scaler on it; the scaled differences."""
        self.history = _as_array(history)
        z = difference(self.history, self.spec.diff_order)
        peak = np.max(np.abs(z))
        self.scale = float(peak) if peak > 0 else 1.0
        return z / self.scale

    def _step(self, windows: np.ndarray) -> np.ndarray:
        # Calling the model directly: model.predict costs tens of ms per call in set-up.
        return np.asarray(self.model(windows[..., None].astype(np.float32), training=False)).reshape(-1)

    def predict(self, horizon: int) -> np.ndarray:
        d = self.spec.diff_order
        levels = list(self.history)
        z = list(difference(self.history, d) / self.scale)
        out = []
        for _ in range(horizon):
            z_next = float(self._step(np.array([z[-self.num_steps:]]))[0])
            level = float(undifference_next(z_next * self.scale, np.array(levels), d))  # order 0: the value itself
            z.append(z_next)
            levels.append(level)
            out.append(level)
        return np.array(out)

    def fitted(self) -> np.ndarray:
        d = self.spec.diff_order
        z = difference(self.history, d) / self.scale
        X, _ = make_windows(z, self.num_steps)
        values = np.full(len(self.history), np.nan)
        if len(X):
            diffs = self._step(X[..., 0]) * self.scale
            first = self.num_steps + d  # the level the first window predicts
            past = np.stack([self.history[t - d:t] for t in range(first, len(self.history))]) if d else None
            values[first:] = undifference_next(diffs, past, d) if d else diffs
        return values

    def facts(self) -> dict[str, Any]:
        return {"refits": len(self.histories), "epochs_run": [len(h) for h in self.histories],
                "final_loss": [float(h["loss"].iloc[-1]) for h in self.histories]}


class KerasSpec(Spec):
    """A model of the Keras registry (stages/core/models.py) trained on windows of differences."""

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

    def build(self, season_length: int, num_steps: int) -> Forecaster:
        return KerasForecaster(self, num_steps)

    def min_history(self, season_length: int, num_steps: int) -> int:
        return self.diff_order + num_steps + 2  # at least two training windows


FORECASTERS: dict[str, type[Spec]] = {
    "naive": NaiveSpec,
    "seasonal_naive": SeasonalNaiveSpec,
    "drift": DriftSpec,
    "arima": ArimaSpec,
    "keras": KerasSpec,
}
BASELINE_KINDS = ("naive", "seasonal_naive", "drift")
