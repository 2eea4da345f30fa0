"""Naive baselines: one-step-ahead forecasts of y[n_train:] from the true past.

Any model claimed to be good has to beat these.
"""

from __future__ import annotations

import numpy as np


def naive(y: np.ndarray, n_train: int) -> np.ndarray:
    """The previous true value."""
    y = np.asarray(y, dtype=float)
    return y[n_train - 1:-1]


def drift(y: np.ndarray, n_train: int) -> np.ndarray:
    """The previous true value plus the mean step of the training part."""
    y = np.asarray(y, dtype=float)
    return naive(y, n_train) + np.mean(np.diff(y[:n_train]))


BASELINES = {"naive": naive, "drift": drift}
