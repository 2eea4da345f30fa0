"""Forecasters behind one interface: ``fit(history)``, ``update(history)``, ``predict(horizon)``.

In the spirit of statsforecast, every forecaster has the same verbs and a unique
``kind`` in ``FORECASTERS``, so the backtest is one loop with no branch on a
model's name. Each kind has a pydantic spec (its settings, validated from
params.yaml, in specs.py) and a class in its family's module; ``registry.build``
makes a fresh forecaster from a spec. Adding a forecaster is one spec, one class
and one line in each of ``specs.SPECS`` and ``registry.FORECASTERS``.

- ``fit(history)`` estimates everything from ``history`` alone: parameters,
  scalers, differencing origins. Nothing else is ever shown to it.
- ``update(history)`` conditions on a longer history without re-estimating
  (between the refits that ``refit_every`` asks for).
- ``predict(horizon)`` forecasts the next ``horizon`` values, recursively where
  the model is one-step.
- ``member_forecasts(horizon)`` gives each member's forecast alone where
  ``predict`` is the median of several (a Keras forecaster's seeds), so the
  evaluation can say what the ensemble buys; none by default.
- ``predict_interval(horizon, levels)`` gives model-based intervals where the
  model has them (``has_intervals``, ARIMA); the others get the backtest's
  empirical intervals from past errors.
- ``facts()``, ``summary()`` and ``training_histories()`` say what it chose or
  learnt, for the logs, the metrics and MLflow, so no stage needs to know a
  kind's keys.

statsmodels and Keras are imported inside the methods that need them, so that
validating params stays cheap.
"""


from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from stages.lib.forecast.specs import Spec

Intervals = dict[int, tuple[np.ndarray, np.ndarray]]


class Forecaster:
    """Base of every forecaster. Baselines are statistics of the data, so by
    default ``update`` simply recomputes them."""

    has_intervals: ClassVar[bool] = False  # predict_interval gives the model's own intervals

    def __init__(self, spec: Spec, season_length: int = 1, num_steps: int = 1) -> None:
        self.spec, self.m, self.num_steps = spec, season_length, num_steps
        self.refit_every = spec.refit_every

    def prepare(self, histories: list[np.ndarray]) -> None:
        """Told the histories it will be refitted on, before the backtest's loop: a forecaster whose fits are
        costly and independent may fit them ahead, over the cores. By default it does nothing."""

    def fit(self, history: np.ndarray) -> Forecaster:  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, history: np.ndarray) -> Forecaster:
        return self.fit(history)

    def predict(self, horizon: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def predict_interval(self, horizon: int, levels: list[int]) -> Intervals | None:
        return None

    def member_forecasts(self, horizon: int) -> dict[str, np.ndarray]:
        """Each member's own forecast of the next ``horizon`` values, by name, where ``predict`` is their median
        (several seeds); empty for a forecaster of one member."""
        return {}

    def fitted(self) -> np.ndarray:
        """In-sample one-step predictions of the last history (NaN where there are none)."""
        return np.full(len(self.history), np.nan)

    def facts(self) -> dict[str, Any]:
        """What was chosen or learnt that is worth logging (an ARIMA order, epochs run)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """The few choices worth a place beside the scores and as run tags (an ARIMA order)."""
        return {}

    def training_histories(self) -> dict[str, pd.DataFrame]:
        """Per-epoch losses of each training, by a label that says which (``fit0.seed369``: the first fit's network
        of seed 369), for forecasters that train (none by default)."""
        return {}


def as_array(history: np.ndarray) -> np.ndarray:
    return np.asarray(history, dtype=float).reshape(-1)
