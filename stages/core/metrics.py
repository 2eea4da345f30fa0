"""Error metrics, memory probes and the verdict rule. Pure numpy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------ forecast errors

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


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric MAPE in percent (0..200): |a - p| / ((|a| + |p|) / 2); a pair of zeros counts 0."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    denom = (np.abs(actual) + np.abs(predicted)) / 2
    ratio = np.divide(np.abs(actual - predicted), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100.0 * np.mean(ratio))


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


FORECAST_METRICS = {"mae": mae, "rmse": rmse, "mape": mape, "smape": smape}


# -------------------------------------------------------------- memory probes

def change_probe(predict: Predict, X: np.ndarray, idx: int, factor: float, min_abs_pred: float) -> tuple[float, int]:
    """Median relative change (percent) of the prediction when x[idx] is scaled.

    Computed row by row: each row's perturbed prediction is compared with its own
    unperturbed one. Rows whose unperturbed prediction is within ``min_abs_pred``
    of 0 are left out, as a relative change there is meaningless. Returns the
    median and the number of rows it was taken over.
    """
    base = predict(X).reshape(-1)
    changed = X.copy()
    changed[:, idx, :] *= factor
    moved = predict(changed).reshape(-1)
    keep = np.abs(base) > min_abs_pred
    if not keep.any():
        return float("nan"), 0
    # Divide by the signed prediction: for y = x0 + x1 the change 0.5 * x0 over
    # x0 + x1 has median +25%; dividing by |prediction| would centre it on 0.
    rel = (moved[keep] - base[keep]) / base[keep]
    return float(100.0 * np.median(rel)), int(keep.sum())


def blinding_inputs(X: np.ndarray, rows: int, keep: int, zero: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose position ``zero`` is 0 and whose position ``keep`` is i / rows.

    The target of the first+last task is then exactly the kept value.
    """
    blind = X[:rows].copy()
    values = np.arange(rows, dtype=X.dtype) / rows
    blind[:, zero, 0] = 0.0
    blind[:, keep, 0] = values
    return blind, values


def blind_probe(predict: Predict, X: np.ndarray, rows: int, keep: int, zero: int) -> float:
    """MSE between the prediction and the kept end; about 0 if the model uses it."""
    blind, values = blinding_inputs(X, rows, keep=keep, zero=zero)
    return mse(values, predict(blind).reshape(-1))


def remembers(change_pct: float, blind_mse: float, ideal_pct: float, tolerance_pct: float, blind_threshold: float) -> bool:
    """The verdict rule: the change probe is near the ideal AND blinding is accurate."""
    if not (np.isfinite(change_pct) and np.isfinite(blind_mse)):
        return False
    return bool(abs(change_pct - ideal_pct) <= tolerance_pct and blind_mse < blind_threshold)
