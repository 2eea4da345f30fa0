"""The memory probes and the verdict: does a model use x[0]? Pure numpy.

On the first+last task (y = x[0] + x[seq-1]) scaling x[idx] by ``factor`` moves
the target by (factor - 1) / 2 of itself in the median: +25% for the +50%
change, the ideal that a model using x[idx] shows and one ignoring it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd

from stages.lib.memory.tasks import last_steps

Predict = Callable[[np.ndarray], np.ndarray]
PROBE_COLUMNS = ["change_first_pct", "change_last_pct", "blind_first_mse", "blind_last_mse"]
SPREAD_KEYS = {"val_mse", "test_mse", *PROBE_COLUMNS}  # reported with their range over seeds


def mse(actual: np.ndarray, predicted: np.ndarray) -> float:
    # The memory task's own error (forecast/scoring.py has the forecast's), so that
    # the memory stages depend on no forecast code.
    return float(np.mean((np.asarray(actual) - np.asarray(predicted)) ** 2))


class ProbeSettings(Protocol):
    """The evaluate_memory params the probes and the verdict read."""

    change_factor: float
    min_abs_pred: float
    blind_rows: int
    ideal_change_pct: float
    change_tolerance_pct: float
    blind_mse_threshold: float


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


def probe_model(predict: Predict, X: np.ndarray, p: ProbeSettings) -> dict[str, float | int]:
    """The change and blinding probes at the first and the last position."""
    first, last = 0, X.shape[1] - 1
    change_first, n_first = change_probe(predict, X, first, p.change_factor, p.min_abs_pred)
    change_last, n_last = change_probe(predict, X, last, p.change_factor, p.min_abs_pred)
    return {
        "change_first_pct": change_first,
        "change_last_pct": change_last,
        "change_rows_used": min(n_first, n_last),
        "blind_first_mse": blind_probe(predict, X, p.blind_rows, keep=first, zero=last),
        "blind_last_mse": blind_probe(predict, X, p.blind_rows, keep=last, zero=first),
    }


def truncated(predict: Predict, keep: int | None) -> Predict:
    return lambda X: predict(last_steps(X, keep))


def summarise_seeds(per_seed: list[dict]) -> dict:
    """One model's results over its seeds: the median of each measure, its range, and the verdict.

    ``remembers_first`` is the majority verdict; ``remembers_first_fraction`` the
    fraction of seeds whose verdict is true. Counts (epochs run, samples seen)
    report the median, the budget a typical seed was given. A seed whose probe is
    undefined (every prediction near 0, so no relative change) is left out of
    that probe's median and range rather than making them undefined too.
    """
    summary: dict = {"seeds": len(per_seed)}
    for key in per_seed[0]:
        values = [row[key] for row in per_seed]
        if key == "remembers_first":
            if values[0] is None:
                summary[key] = None
            else:
                fraction = sum(values) / len(values)
                summary[key], summary[f"{key}_fraction"] = fraction > 0.5, fraction
        elif key in SPREAD_KEYS:
            values = np.array(values, dtype=float)
            if np.isnan(values).all():
                summary[key] = summary[f"{key}_min"] = summary[f"{key}_max"] = float("nan")
            else:
                summary[key] = float(np.nanmedian(values))
                summary[f"{key}_min"], summary[f"{key}_max"] = float(np.nanmin(values)), float(np.nanmax(values))
        else:
            median = float(np.median(values))
            summary[key] = int(median) if median.is_integer() else median
    return summary


def verdict(probes: dict[str, float], p: ProbeSettings) -> bool:
    return remembers(probes["change_first_pct"], probes["blind_first_mse"], p.ideal_change_pct,
                             p.change_tolerance_pct, p.blind_mse_threshold)


def blinding_table(name: str, predict: Predict, X: np.ndarray, rows: int) -> pd.DataFrame:
    """Prediction against the kept end, for the blinding plot."""
    frames = []
    for end, keep, zero in (("first", 0, X.shape[1] - 1), ("last", X.shape[1] - 1, 0)):
        blind, values = blinding_inputs(X, rows, keep=keep, zero=zero)
        frames.append(pd.DataFrame({"model": name, "end": end, "target": values, "prediction": predict(blind)}))
    return pd.concat(frames, ignore_index=True)
