"""Rolling-origin backtest, empirical intervals, scores and the persistence check. Pure numpy/pandas.

An origin ``o`` splits the series into the history ``y[:o]`` and the targets
``y[o:o + horizon]``. The forecaster only ever sees ``y[:o]``: it is refitted
from it (every ``refit_every`` origins) or updated with it, and every statistic
it uses (scaler, differencing origin, ARIMA order) is computed inside ``fit``
from that history.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from stages.core import interrupts, metrics
from stages.core.forecasters import Forecaster, Spec
from stages.core.series import DataError

MIN_RESIDUALS = 5  # fewer past errors than this give no empirical interval


def origins(n: int, horizon: int, n_windows: int, step_size: int, calibration_windows: int = 0) -> list[int]:
    """Origins of the calibration and evaluation windows, oldest first; the last one's horizon ends the series."""
    last = n - horizon
    total = n_windows + calibration_windows
    return [last - (total - 1 - k) * step_size for k in range(total)]


def first_origin_needed(horizon: int, n_windows: int, step_size: int, calibration_windows: int, min_history: int) -> int:
    """Fewest points a series needs so that the first origin has ``min_history`` points before it."""
    return min_history + horizon + (n_windows + calibration_windows - 1) * step_size


def check_length(n: int, source: str, bt, forecaster: str, spec: Spec, season_length: int, num_steps: int) -> None:
    """Stop, naming the file and the params, when a series of ``n`` points is too short for a forecaster's backtest."""
    min_history = spec.min_history(season_length, num_steps)
    need = first_origin_needed(bt.horizon, bt.n_windows, bt.step_size, bt.calibration_windows, min_history)
    if n < need:
        raise DataError(
            f"{source}: {n} points is too short for backtest.horizon={bt.horizon}, n_windows={bt.n_windows}, "
            f"step_size={bt.step_size}, calibration_windows={bt.calibration_windows} with forecaster "
            f"{forecaster!r} (needs at least {need}: {min_history} before the first origin)")


def check_lengths(n: int, source: str, bt, specs: dict[str, Spec], season_length: int, num_steps: int) -> None:
    """``check_length`` for the forecaster that needs the longest history, so the error states the real minimum."""
    name = max(specs, key=lambda k: specs[k].min_history(season_length, num_steps))
    check_length(n, source, bt, name, specs[name], season_length, num_steps)


def run_backtest(forecaster: Forecaster, y: np.ndarray, origin_list: list[int], horizon: int, levels: list[int],
                 progress: Callable[[str], None] = lambda _: None) -> pd.DataFrame:
    """Forecast ``horizon`` steps from each origin; one row per (origin, step).

    Columns: origin, h, index (of the target in ``y``), actual, forecast, and
    lo<level>/hi<level> where the forecaster has its own intervals (NaN otherwise).
    """
    y = np.asarray(y, dtype=float)
    rows = []
    for k, origin in enumerate(origin_list):
        interrupts.check()
        history = y[:origin]
        refit = k % forecaster.refit_every == 0
        (forecaster.fit if refit else forecaster.update)(history)
        mean = np.asarray(forecaster.predict(horizon), dtype=float)
        bands = forecaster.predict_interval(horizon, levels) or {}
        for h in range(horizon):
            row = {"origin": origin, "h": h + 1, "index": origin + h, "actual": y[origin + h], "forecast": mean[h]}
            for level in levels:
                lo, hi = bands.get(level, (np.full(horizon, np.nan), np.full(horizon, np.nan)))
                row[f"lo{level}"], row[f"hi{level}"] = lo[h], hi[h]
            rows.append(row)
        progress(f"origin {k + 1}/{len(origin_list)} (t={origin}{', refit' if refit else ''})")
    return pd.DataFrame(rows)


def empirical_intervals(frame: pd.DataFrame, levels: list[int], min_residuals: int = MIN_RESIDUALS) -> pd.DataFrame:
    """Fill missing intervals from the errors of earlier origins at the same step.

    For the row of origin ``o`` and step ``h``, the pool is the errors
    (actual - forecast) of rows with the same ``h`` whose target was observed
    before ``o`` (index < o), so no interval uses an error from its own future.
    The band is the forecast plus the (1-level)/2 and (1+level)/2 quantiles of
    the pool. Rows with fewer than ``min_residuals`` past errors get none.
    """
    out = frame.copy()
    errors = out["actual"] - out["forecast"]
    for level in levels:
        lo_col, hi_col = f"lo{level}", f"hi{level}"
        missing = out[lo_col].isna()
        for i in out.index[missing]:
            pool = errors[(out["h"] == out.at[i, "h"]) & (out["index"] < out.at[i, "origin"])]
            if len(pool) >= min_residuals:
                lo_q, hi_q = np.quantile(pool, [(1 - level / 100) / 2, (1 + level / 100) / 2])
                out.at[i, lo_col], out.at[i, hi_col] = out.at[i, "forecast"] + lo_q, out.at[i, "forecast"] + hi_q
    return out


# ---------------------------------------------------------------- scores

def naive_scales(y: np.ndarray, origin_list: list[int], season_length: int) -> dict[int, float]:
    """MASE scale per origin: the in-sample MAE of the seasonal naive forecast on the history before it."""
    return {o: metrics.naive_scale(y[:o], season_length) for o in origin_list}


def score(rows: pd.DataFrame, scales: dict[int, float], levels: list[int]) -> dict[str, float]:
    """Errors on the original scale over the given rows, and interval coverage."""
    actual, forecast = rows["actual"].to_numpy(), rows["forecast"].to_numpy()
    out = {name: fn(actual, forecast) for name, fn in metrics.FORECAST_METRICS.items()}
    out["mase"] = metrics.scaled_mae(actual, forecast, rows["origin"].map(scales).to_numpy())
    for level in levels:
        lo, hi = rows[f"lo{level}"].to_numpy(), rows[f"hi{level}"].to_numpy()
        has = ~np.isnan(lo)
        out[f"coverage_{level}"] = float(np.mean((actual[has] >= lo[has]) & (actual[has] <= hi[has]))) if has.any() else float("nan")
        out[f"width_{level}"] = float(np.mean(hi[has] - lo[has])) if has.any() else float("nan")
    return out


def score_by_horizon(rows: pd.DataFrame, scales: dict[int, float], levels: list[int]) -> dict[str, dict[str, float]]:
    """``h1`` .. ``hH`` (each step ahead) and ``all`` (every step pooled)."""
    out = {f"h{h}": score(part, scales, levels) for h, part in rows.groupby("h")}
    out["all"] = score(rows, scales, levels)
    return out


# ---------------------------------------------------------- persistence

def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def persistence(y: np.ndarray, one_step: pd.DataFrame, min_lag_corr: float, lag_margin: float,
                min_change_ratio: float) -> dict[str, float | bool | None]:
    """Does a forecaster track the actual series one step late (the article's failure)?

    From one-step forecasts f_t at consecutive origins:

    - lag test: the changes of the forecast, f_t - f_{t-1}, correlate with the
      previous actual change y_{t-1} - y_{t-2} (``corr_lag1``) at least
      ``min_lag_corr`` and by ``lag_margin`` more than with the actual change
      y_t - y_{t-1} (``corr_lag0``). A forecast equal to y_{t-1} plus anything
      constant has corr_lag1 = 1. On changes rather than levels: on a trending
      series any two curves correlate near 1 in levels.
    - near-zero change: mean |f_t - y_{t-1}| is under ``min_change_ratio`` of
      mean |y_t - y_{t-1}| (the forecast hardly moves off the last value).
    """
    y = np.asarray(y, dtype=float)
    rows = one_step.sort_values("index")
    t = rows["index"].to_numpy()
    f = rows["forecast"].to_numpy()
    change_ratio = float(np.mean(np.abs(f - y[t - 1])) / np.mean(np.abs(y[t] - y[t - 1]))) \
        if np.mean(np.abs(y[t] - y[t - 1])) > 0 else float("nan")
    consecutive = np.diff(t) == 1
    df = np.diff(f)[consecutive]
    t_next = t[1:][consecutive]
    corr_lag0 = _corr(df, y[t_next] - y[t_next - 1])
    corr_lag1 = _corr(df, y[t_next - 1] - y[t_next - 2]) if len(t_next) and t_next.min() >= 2 else float("nan")
    lagging = bool(np.isfinite(corr_lag1) and corr_lag1 >= min_lag_corr
                   and (not np.isfinite(corr_lag0) or corr_lag1 - corr_lag0 >= lag_margin))
    flat = bool(np.isfinite(change_ratio) and change_ratio < min_change_ratio)
    return {"persistent": lagging or flat, "lags_one_step": lagging, "near_zero_change": flat,
            "corr_lag0": corr_lag0, "corr_lag1": corr_lag1, "change_ratio": change_ratio}
