"""Rolling-origin backtest and empirical intervals. Pure numpy/pandas (scores: scoring.py).

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

from stages.lib.errors import DataError
from stages.lib.forecast.base import Forecaster
from stages.lib.forecast.scoring import MEMBER
from stages.lib.forecast.specs import Spec
from stages.lib.infra import interrupts


def conformal_radius(errors: np.ndarray, level: int) -> float:
    """The half-width of the split-conformal interval at ``level`` %: the k-th smallest absolute error, with
    k = ceil((n + 1) * level / 100) (Vovk et al. 2005; Lei et al. 2018). For a new error exchangeable with these
    n it covers with probability at least ``level`` % (and below ``level`` % + 1 / (n + 1)), whatever their
    distribution: unlike a plain quantile of 8 to 10 errors, which covers about 80% at a nominal 95%.
    NaN where n is too small for the level (``min_calibration``)."""
    scores = np.sort(np.abs(np.asarray(errors, dtype=float)))
    k = -(-(len(scores) + 1) * level // 100)
    return float(scores[k - 1]) if k <= len(scores) else float("nan")


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
            f"step_size={bt.step_size}, calibration_windows={bt.calibration_windows}"
            + (" (protocol holdout: one origin; the horizon may be the dataset's own)" if bt.protocol == "holdout" else "")
            + f" with forecaster "
            f"{forecaster!r} (needs at least {need}: {min_history} before the first origin)")


def check_lengths(n: int, source: str, bt, specs: dict[str, Spec], season_length: int, num_steps: int) -> None:
    """``check_length`` for the forecaster that needs the longest history, so the error states the real minimum."""
    name = max(specs, key=lambda k: specs[k].min_history(season_length, num_steps))
    check_length(n, source, bt, name, specs[name], season_length, num_steps)


def run_backtest(forecaster: Forecaster, y: np.ndarray, origin_list: list[int], horizon: int, levels: list[int],
                 progress: Callable[[str], None] = lambda _: None) -> pd.DataFrame:
    """Forecast ``horizon`` steps from each origin; one row per (origin, step).

    Columns: origin, h, index (of the target in ``y``), actual, forecast,
    lo<level>/hi<level> where the forecaster has its own intervals (NaN otherwise),
    and ``member_<name>`` for each member's own forecast where the forecast is the
    median of several (``Forecaster.member_forecasts``; none for one member).
    """
    y = np.asarray(y, dtype=float)
    forecaster.prepare([y[:origin] for k, origin in enumerate(origin_list) if k % forecaster.refit_every == 0])
    rows = []
    for k, origin in enumerate(origin_list):
        interrupts.check()
        history = y[:origin]
        refit = k % forecaster.refit_every == 0
        (forecaster.fit if refit else forecaster.update)(history)
        mean = np.asarray(forecaster.predict(horizon), dtype=float)
        bands = forecaster.predict_interval(horizon, levels) if forecaster.has_intervals else {}
        members = forecaster.member_forecasts(horizon)
        for h in range(horizon):
            row = {"origin": origin, "h": h + 1, "index": origin + h, "actual": y[origin + h], "forecast": mean[h]}
            for level in levels:
                lo, hi = bands.get(level, (np.full(horizon, np.nan), np.full(horizon, np.nan)))
                row[f"lo{level}"], row[f"hi{level}"] = lo[h], hi[h]
            row.update({f"{MEMBER}{name}": float(path[h]) for name, path in members.items()})
            rows.append(row)
        progress(f"origin {k + 1}/{len(origin_list)} (t={origin}{', refit' if refit else ''})")
    return pd.DataFrame(rows)


def empirical_intervals(frame: pd.DataFrame, levels: list[int]) -> pd.DataFrame:
    """Fill missing intervals with split-conformal ones from the errors of earlier origins at the same step.

    For the row of origin ``o`` and step ``h``, the calibration errors are the errors
    (actual - forecast) of rows with the same ``h`` whose target was observed
    before ``o`` (index < o), so no interval uses an error from its own future.
    The band is the forecast plus and minus ``conformal_radius`` of them: symmetric,
    because an asymmetric conformal band needs twice the errors in each tail (39 at
    95%). Rows with fewer errors than the level needs get none; params.yaml's check
    (``backtest.calibration_windows``) makes sure the evaluation windows have enough.
    """
    out = frame.copy()
    errors = out["actual"] - out["forecast"]
    for level in levels:
        lo_col, hi_col = f"lo{level}", f"hi{level}"
        missing = out[lo_col].isna()
        for i in out.index[missing]:
            pool = errors[(out["h"] == out.at[i, "h"]) & (out["index"] < out.at[i, "origin"])]
            radius = conformal_radius(pool.to_numpy(), level)
            if not np.isnan(radius):
                out.at[i, lo_col], out.at[i, hi_col] = out.at[i, "forecast"] - radius, out.at[i, "forecast"] + radius
    return out
