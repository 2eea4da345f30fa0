"""Forecast scores on the original scale: point errors, MASE over rolling origins, coverage, persistence.

Pure numpy/pandas. ``SCORES`` names every point score once, with its title and
format, for the stages, the reports and the review.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

MEMBER = "member_"  # the prefix of a member's own forecast column in a backtest's rows (run_backtest)


def mse(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean((np.asarray(actual) - np.asarray(predicted)) ** 2))


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(mse(actual, predicted)))


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(predicted))))


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error, in percent (undefined where actual is 0)."""
    actual = np.asarray(actual, dtype=float)
    if np.any(actual == 0):
        return float("nan")
    return float(100.0 * np.mean(np.abs((actual - np.asarray(predicted)) / actual)))


def symmetric_ratio(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each point's |a - p| / ((|a| + |p|) / 2), 0..2; a pair of zeros counts 0. sMAPE's terms, shared by every
    score built on them (by step ahead, per point of an ensemble)."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    denom = (np.abs(actual) + np.abs(predicted)) / 2
    return np.divide(np.abs(actual - predicted), denom, out=np.zeros_like(denom), where=denom > 0)


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric MAPE in percent (0..200): 100 times the mean of ``symmetric_ratio``."""
    return float(100.0 * np.mean(symmetric_ratio(actual, predicted)))


def naive_scale(train: np.ndarray, season: int = 1) -> float:
    """In-sample MAE of the seasonal naive forecast (the naive one for season 1): MASE's denominator."""
    train = np.asarray(train, dtype=float)
    if len(train) <= season:
        return float("nan")
    return float(np.mean(np.abs(train[season:] - train[:-season])))


def mase(actual: np.ndarray, predicted: np.ndarray, train: np.ndarray, season: int = 1) -> float:
    """MAE scaled by the in-sample MAE of the (seasonal) naive forecast on train."""
    scale = naive_scale(train, season)
    return float(mae(actual, predicted) / scale) if scale > 0 else float("nan")


def scaled_mae(actual: np.ndarray, predicted: np.ndarray, scales: np.ndarray) -> float:
    """MASE over rolling origins: each error divided by the naive scale of its own origin's history."""
    scales = np.asarray(scales, dtype=float)
    if not np.all(scales > 0):
        return float("nan")
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(predicted)) / scales))



ERRORS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"mae": mae, "mse": mse, "rmse": rmse, "mape": mape,
                                                                  "smape": smape}


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits in plain notation: 8088.4 -> "8090", 0.5 -> "0.500".

    The committed reports show three: a rerun on another CPU (other BLAS kernels,
    oneDNN) moves scores in the 4th to 6th digit, which then shows only where a
    value sits on a rounding edge; stages.tools.compare marks such moves "≈".
    """
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    shift = digits - 1 - math.floor(math.log10(abs(value)))
    return f"{round(value, shift):.{max(0, shift)}f}"


def percent(value: float) -> str:
    return significant(value) + "%"


# Every point score of score(), in order: its title and its format in the reports. Lower is better for each.
SCORES: dict[str, tuple[str, Callable[[float], str]]] = {
    "mae": ("MAE", significant), "mse": ("MSE", significant), "rmse": ("RMSE", significant),
    "mape": ("MAPE", percent), "smape": ("sMAPE", percent), "mase": ("MASE", significant)}


def naive_scales(y: np.ndarray, origin_list: list[int], season_length: int) -> dict[int, float]:
    """MASE scale per origin: the in-sample MAE of the seasonal naive forecast on the history before it."""
    return {o: naive_scale(y[:o], season_length) for o in origin_list}


def score(rows: pd.DataFrame, scales: dict[int, float], levels: list[int]) -> dict[str, float]:
    """Errors on the original scale over the given rows, and interval coverage."""
    actual, forecast = rows["actual"].to_numpy(), rows["forecast"].to_numpy()
    out = {name: fn(actual, forecast) for name, fn in ERRORS.items()}
    out["mase"] = scaled_mae(actual, forecast, rows["origin"].map(scales).to_numpy())
    out["n"] = len(rows)  # points scored: one of them moves a coverage by 1/n (stages.tools.compare's noise floor)
    for level in levels:
        lo, hi = rows[f"lo{level}"].to_numpy(), rows[f"hi{level}"].to_numpy()
        has = ~np.isnan(lo)
        out[f"coverage_{level}"] = float(np.mean((actual[has] >= lo[has]) & (actual[has] <= hi[has]))) if has.any() else float("nan")
        out[f"width_{level}"] = float(np.mean(hi[has] - lo[has])) if has.any() else float("nan")
        out[f"msis_{level}"] = (msis(actual[has], lo[has], hi[has], level, rows["origin"].map(scales).to_numpy()[has])
                                if has.any() else float("nan"))
    return out


def msis(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: int, scales: np.ndarray) -> float:
    """The M4 competition's mean scaled interval score: the interval's width, plus 2 / alpha times how far the
    actual falls outside it, each scaled as MASE is (the in-sample seasonal naive MAE), then averaged. Lower is
    better; it rewards narrow intervals and punishes misses in proportion to the miss (Gneiting and Raftery 2007)."""
    if len(scales) == 0 or not np.all(scales > 0):
        return float("nan")  # a flat history has no scale, as for MASE (scaled_mae)
    alpha = 1 - level / 100
    score = (hi - lo) + (2 / alpha) * np.maximum(lo - actual, 0) + (2 / alpha) * np.maximum(actual - hi, 0)
    return float(np.mean(score / scales))


def origin_losses(rows: pd.DataFrame, scales: dict[int, float]) -> pd.Series:
    """Each origin's MASE over its steps ahead (mean |error| / that origin's naive scale), in origin order:
    the loss series of a Diebold-Mariano test between two forecasters of one series."""
    loss = (rows["actual"] - rows["forecast"]).abs() / rows["origin"].map(scales)
    return loss.groupby(rows["origin"]).mean().sort_index()


def spread(values: pd.Series, key: str) -> dict[str, float]:
    """One score over an ensemble's members: ``<key>_mean``, ``<key>_sd`` (sample, ddof 1) and ``<key>_best`` (the
    lowest), the keys every ensemble's spread is written under (single series and panels)."""
    return {f"{key}_mean": float(values.mean()), f"{key}_sd": float(values.std(ddof=1)),
            f"{key}_best": float(values.min())}


def member_scores(rows: pd.DataFrame, scales: dict[int, float]) -> dict:
    """What the median of several members buys on one series: each member's pooled MASE and sMAPE alone over
    ``rows`` (its ``member_<name>`` column of a backtest's rows), their mean and sample sd over the members, the
    best, and each member's own (``by_member``); empty where the rows hold fewer than two members."""
    columns = [c for c in rows.columns if c.startswith(MEMBER)]
    if len(columns) < 2:
        return {}
    scored = {c[len(MEMBER):]: score(rows.assign(forecast=rows[c]), scales, []) for c in columns}
    alone = pd.DataFrame({name: {k: s[k] for k in ("mase", "smape")} for name, s in scored.items()}).T
    out: dict = {"count": len(columns), **spread(alone["mase"], "mase"), **spread(alone["smape"], "smape")}
    out["by_member"] = {name: {k: float(v) for k, v in row.items()} for name, row in alone.iterrows()}
    return out


def score_by_horizon(rows: pd.DataFrame, scales: dict[int, float], levels: list[int]) -> dict[str, dict[str, float]]:
    """``h1`` .. ``hH`` (each step ahead) and ``all`` (every step pooled)."""
    out = {f"h{h}": score(part, scales, levels) for h, part in rows.groupby("h")}
    out["all"] = score(rows, scales, levels)
    return out


def mean_ranks(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per forecaster, its rank (1 = lowest score) averaged over the datasets; ties share the mean rank.

    ``scores`` maps dataset -> forecaster -> score (lower is better). The report
    passes only the forecasters run on every dataset, so that ranks compare alike.
    """
    table = pd.DataFrame(scores)  # forecasters x datasets
    return table.rank(axis=0, method="average").mean(axis=1).sort_values(kind="stable").to_dict()


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
