"""Global models with direct multi-horizon output, trained as N-BEATS is (Oreshkin et al. 2020, section 3 and
appendix): one network across every series of a panel, mapping a look-back window to all ``horizon`` future
values at once (the MIMO strategy), ensembles of such networks, and their median.

The protocol of one member, on the histories the stage gives it (the test points never reach it):

1. **Validation**: each series' last ``horizon`` points are held out. The member trains on windows drawn
   from what precedes them and is scored on them multi-step, as the test is, after every epoch of
   ``batches_per_epoch`` batches; training stops after ``fit.patience`` epochs without improvement and the
   best epoch count is kept. A series too short to hold out a horizon and still give a window
   (fewer than 2 horizons + 1 points) is not validated on; it trains in step 2.
2. **Refit** (``refit: true``, the default): the same seed trains a fresh network on every window, validation
   points included, for the number of epochs validation chose. That is a second training; without it, the
   last ``horizon`` points of every series would never be learnt from (docs/panels.md gives the cost).

Windows are drawn as N-BEATS draws them: a series uniformly, then a forecast origin uniformly among the last
``history_limit`` horizons of that series (N-BEATS' L_H; null: anywhere). A window shorter than the
look-back is padded on the left with the series' first value. Each window is divided by the mean absolute
value of its own inputs (so no statistic of a target or of a later point reaches its input), and the forecast
is multiplied back. Every number comes from the seed: windows are drawn from (seed, epoch, batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from stages.lib.forecast.specs import MemberConfig
from stages.lib.infra import interrupts

LOSSES = ("mse", "smape", "mape", "mase")


# ------------------------------------------------------------------ windows

def mase_denominators(histories: list[np.ndarray], season_length: int) -> np.ndarray:
    """Each series' in-sample mean absolute error of the seasonal naive forecast (naive where there is no
    season or the history is not longer than one season): the MASE scale, as scoring.naive_scale takes it. A flat history's 0 becomes the mean
    absolute level (1 if that is 0 too), so its windows still count in a MASE loss."""
    out = []
    for y in histories:
        m = season_length if len(y) > season_length else 1
        d = float(np.mean(np.abs(y[m:] - y[:-m]))) if len(y) > m else 0.0
        out.append(d if d > 0 else (float(np.mean(np.abs(y))) or 1.0))
    return np.array(out)


def window_scales(inputs: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The mean absolute value of each window's real (not padded) inputs; 1 where it is 0."""
    sums = np.where(real, np.abs(inputs), 0.0).sum(axis=1)
    scale = sums / np.maximum(real.sum(axis=1), 1)
    return np.where(scale > 0, scale, 1.0)


@dataclass
class WindowPool:
    """The windows of a set of series: look-back ``lookback`` values before an origin, ``horizon`` after it.

    ``draw(n, rng)`` samples n training windows (N-BEATS' sampling, module docstring) as Keras wants them:
    scaled inputs (n, lookback, 1), scaled targets (n, horizon), and sample weights (1, or for a MASE loss
    the window's scale over its series' MASE denominator, so the weighted absolute error is the MASE).
    """

    series: list[np.ndarray]
    lookback: int
    horizon: int
    history_limit: float | None = None
    mase_scale: np.ndarray | None = None  # per series; None: every weight is 1

    def __post_init__(self) -> None:
        L, H = self.lookback, self.horizon
        lengths = np.array([len(y) for y in self.series])
        # Origins c (points before the forecast): at least one real input, all H targets real.
        self.hi = lengths - H
        self.lo = np.ones_like(self.hi)
        if self.history_limit is not None:
            self.lo = np.maximum(1, self.hi - int(np.ceil(self.history_limit * H)) + 1)
        self.trainable = np.flatnonzero(self.hi >= 1)
        # One flat array: each series preceded by L copies of its first value (the padding) and a NaN-free
        # gather of any window by offset arithmetic.
        padded = [np.concatenate([np.full(L, y[0]), y]) for y in self.series]
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in padded])[:-1]])
        self.flat = np.concatenate(padded)
        self.lengths = lengths

    def windows(self, idx: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Raw inputs (n, L), targets (n, H) (NaN past a series' end), which inputs are real, per window."""
        L, H = self.lookback, self.horizon
        start = self.offsets[idx] + origins  # padded position of the window's first input
        inputs = self.flat[start[:, None] + np.arange(L)]
        real = (origins[:, None] - L + np.arange(L)) >= 0
        ends = np.minimum(start[:, None] + L + np.arange(H), len(self.flat) - 1)
        past_end = (origins[:, None] + np.arange(H)) >= self.lengths[idx][:, None]
        targets = np.where(past_end, np.nan, self.flat[ends])
        return inputs, targets, real, start

    def scaled(self, idx: np.ndarray, origins: np.ndarray):
        inputs, targets, real, _ = self.windows(idx, origins)
        scale = window_scales(inputs, real)
        weights = np.ones(len(idx)) if self.mase_scale is None else scale / self.mase_scale[idx]
        return ((inputs / scale[:, None])[..., None].astype(np.float32), (targets / scale[:, None]).astype(np.float32),
                weights.astype(np.float32), scale)

    def draw(self, n: int, rng: np.random.Generator):
        idx = self.trainable[rng.integers(0, len(self.trainable), n)]
        origins = self.lo[idx] + np.floor(rng.random(n) * (self.hi[idx] - self.lo[idx] + 1)).astype(int)
        X, y, w, _ = self.scaled(idx, origins)
        return X, y, w

    def last(self) -> tuple[np.ndarray, np.ndarray]:
        """Every series' window at its end (the forecast's input), scaled, and the scales."""
        idx = np.arange(len(self.series))
        X, _, _, scale = self.scaled(idx, self.lengths)
        return X, scale


def validation_split(histories: list[np.ndarray], horizon: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The training parts (each history without its last ``horizon`` points), the series that can be
    validated on (a window of their training part exists), and those series' held-out points (n, horizon)."""
    parts = [h[:-horizon] for h in histories]
    ok = np.array([len(p) >= horizon + 1 for p in parts])
    held = np.stack([h[-horizon:] for h, keep in zip(histories, ok) if keep]) if ok.any() else np.empty((0, horizon))
    return parts, np.flatnonzero(ok), held


# ------------------------------------------------------------------ losses

def keras_loss(name: str) -> Callable:
    """The training loss on scaled windows. sMAPE and MAPE are scale-free, so the window scale does not change
    them; MASE is a weighted absolute error (WindowPool's weights); MSE is on the scaled values."""
    from keras import ops

    def mse(y, p):
        return ops.mean(ops.square(y - p), axis=-1)

    def smape(y, p):
        return 200.0 * ops.mean(ops.abs(y - p) / ops.maximum(ops.abs(y) + ops.abs(p), 1e-8), axis=-1)

    def mape(y, p):
        return 100.0 * ops.mean(ops.abs(y - p) / ops.maximum(ops.abs(y), 1e-8), axis=-1)

    def mase(y, p):
        return ops.mean(ops.abs(y - p), axis=-1)

    if name not in LOSSES:
        raise ValueError(f"loss: {name!r} is not one of {', '.join(LOSSES)}")
    return {"mse": mse, "smape": smape, "mape": mape, "mase": mase}[name]


# ------------------------------------------------------------------ members and the ensemble

@dataclass
class Member:
    config: MemberConfig
    forecast: np.ndarray              # (series, horizon), on the original scale
    epochs: int                       # chosen by validation (the refit's length)
    best_val_loss: float | None
    cpu_s: float
    histories: list[pd.DataFrame] = field(default_factory=list)  # validation fit, then the refit
    # The validation fit's forecast of each validated series' last horizon (its best epoch's weights): the
    # series (indices into the histories) and their forecasts (n, horizon). A panel's intervals are calibrated
    # on them (stages/lib/panel/intervals.py, calibration_from_validation).
    validated: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))
    val_forecast: np.ndarray | None = None


def median_ensemble(forecasts: list[np.ndarray]) -> np.ndarray:
    """The ensemble forecast: the median of its members' forecasts at every series and step (N-BEATS)."""
    return np.median(np.stack(forecasts), axis=0)


STARTS = ("mean", "last")


def from_the_window(network, start: str = "mean"):
    """The network's output plus a level read off the look-back: the forecast starts from it, and the network
    learns the departure. ``mean``: the look-back's mean level (1 in scaled units, a window being divided by
    its mean absolute value). ``last``: the look-back's last value, as the official N-BEATS starts its
    forecast sum (``forecast = x[:, -1:]``), the naive forecast that a trending series is closer to.

    Without a start, the outputs begin near 0 and about half of them negative, where sMAPE and MAPE are flat (a
    forecast of the wrong sign scores 200 whatever its size) and their gradient is 0: measured on M3 monthly,
    two of the 18 steps of N-BEATS-G stayed negative for every series, a validation sMAPE of 35.6.
    """
    import keras

    if start not in STARTS:
        raise ValueError(f"start: {start!r} is not one of {', '.join(STARTS)}")
    inputs = keras.Input(shape=network.input_shape[1:])
    if start == "mean":
        return keras.Model(inputs, keras.layers.Rescaling(1.0, offset=1.0)(network(inputs)))
    last = inputs[:, -1, :]  # (n, 1), by index: a recurrent network's input has no fixed length to crop by
    return keras.Model(inputs, keras.ops.add(network(inputs), last))


def fit_member(config: MemberConfig, histories: list[np.ndarray], *, horizon: int, season_length: int,
               build: Callable[[int, int], object], fit, batches_per_epoch: int, history_limit: float | None,
               refit: bool, start: str = "mean", verbose: int = 0) -> Member:
    """Train one member by the protocol of the module docstring and forecast every series."""
    from stages.lib.nn.training import FreshBatches, best_epoch, seed_everything, train

    started = time.process_time()
    loss = keras_loss(config.loss)
    use_mase = config.loss == "mase"

    def pool(series: list[np.ndarray]) -> WindowPool:
        return WindowPool(series, config.lookback, horizon, history_limit,
                          mase_denominators(series, season_length) if use_mase else None)

    parts, validated, held = validation_split(histories, horizon)
    train_pool = pool(parts)
    histories_out, epochs, best, val_forecast = [], fit.max_epochs, None, None
    if len(validated) and len(train_pool.trainable):
        val_pool = pool([parts[i] for i in validated])
        X_val, scale = val_pool.last()
        w_val = (scale / val_pool.mase_scale if use_mase else np.ones(len(scale))).astype(np.float32)
        val = (X_val, (held / scale[:, None]).astype(np.float32), w_val)
        seed_everything(config.seed)
        model = from_the_window(build(config.lookback, horizon), start)
        stream = FreshBatches(train_pool.draw, batches_per_epoch, fit.batch_size, seed=(config.seed,))
        history = train(model, stream, None, fit, val=val, verbose=verbose, loss=loss)
        histories_out.append(history)
        epochs = best_epoch(history)
        best = float(history["val_loss"].min())
        val_forecast = np.asarray(model(X_val, training=False), dtype=float) * scale[:, None]  # best weights
    if refit or best is None:
        interrupts.check()
        full_pool = pool(histories)
        seed_everything(config.seed)
        model = from_the_window(build(config.lookback, horizon), start)
        stream = FreshBatches(full_pool.draw, batches_per_epoch, fit.batch_size, seed=(config.seed,))
        histories_out.append(train(model, stream, None, fit.model_copy(update={"max_epochs": epochs}),
                                   verbose=verbose, loss=loss))
    X, scale = pool(histories).last()
    forecast = np.asarray(model(X, training=False), dtype=float) * scale[:, None]
    return Member(config, forecast, epochs, best, time.process_time() - started, histories_out,
                  validated if val_forecast is not None else np.empty(0, dtype=int), val_forecast)


def fit_entry_member(spec, config: MemberConfig, histories: list[np.ndarray], *, horizon: int, season_length: int,
                     refit: bool | None = None, verbose: int = 0) -> Member:
    """Member ``config`` of a ``panel_models:`` entry (a PanelKerasSpec), trained by the entry's own settings
    (``refit``: the entry's unless given). The stage and the benchmarks call this, so a new setting of the
    entry reaches them all from here."""
    arch = spec.model_spec()
    return fit_member(config, histories, horizon=horizon, season_length=season_length,
                      build=lambda steps, outputs: arch.build(steps, 1, outputs), fit=spec.fit,
                      batches_per_epoch=spec.batches_per_epoch, history_limit=spec.history_limit,
                      refit=spec.refit if refit is None else refit, start=spec.start, verbose=verbose)


def fit_ensemble(spec, histories: list[np.ndarray], *, horizon: int, season_length: int, num_steps: int,
                 on_member: Callable[[int, Member], None] | None = None, verbose: int = 0) -> list[Member]:
    """Every member of a ``panel_models:`` entry with ``output: direct``, trained one after another;
    ``on_member(i, member)`` after each (its MLflow child run, a log line)."""
    members = []
    for i, config in enumerate(spec.members(horizon, season_length, num_steps)):
        interrupts.check()
        member = fit_entry_member(spec, config, histories, horizon=horizon, season_length=season_length,
                                  verbose=verbose)
        members.append(member)
        if on_member is not None:
            on_member(i, member)
    return members
