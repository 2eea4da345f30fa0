"""Keras sequence-to-one models as forecasters: each owns its differencing, scaler and windows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.lib.forecast.base import Forecaster, as_array
from stages.lib.forecast.series import difference, make_windows, undifference_next
from stages.lib.forecast.specs import KerasSpec
from stages.lib.nn.models import FitParams


def resolved_fit(fit: FitParams, n_points: int) -> FitParams:
    """``batch_size: auto`` made a number: the article's batch of a fifth of the series,
    so every fit takes about five steps per epoch whatever the series' length."""
    if fit.batch_size != "auto":
        return fit
    return fit.model_copy(update={"batch_size": max(1, round(n_points / 5))})



class KerasForecaster(Forecaster):
    """A Keras sequence-to-one model made a forecaster: it owns its preprocessing.

    ``fit`` differences the history, fits the scaler on those differences only
    (max |difference| = 1, the article's normalisation without its look at the
    test period), cuts windows of ``num_steps`` (the spec's ``input_size``
    where it sets one) and trains from the seed.
    ``update`` keeps the weights but refits the scaler and the difference origin
    on the longer history, so every statistic comes from the data before the
    current origin, whether or not the network was retrained there.
    ``predict`` runs the model one step at a time on its own outputs and turns
    the predicted differences back into levels.
    """

    def __init__(self, spec: KerasSpec, season_length: int = 1, num_steps: int = 1) -> None:
        # The window is the spec's input_size where it sets one: num_steps is the pipeline's default.
        super().__init__(spec, season_length, spec.window(season_length, num_steps))
        self.model_spec = spec.model_spec()
        self.histories: list = []

    def fit(self, history: np.ndarray) -> KerasForecaster:
        from stages.lib.nn.training import seed_everything, train

        z = self._observe(history)
        X, target = make_windows(z, self.num_steps)
        seed_everything(self.spec.fit.seed or 0)
        self.model = self.model_spec.build(self.num_steps, 1)
        self.histories.append(train(self.model, X, target, resolved_fit(self.spec.fit, len(self.history))))
        return self

    def update(self, history: np.ndarray) -> KerasForecaster:
        self._observe(history)
        return self

    def _observe(self, history: np.ndarray) -> np.ndarray:
        """Take the history up to the origin and refit the scaler on it; the scaled differences."""
        self.history = as_array(history)
        z = difference(self.history, self.spec.diff_order)
        peak = np.max(np.abs(z))
        self.scale = float(peak) if peak > 0 else 1.0
        return z / self.scale

    def _step(self, windows: np.ndarray) -> np.ndarray:
        # Calling the model directly: model.predict costs tens of ms per call in set-up.
        return np.asarray(self.model(windows[..., None].astype(np.float32), training=False)).reshape(-1)

    def predict(self, horizon: int) -> np.ndarray:
        d = self.spec.diff_order
        levels = list(self.history)
        z = list(difference(self.history, d) / self.scale)
        out = []
        for _ in range(horizon):
            z_next = float(self._step(np.array([z[-self.num_steps:]]))[0])
            level = float(undifference_next(z_next * self.scale, np.array(levels), d))  # order 0: the value itself
            z.append(z_next)
            levels.append(level)
            out.append(level)
        return np.array(out)

    def fitted(self) -> np.ndarray:
        d = self.spec.diff_order
        z = difference(self.history, d) / self.scale
        X, _ = make_windows(z, self.num_steps)
        values = np.full(len(self.history), np.nan)
        if len(X):
            diffs = self._step(X[..., 0]) * self.scale
            first = self.num_steps + d  # the level the first window predicts
            past = np.stack([self.history[t - d:t] for t in range(first, len(self.history))]) if d else None
            values[first:] = undifference_next(diffs, past, d) if d else diffs
        return values

    def training_histories(self) -> list[pd.DataFrame]:
        return self.histories

    def summary(self) -> dict[str, Any]:
        return {"input_size": self.num_steps}

    def facts(self) -> dict[str, Any]:
        return {"input_size": self.num_steps, "refits": len(self.histories), "epochs_run": [len(h) for h in self.histories],
                "final_loss": [float(h["loss"].iloc[-1]) for h in self.histories]}
