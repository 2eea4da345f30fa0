"""One training function for every Keras model on any (X, y)."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pandas as pd

from stages.lib.infra import interrupts
from stages.lib.nn.models import FitParams


def seed_everything(seed: int) -> None:
    """Forget the networks built before, seed Python, numpy and TensorFlow, and make TensorFlow's ops
    deterministic.

    Keras names each layer from a process-wide counter (dense, dense_1, ...), and the names order the
    training graph's ops: an N-BEATS trained first in a process lost 1e-7 of its first epoch's loss against
    the same seed trained second, 6e-4 of its forecasts after 3 epochs (measured; an LSTM's did not move).
    ``clear_session`` restarts the counter, so a network's numbers no longer depend on what its process
    built before it: a resumed benchmark, a Dask worker's second series, a backtest's tenth refit."""
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    keras_draws_privately(seed)


def keras_draws_privately(seed: int) -> None:
    """Give Keras' draws from Python's ``random`` a generator of their own, seeded as the global one just was.

    Keras draws each layer's initializer seed (and a PyDataset's shuffle) from Python's global ``random``, which
    every thread of a process shares. On a Dask worker the event loop's thread draws from it while a task
    trains, so the same seed built other weights on the cluster than here (measured: a per-series LSTM's
    forecasts moved by up to 1.0 on a level of 100, on whichever series a worker ran second). With one
    generator of Keras' own, started from the same seed, the draws are those of a process with no other
    thread: the numbers of a local run stay as they were. Keras has no public hook for this, so the two
    modules' ``random`` is replaced (keras is pinned; tests/test_models.py checks that it still takes)."""
    import random

    from keras.src.random import seed_generator
    from keras.src.trainers.data_adapters import py_dataset_adapter

    generator = random.Random(seed)
    seed_generator.python_random = generator
    py_dataset_adapter.random = generator


class StopAtTarget(keras.callbacks.Callback):
    """Stop once the validation loss reaches a target: the task is solved."""

    def __init__(self, target: float) -> None:
        super().__init__()
        self.target = target

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs and logs.get("val_loss", np.inf) <= self.target:
            self.model.stop_training = True


class StopOnSignal(keras.callbacks.Callback):
    """Stop at the next batch once Ctrl-C or SIGTERM came: ``train`` defers the signal's exception to here."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        interrupts.check()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        interrupts.check()


class FreshBatches(keras.utils.PyDataset):
    """New training samples every epoch, as the article draws them, reproducible from a seed.

    ``draw(n, rng)`` returns n samples (X, y). Batch ``i`` of epoch ``e`` is drawn
    from the generator seeded with (*seed, e, i), so the stream does not depend on
    the order in which Keras asks for the batches.
    """

    def __init__(self, draw, batches: int, batch_size: int, seed: tuple[int, ...]) -> None:
        super().__init__()
        self.draw, self.batches, self.batch_size, self.seed = draw, batches, batch_size, seed
        self.epoch = 0  # Keras peeks at a batch before the first epoch begins

    def __len__(self) -> int:
        return self.batches

    def on_epoch_begin(self) -> None:
        self.epoch += 1

    def __getitem__(self, index: int):
        return self.draw(self.batch_size, np.random.default_rng([*self.seed, self.epoch, index]))


def best_epoch(history: pd.DataFrame) -> int:
    """The epoch of the lowest validation loss (1-based, its ``epoch`` column; the first of a tie): how long a
    refit on every window trains."""
    return int(history.loc[history["val_loss"].idxmin(), "epoch"])


def step_decay(base: float, every: int, factor: float):
    """Learning rate divided by 1/factor every ``every`` epochs (the article's schedule)."""
    return lambda epoch: base * factor ** (epoch // every)


def callbacks_for(fit: FitParams, has_val: bool) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [StopOnSignal()]
    if has_val:
        # Always keep the best validation checkpoint (the article's recipe);
        # without a patience this only restores the best weights at the end.
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=fit.patience or fit.max_epochs + 1, restore_best_weights=True,
        ))
        if fit.target_val_loss is not None:
            callbacks.append(StopAtTarget(fit.target_val_loss))
    if fit.lr_decay_every is not None:
        schedule = step_decay(fit.learning_rate, fit.lr_decay_every, fit.lr_decay_factor)
        callbacks.append(keras.callbacks.LearningRateScheduler(schedule))
    return callbacks


def train(model: keras.Model, X: np.ndarray | FreshBatches, y: np.ndarray | None, fit: FitParams,
          val: tuple[np.ndarray, ...] | None = None, verbose: int | None = None,
          xla: bool = False, loss="mse", callbacks: list[keras.callbacks.Callback] = ()) -> pd.DataFrame:
    """Compile with ``loss`` (MSE unless given: a Keras loss name or function) and Adam, train, and return the
    per-epoch history.

    ``xla`` compiles the training step with XLA (the spec's ``xla``); Keras falls
    back to plain TensorFlow, with a warning, for a layer XLA cannot compile
    (``model.jit_compile`` says which ran). Keras refuses XLA under TensorFlow's op
    determinism, so it is turned off here; the next ``seed_everything`` turns it on
    again. XLA's compiled CPU code gives the same weights run after run and with
    one or two threads (tests/test_models.py checks the first).

    ``X`` is a fixed training set with targets ``y``, or a FreshBatches stream
    (``y`` None; its batches may carry sample weights, as may ``val``). Progress: Keras' bar on a terminal, one line per epoch
    otherwise (DVC logs), or ``verbose`` (Keras' 0, 1 or 2) where given. ``callbacks`` run after the training's
    own (a benchmark's clock).
    """
    if xla:
        # Only the enabling half is public; Keras reads the setting from this module too.
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    optimizer = keras.optimizers.Adam(learning_rate=fit.learning_rate, clipnorm=fit.clipnorm)
    model.compile(loss=loss, optimizer=optimizer, jit_compile=xla)
    stream = isinstance(X, keras.utils.PyDataset)
    # Ctrl-C stops it at the next batch's StopOnSignal, not wherever TensorFlow's Python happens to be
    # (stages/lib/infra/interrupts.py: raised there, it once aborted the process before its MLflow run ended).
    with interrupts.deferred():
        history = model.fit(
            X, y, batch_size=None if stream else fit.batch_size, epochs=fit.max_epochs, validation_data=val,
            shuffle=True, callbacks=[*callbacks_for(fit, has_val=val is not None), *callbacks],
            verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose,
        )
    frame = pd.DataFrame(history.history).drop(columns=["learning_rate"], errors="ignore")
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame


def predictor(model: keras.Model, batch_size: int = 1024):
    """A plain numpy function of the model, for the probes: the forward pass traced once for any number of
    rows. ``model.predict`` builds its data pipeline on every call: 0.18 s a call, and the memory probes
    make 30 calls (5 s of evaluate_memory's 13 s)."""
    import tensorflow as tf

    # Compiled as model.predict compiles it (with XLA where the model was trained with it): the same numbers.
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                          jit_compile=bool(getattr(model, "jit_compile", False)))

    def predict(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)  # the input dtype model.predict would convert to
        parts = [np.asarray(forward(tf.constant(X[i:i + batch_size]))) for i in range(0, len(X), batch_size)]
        return np.concatenate(parts).reshape(-1)

    return predict
