"""Univariate series: loading and validation, differencing, scaling, windows.

Every statistic (the scaler, the differencing origin) is fitted on the training
part only and applied to the test part.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import MaxAbsScaler


class DataError(ValueError):
    """A data problem, already phrased as one line naming file, row and rule."""


# ------------------------------------------------------------------ loading

def load_series(path: Path, time_col: str, value_col: str) -> pd.DataFrame:
    """Read and validate a CSV of one integer time column and one value column.

    Returns a frame with columns ``time`` and ``value``. Rows are reported by
    their line number in the file (the header is line 1).
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8", errors="strict") if path.stat().st_size else ""
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip() for h in rows[0]]
    for col in (time_col, value_col):
        if col not in header:
            raise DataError(f"{path}: column {col!r} not found in the header (columns: {', '.join(header)})")
    ti, vi = header.index(time_col), header.index(value_col)
    times, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: expected {len(header)} fields, found {len(row)}")
        times.append(_parse_int(row[ti], path, line, time_col))
        values.append(_parse_float(row[vi], path, line, value_col))
    if not values:
        raise DataError(f"{path}: no data rows after the header")
    for i in range(1, len(times)):
        line = i + 2
        if times[i] == times[i - 1]:
            raise DataError(f"{path}: line {line}: duplicate time {times[i]} in column {time_col!r}")
        if times[i] < times[i - 1]:
            raise DataError(f"{path}: line {line}: time {times[i]} is before the previous row's {times[i - 1]} (rows must be sorted)")
        if times[i] != times[i - 1] + 1:
            raise DataError(f"{path}: line {line}: gap in column {time_col!r}, {times[i - 1]} is followed by {times[i]} (expected {times[i - 1] + 1})")
    return pd.DataFrame({"time": times, "value": values})


def _parse_int(cell: str, path: Path, line: int, col: str) -> int:
    try:
        return int(cell.strip())
    except ValueError:
        raise DataError(f"{path}: line {line}: time {cell!r} in column {col!r} is not an integer period") from None


def _parse_float(cell: str, path: Path, line: int, col: str) -> float:
    if not cell.strip():
        raise DataError(f"{path}: line {line}: blank value in column {col!r}")
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path}: line {line}: value {cell!r} in column {col!r} is not a number") from None
    if not np.isfinite(value):
        raise DataError(f"{path}: line {line}: value {cell!r} in column {col!r} is not a finite number")
    return value


# ------------------------------------------------------------ differencing

def difference(y: np.ndarray, order: int) -> np.ndarray:
    """The ``order``-th difference; element j belongs to time j + order."""
    return np.diff(np.asarray(y, dtype=float), n=order)


def undifference_next(diff_value: float | np.ndarray, past: np.ndarray, order: int) -> float | np.ndarray:
    """Level at time t from its ``order``-th difference and the true levels before t.

    Since diff_t = sum_k (-1)^k C(order, k) y_{t-k}, the level is
    y_t = diff_t - sum_{k>=1} (-1)^k C(order, k) y_{t-k}.
    ``past`` may be 1-D (one origin) or 2-D (one row of past levels per origin).
    """
    past = np.asarray(past, dtype=float)
    level = np.asarray(diff_value, dtype=float).copy()
    for k in range(1, order + 1):
        level = level - (-1) ** k * comb(order, k) * past[..., -k]
    return level


# ---------------------------------------------------------------- windows

def make_windows(z: np.ndarray, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``num_steps`` past values (n, num_steps, 1) and the next value (n,)."""
    z = np.asarray(z, dtype=np.float32)
    n = len(z) - num_steps
    if n < 1:
        return np.empty((0, num_steps, 1), np.float32), np.empty((0,), np.float32)
    idx = np.arange(num_steps)[None, :] + np.arange(n)[:, None]
    return z[idx][..., None], z[num_steps:]


@dataclass(frozen=True)
class Prepared:
    """Windows of the scaled, differenced series, split into train and test."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    scale: float
    n_train: int  # number of training levels; test points are levels n_train..end
    diff_order: int


def min_length(num_steps: int, test_len: int, diff_order: int, min_train_windows: int = 2) -> int:
    """Fewest points a series needs for the windows and the test part."""
    return test_len + diff_order + num_steps + min_train_windows


def check_length(n_points: int, source: str, num_steps: int, test_len: int, diff_order: int) -> None:
    """Raise a one-line DataError if a series is too short for the windows and the test part."""
    need = min_length(num_steps, test_len, diff_order)
    if n_points < need:
        raise DataError(f"{source}: {n_points} points is too short for num_steps={num_steps}, "
                        f"preprocess.test_len={test_len}, preprocess.diff_order={diff_order} (needs at least {need})")


def prepare(y: np.ndarray, num_steps: int, test_len: int, diff_order: int) -> Prepared:
    """Difference, scale on the training part only, window, and hold out the tail.

    The test targets are the last ``test_len`` levels. The scaler sees only the
    differences made of training levels, so nothing of the test period leaks in.
    """
    y = np.asarray(y, dtype=float)
    n_train = len(y) - test_len
    z = difference(y, diff_order)
    z_train_end = n_train - diff_order  # z[j] belongs to level j + diff_order
    scaler = MaxAbsScaler().fit(z[:z_train_end].reshape(-1, 1))
    zs = scaler.transform(z.reshape(-1, 1)).reshape(-1)
    X, target = make_windows(zs, num_steps)
    # Window i predicts z[i + num_steps], i.e. level i + num_steps + diff_order.
    level_of = np.arange(len(target)) + num_steps + diff_order
    train = level_of < n_train
    return Prepared(
        X_train=X[train], y_train=target[train], X_test=X[~train], y_test=target[~train],
        scale=float(scaler.scale_[0]), n_train=int(n_train), diff_order=diff_order,
    )


def levels_from_diffs(pred_scaled: np.ndarray, y: np.ndarray, n_train: int, scale: float, diff_order: int) -> np.ndarray:
    """Turn scaled one-step predictions of the differenced test points into levels.

    Undo the scaling, then undo the differencing from the true levels before
    each test point (one-step ahead: every origin knows the truth up to t - 1).
    """
    y = np.asarray(y, dtype=float)
    diffs = np.asarray(pred_scaled, dtype=float).reshape(-1) * scale
    test_idx = np.arange(n_train, len(y))
    if diff_order == 0:
        return diffs
    past = np.stack([y[t - diff_order:t] for t in test_idx])
    return undifference_next(diffs, past, diff_order)
