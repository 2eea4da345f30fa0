"""Where a memory-training epoch's time goes, and what each speed-up buys, side by side.

    python benchmarks/epoch_profile.py profile --model lstm --seq 70     # cProfile of 3 epochs
    python benchmarks/epoch_profile.py compare --model lstm --seq 70     # variants, alternated in one process

Both use the default budget's data and fit (params.yaml: generate, train_memory.fit):
2000 training samples in batches of 64, 300 validation samples. `compare` trains
each variant for --epochs epochs from the same seed, round after round in turn
(so a busy machine slows them alike), and prints the median epoch time of each
and its ratio to the first. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from stages.lib.config import load_params  # noqa: E402
from stages.lib.memory.tasks import make_splits  # noqa: E402
from stages.lib.nn import training  # noqa: E402


class EpochTimes(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.started)

    def __init__(self):
        super().__init__()
        self.times: list[float] = []


def setup(model: str, seq: int):
    params = load_params()
    g = params.generate
    data = make_splits(g.task, seq, g.seed, {"train": g.n_train, "val": g.n_val})
    spec = params.train_memory.spec(model)
    return spec, params.train_memory.fit, data


def unrolled(spec, seq: int):
    """The stacked RNN with a fixed-length input, its recurrence unrolled into seq steps."""
    layer = spec._layer()
    inputs = keras.Input(shape=(seq, 1))
    x = inputs
    for i, units in enumerate(spec.units):
        x = layer(units, activation=spec.activation, return_sequences=i < len(spec.units) - 1, unroll=True)(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation=spec.output_activation)(x))


def seeds_in_one(spec, seq: int, seeds: int):
    """``seeds`` independent copies of the model side by side in one graph, one output each."""
    inputs = keras.Input(shape=(None, 1))
    outputs = [spec.build(seq, 1)(inputs) for _ in range(seeds)]
    return keras.Model(inputs, keras.layers.Concatenate()(outputs))


def train_once(spec, fit, data, seq: int, epochs: int, timer: EpochTimes | None = None, unroll: bool = False,
               seeds: int = 1, xla: bool = False, **compile_options):
    training.seed_everything(0)
    model = unrolled(spec, seq) if unroll else (seeds_in_one(spec, seq, seeds) if seeds > 1 else spec.build(seq, 1))
    if seeds > 1:
        data = {split: type(d)(X=d.X, y=np.repeat(d.y[:, None], seeds, axis=1)) for split, d in data.items()}
    fit = fit.model_copy(update={"max_epochs": epochs, "patience": None, "target_val_loss": None})
    callbacks = training.callbacks_for(fit, has_val=True) + ([timer] if timer else [])
    model.compile(loss="mse", optimizer=keras.optimizers.Adam(learning_rate=fit.learning_rate),
                  jit_compile=xla, **compile_options)
    model.fit(data["train"].X, data["train"].y, batch_size=fit.batch_size, epochs=epochs, verbose=0,
              validation_data=(data["val"].X, data["val"].y), callbacks=callbacks)


def profile(args) -> None:
    spec, fit, data = setup(args.model, args.seq)
    train_once(spec, fit, data, args.seq, 1)  # tracing and graph building, not an epoch's cost
    profiler = cProfile.Profile()
    profiler.enable()
    train_once(spec, fit, data, args.seq, 3)
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs().sort_stats("tottime")
    stats.print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["profile", "compare"])
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--seq", type=int, default=70)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "profile":
        profile(args)
    else:
        compare(args)


def compare(args) -> None:
    spec, fit, data = setup(args.model, args.seq)
    variants = {"as is": {}, "XLA": {"xla": True}, "steps_per_execution=32": {"steps_per_execution": 32},
                "unrolled": {"unroll": True}, "3 seeds in one model": {"seeds": 3}}
    timers = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, options in variants.items():
            timer = EpochTimes()
            train_once(spec, fit, data, args.seq, args.epochs, timer, **options)
            timers[name] += timer.times[1:]  # the first epoch includes tracing
    base = statistics.median(timers["as is"])
    for name, times in timers.items():
        print(f"{name:>20}: {statistics.median(times):.3f} s per epoch ({statistics.median(times) / base:.2f}x)")


if __name__ == "__main__":
    main()
