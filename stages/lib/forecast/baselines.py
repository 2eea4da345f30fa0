"""The naive baselines: statistics of the history, refitted at every origin."""

from __future__ import annotations

import numpy as np

from stages.lib.forecast.base import Forecaster, as_array


class Naive(Forecaster):
    """The last value, repeated."""

    def fit(self, history: np.ndarray) -> Naive:
        self.history = as_array(history)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.full(horizon, self.history[-1])

    def fitted(self) -> np.ndarray:
        return np.concatenate([[np.nan], self.history[:-1]])


class SeasonalNaive(Forecaster):
    """The value one season earlier; the naive forecast when there is no season."""

    def fit(self, history: np.ndarray) -> SeasonalNaive:
        self.history = as_array(history)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        last_season = self.history[-self.m:]
        return np.array([last_season[h % self.m] for h in range(horizon)])

    def fitted(self) -> np.ndarray:
        return np.concatenate([np.full(self.m, np.nan), self.history[:-self.m]])


class Drift(Forecaster):
    """The last value plus h times the mean step of the history (a line through its ends)."""

    def fit(self, history: np.ndarray) -> Drift:
        self.history = as_array(history)
        self.slope = (self.history[-1] - self.history[0]) / (len(self.history) - 1)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return self.history[-1] + self.slope * np.arange(1, horizon + 1)

    def fitted(self) -> np.ndarray:
        return np.concatenate([[np.nan], self.history[:-1] + self.slope])
