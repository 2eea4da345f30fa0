"""Keras sequence-to-one models as forecasters: each owns its differencing, scaler and windows.

``KerasForecaster`` is one model per series (the forecaster interface of every
kind); ``GlobalKerasForecaster`` is one model trained across every series of a
panel, each series scaled by its own history, as global models compete on
collections (neuralforecast, N-BEATS).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.lib.forecast.base import Forecaster, as_array
from stages.lib.forecast.series import difference, make_windows, undifference_next
from stages.lib.forecast.specs import KerasSpec
from stages.lib.infra import interrupts
from stages.lib.nn.models import FitParams


def resolved_fit(fit: FitParams, n_points: int) -> FitParams:
    """``batch_size: auto`` made a number: the article's batch of a fifth of the series,
    so every fit takes about five steps per epoch whatever the series' length."""
    if fit.batch_size != "auto":
        return fit
    return fit.model_copy(update={"batch_size": max(1, round(n_points / 5))})


def held_windows(windows: int, share: float) -> int:
    """How many of a history's ``windows``, at its end, validate: ``share`` of them rounded up, at least one, and
    never all (a window must be left to train on); none where there are fewer than 3."""
    return min(max(1, int(np.ceil(share * windows))), windows - 1) if windows > 2 else 0


def peak_scale(z: np.ndarray) -> float:
    """The article's normalisation: the largest absolute difference (1 where every difference is 0)."""
    peak = float(np.max(np.abs(z))) if len(z) else 0.0
    return peak if peak > 0 else 1.0


def scaled_differences(history: np.ndarray, order: int) -> tuple[np.ndarray, float]:
    """The history's ``order``-th differences divided by their largest absolute value (the article's
    normalisation, from the history alone), and that scale."""
    z = difference(history, order)
    scale = peak_scale(z)
    return z / scale, scale


class KerasForecaster(Forecaster):
    """A Keras sequence-to-one model made a forecaster: it owns its preprocessing.

    ``fit`` differences the history, fits the scaler on those differences only
    (max |difference| = 1, the article's normalisation without its look at the
    test period), cuts windows of ``num_steps`` (the spec's ``input_size``
    where it sets one) and trains one network per seed (``seeds``; ``fit.seed``
    alone by default). With ``fit.patience`` the last ``validation`` share of
    the windows (the end of the history) validates: training stops once their
    loss has not improved for that many epochs and the best weights are kept.
    With ``refit`` that validation fit only chooses the number of epochs (its
    scaler from the windows before validation): a fresh network from the same
    seed then trains that long on every window, validation's included, with the
    scaler of the whole history, so the end of the history is learnt from too.
    ``update`` takes the longer history as the input of the next forecasts and
    keeps both the weights and the scaler as they were fitted: the network sees
    inputs scaled as in its training (a scaler refitted without the weights
    would rescale what it learnt).
    ``predict`` runs each network one step at a time on its own outputs, turns
    the predicted differences back into levels and, with several seeds, takes
    the median of their forecasts at every step ahead; ``member_forecasts``
    gives each seed's forecast alone (``seed<s>``), for its spread.
    """

    def __init__(self, spec: KerasSpec, season_length: int = 1, num_steps: int = 1) -> None:
        # The window is the spec's input_size where it sets one: num_steps is the pipeline's default.
        super().__init__(spec, season_length, spec.window(season_length, num_steps))
        self.model_spec = spec.model_spec()
        self.histories: dict[str, pd.DataFrame] = {}  # per-epoch losses by fit, seed and phase
        self.fits = 0
        self.paths: dict[int, np.ndarray] = {}  # each network's forecast by horizon, until the next fit or update
        self.verbose: int | None = None  # Keras' progress lines; 0 where thousands of series would flood the log

    def fit(self, history: np.ndarray) -> KerasForecaster:
        from stages.lib.nn.training import best_epoch

        self.history, self.paths = as_array(history), {}
        z = difference(self.history, self.spec.diff_order)
        self.scale = peak_scale(z)
        fit = resolved_fit(self.spec.fit, len(self.history))
        held = held_windows(len(z) - self.num_steps, self.spec.validation) if fit.patience else 0
        self.models = []
        for seed in self.spec.seed_list():
            label = f"fit{self.fits}.seed{seed}"
            if self.spec.refit and held:
                # The validation fit neither trains on the validation windows nor scales by them (the windows
                # before them end at z[len(z) - held - 1]); it only chooses how many epochs the refit trains.
                _, chosen = self._train(seed, z, peak_scale(z[:len(z) - held]), held, fit)
                self.histories[f"{label}.validation"] = chosen
                # The same epochs over all the windows, so about 1 / (1 - validation) as many steps: the choice
                # of Keras' usual retrain-for-the-best-epoch (the direct panel models fix the batches instead).
                model, trained = self._train(seed, z, self.scale, 0,
                                             fit.model_copy(update={"max_epochs": best_epoch(chosen)}))
                label += ".refit"
            else:
                model, trained = self._train(seed, z, self.scale, held, fit)
            self.histories[label] = trained
            self.models.append(model)
        self.fits += 1
        self.model = self.models[0]
        return self

    def _train(self, seed: int, z: np.ndarray, scale: float, held: int, fit: FitParams):
        """A fresh network from ``seed`` on the windows of ``z / scale``, the last ``held`` of them validating
        (none: no early stopping); the network and its per-epoch history."""
        from stages.lib.nn.training import seed_everything, train

        X, target = make_windows(z / scale, self.num_steps)
        val = (X[len(X) - held:], target[len(X) - held:]) if held else None
        seed_everything(seed)
        model = self.model_spec.build(self.num_steps, 1)
        history = train(model, X[:len(X) - held], target[:len(X) - held], fit, val=val, verbose=self.verbose)
        return model, history

    def update(self, history: np.ndarray) -> KerasForecaster:
        self.history, self.paths = as_array(history), {}  # the scaler stays as fitted, with the weights
        return self

    def _step(self, windows: np.ndarray, model=None) -> np.ndarray:
        # Calling the model directly: model.predict costs tens of ms per call in set-up.
        model = self.model if model is None else model
        return np.asarray(model(windows[..., None].astype(np.float32), training=False)).reshape(-1)

    def _path(self, model, horizon: int) -> np.ndarray:
        """One network's recursive forecast of the next ``horizon`` levels."""
        d = self.spec.diff_order
        levels = list(self.history)
        z = list(difference(self.history, d) / self.scale)
        out = []
        for _ in range(horizon):
            z_next = float(self._step(np.array([z[-self.num_steps:]]), model)[0])
            level = float(undifference_next(z_next * self.scale, np.array(levels), d))  # order 0: the value itself
            z.append(z_next)
            levels.append(level)
            out.append(level)
        return np.array(out)

    def _paths(self, horizon: int) -> np.ndarray:
        """Every network's forecast, one row each, computed once per history for predict and member_forecasts."""
        if horizon not in self.paths:
            self.paths[horizon] = np.stack([self._path(model, horizon) for model in self.models])
        return self.paths[horizon]

    def predict(self, horizon: int) -> np.ndarray:
        return np.median(self._paths(horizon), axis=0)

    def member_forecasts(self, horizon: int) -> dict[str, np.ndarray]:
        if len(self.models) < 2:
            return {}
        return {f"seed{seed}": path for seed, path in zip(self.spec.seed_list(), self._paths(horizon))}

    def fitted(self) -> np.ndarray:
        d = self.spec.diff_order
        z = difference(self.history, d) / self.scale
        X, _ = make_windows(z, self.num_steps)
        values = np.full(len(self.history), np.nan)
        if len(X):
            diffs = np.median(np.stack([self._step(X[..., 0], model) for model in self.models]), axis=0) * self.scale
            first = self.num_steps + d  # the level the first window predicts
            past = np.stack([self.history[t - d:t] for t in range(first, len(self.history))]) if d else None
            values[first:] = undifference_next(diffs, past, d) if d else diffs
        return values

    def training_histories(self) -> dict[str, pd.DataFrame]:
        return self.histories

    def summary(self) -> dict[str, Any]:
        return {"input_size": self.num_steps}

    def facts(self) -> dict[str, Any]:
        return {"input_size": self.num_steps, "refits": self.fits, "seeds": len(self.models),
                "epochs_run": {label: len(h) for label, h in self.histories.items()},
                "final_loss": {label: float(h["loss"].iloc[-1]) for label, h in self.histories.items()}}


class GlobalKerasForecaster:
    """One Keras model trained across every series of a panel: a global model.

    ``fit(histories)`` differences each series and scales it by the largest
    absolute difference of its own history (as ``KerasForecaster`` does for one),
    cuts windows of ``num_steps`` from every series and trains one model on all
    of them from the seed, so a series of sales in millions and one of rates
    near 1 teach the same network. With ``fit.patience`` the last window of each
    series is held out for validation: training stops once its loss has not
    improved for that many epochs and keeps the best weights.
    ``predict(horizon)`` runs the model one step at a time on its own outputs,
    every series in one batch, and scales each series' forecast back.
    """

    def __init__(self, spec: KerasSpec, season_length: int = 1, num_steps: int = 1) -> None:
        self.spec, self.m = spec, season_length
        self.num_steps = spec.window(season_length, num_steps)
        self.model_spec = spec.model_spec()
        self.histories: dict[str, pd.DataFrame] = {}

    def fit(self, histories: list[np.ndarray]) -> GlobalKerasForecaster:
        from stages.lib.nn.training import seed_everything, train

        self.levels = [as_array(h) for h in histories]
        scaled = [scaled_differences(h, self.spec.diff_order) for h in self.levels]
        self.z = [z for z, _ in scaled]
        self.scales = np.array([scale for _, scale in scaled])
        windows = [make_windows(z, self.num_steps) for z in self.z]
        hold = 1 if self.spec.fit.patience else 0  # each series' last window validates
        X = np.concatenate([x[:len(x) - hold] for x, _ in windows])
        target = np.concatenate([t[:len(t) - hold] for _, t in windows])
        val = (np.concatenate([x[-1:] for x, _ in windows]), np.concatenate([t[-1:] for _, t in windows])) \
            if hold else None
        seed_everything(self.spec.fit.seed or 0)
        self.model = self.model_spec.build(self.num_steps, 1)
        self.histories["fit0"] = train(self.model, X, target, self.spec.fit, val=val)
        self.windows = len(X)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        """Each series' next ``horizon`` levels, one row per series."""
        d = self.spec.diff_order
        z = np.stack([zs[-self.num_steps:] for zs in self.z]).astype(np.float32)
        past = np.stack([h[len(h) - d:] for h in self.levels]) if d else None
        out = np.empty((len(self.levels), horizon))
        for k in range(horizon):
            interrupts.check()
            z_next = np.asarray(self.model(z[..., None], training=False)).reshape(-1)
            diffs = z_next.astype(float) * self.scales
            out[:, k] = undifference_next(diffs, past, d) if d else diffs
            z = np.concatenate([z[:, 1:], z_next[:, None]], axis=1)
            if d:
                past = np.concatenate([past[:, 1:], out[:, k:k + 1]], axis=1)
        return out

    def training_histories(self) -> dict[str, pd.DataFrame]:
        return self.histories

    def facts(self) -> dict[str, Any]:
        history = self.histories["fit0"]
        return {"input_size": self.num_steps, "series": len(self.levels), "windows": self.windows,
                "epochs_run": len(history), "final_loss": float(history["loss"].iloc[-1]),
                **({"best_val_loss": float(history["val_loss"].min())} if "val_loss" in history else {})}
