"""ARIMA (statsmodels) with a fixed order, or one chosen once by AIC over a bounded grid."""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Literal

import numpy as np

from stages.lib.forecast.base import Forecaster, Intervals, as_array
from stages.lib.forecast.specs import ArimaSpec
from stages.lib.infra import cluster
from stages.lib.infra.cores import cores

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
    joblib's worker processes, or over a Dask cluster (stages/lib/infra/cluster.py)
    (statsmodels' filter holds the GIL: threads do not help; joblib also keeps
    each worker's BLAS to one thread, without which two workers ran 3x slower
    than one process). The results come back in grid
    order, so the choice is the same whatever the number of cores (timings:
    docs/speed.md).
    """
    workers = cluster.slots(min(MAX_WORKERS, cores()))  # on a cluster, its threads
    if len(candidates) < PARALLEL_MIN_FITS or workers < 2:
        return [_aic(y, *c) for c in candidates]
    return cluster.map_ordered(_aic_of, candidates, (y,), workers, name="arima-grid")


def _aic_of(candidate: tuple, y: np.ndarray) -> float | None:
    return _aic(y, *candidate)


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
    """statsmodels ARIMA; the order is fixed, or chosen on the first history it is fitted to (``select: once``)
    or on every history it is refitted to (``every_fit``)."""

    has_intervals = True

    def __init__(self, spec: ArimaSpec, season_length: int = 1, num_steps: int = 1) -> None:
        super().__init__(spec, season_length, num_steps)
        self.choice: dict[str, Any] | None = None

    def _choose(self, y: np.ndarray) -> dict[str, Any]:
        if self.spec.order == "auto" or (self.spec.seasonal_order == "auto" and self.m > 1):
            return select_order(y, self.m, self.spec)
        m = self.m if self.m > 1 else 0
        seasonal = (*self.spec.seasonal_order, m) if m and self.spec.seasonal_order != "auto" else (0, 0, 0, 0)
        order = tuple(self.spec.order)
        return {"order": order, "seasonal_order": seasonal, "trend": trend_for(order[1], seasonal[1])}

    def fit(self, history: np.ndarray) -> Arima:
        self.history = as_array(history)
        if self.choice is None or self.spec.select == "every_fit":
            self.choice = self._choose(self.history)
        c = self.choice
        # Each refit starts from statsmodels' default start, not the last origin's
        # estimates: that was faster, but on short series it stuck in worse optima
        # (lower log-likelihood on sales and Nile; docs/speed.md).
        self.result = fit_arima(self.history, c["order"], c["seasonal_order"], c["trend"])
        return self

    def update(self, history: np.ndarray) -> Arima:
        self.history = as_array(history)
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

    def summary(self) -> dict[str, Any]:
        c = self.choice or {}
        return {"order": list(c.get("order", [])), "seasonal_order": list(c.get("seasonal_order", [])),
                "trend": c.get("trend")}

    def facts(self) -> dict[str, Any]:
        c = self.choice or {}
        return {"order": list(c.get("order", [])), "seasonal_order": list(c.get("seasonal_order", [])),
                "trend": c.get("trend"), "selected_by": "aic" if "models_tried" in c else "params",
                "models_tried": c.get("models_tried"), "aic": float(self.result.aic)}
