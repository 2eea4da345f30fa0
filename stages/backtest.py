"""Stages baselines@<dataset>, statistical@<dataset> and backtest@<dataset>: rolling-origin
forecasts on one dataset.

``--forecaster NAME`` backtests one forecaster of ``forecasters:`` into ``--out``;
``--group baselines`` (or ``statistical``) backtests every forecaster of that
section into ``--out/<name>`` (in one process: each fits in milliseconds to
seconds, while a stage's start-up takes seconds); ``--group forecasters``
backtests every forecaster of ``forecasters:`` that runs on the dataset into
``--out/<name>``, each as its own ``--forecaster`` process, as many at once as
there are cores (stages/lib/infra/parallel.py: a Keras backtest keeps one core
busy for tens of seconds).
A forecaster's folder holds:

- ``forecasts.csv``: one row per origin and step ahead (``h``), with the actual
  value, the forecast and its intervals (the forecaster's own, or empirical from
  the errors of earlier origins), whether the origin calibrates or evaluates, and,
  for a median of several seeds, each seed's own forecast (``member_seed<s>``);
- ``fitted.csv``: in-sample one-step fit of the last history the forecaster was fitted to;
- ``facts.json``: what the forecaster chose or learnt (an ARIMA order, epochs run).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.config import load_params
from stages.lib.errors import ParamsError
from stages.lib.forecast import registry
from stages.lib.forecast.backtest import check_lengths, empirical_intervals, origins, run_backtest
from stages.lib.forecast.base import Forecaster
from stages.lib.infra import cli
from stages.lib.infra.io import atomic_dir, write_csv, write_json
from stages.lib.infra.parallel import Member, run_members
from stages.lib.infra.tracking import StageRun, UntrackedRun, stage_run


def backtest_into(folder: Path, forecaster: Forecaster, series: pd.DataFrame, origin_list: list[int],
                  calibration_windows: int, horizon: int, levels: list[int],
                  progress: Callable[[str], None]) -> tuple[dict[str, Any], float]:
    """Backtest one forecaster and write its three files; its facts and the seconds it took."""
    y = series["value"].to_numpy(dtype=float)
    evaluation = set(origin_list[calibration_windows:])
    started = time.perf_counter()
    frame = run_backtest(forecaster, y, origin_list, horizon, levels, progress=progress)
    elapsed = time.perf_counter() - started
    own = forecaster.has_intervals
    frame = empirical_intervals(frame, levels)
    frame.insert(0, "time", series["time"].to_numpy()[frame["index"]])
    frame.insert(1, "window", np.where(frame["origin"].isin(evaluation), "evaluation", "calibration"))
    frame["interval"] = "model" if own else "empirical"
    write_csv(folder / "forecasts.csv", frame, digits=None)
    fitted = forecaster.fitted()
    write_csv(folder / "fitted.csv", pd.DataFrame({"time": series["time"].to_numpy()[:len(fitted)], "fitted": fitted}),
              digits=None)
    facts = {"origins": origin_list, "interval": "model" if own else "empirical", **forecaster.facts(),
             "summary": forecaster.summary()}
    write_json(folder / "facts.json", facts)
    return facts, elapsed


def log_backtest(run: StageRun | UntrackedRun, folder: Path, forecaster: Forecaster, facts: dict[str, Any],
                 elapsed: float, prefix: str = "", artifacts: str | None = None) -> None:
    # Timings go to MLflow only: committed files stay byte-identical across reruns.
    run.log_metrics({"backtest_time_s": elapsed, "origins": len(facts["origins"])}, prefix=prefix)
    for label, history in forecaster.training_histories().items():
        run.log_history(history, prefix=f"{prefix}{label}.")
    run.set_tags({f"{prefix}{k}": v for k, v in facts["summary"].items()})
    for path in sorted(folder.iterdir()):
        run.log_artifact(path, folder=artifacts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key under datasets: in params.yaml")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--forecaster", help="a key under forecasters: in params.yaml")
    which.add_argument("--group", choices=["baselines", "statistical", "forecasters"],
                       help="every forecaster of that section of params.yaml, in one stage")
    parser.add_argument("--series", type=Path, required=True, help="CSV written by ingest")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for forecasts.csv, fitted.csv, facts.json (with --group: one such folder per forecaster)")
    args = parser.parse_args(argv)

    params = load_params()
    ds, bt = params.dataset(args.dataset), params.backtest_for(args.dataset)
    specs = params.group(args.group) if args.group else {args.forecaster: params.forecaster(args.forecaster)}
    specs = {name: spec for name, spec in specs.items() if spec.runs_on(args.dataset)}
    if not args.group and not specs:
        # backtest@<dataset> starts only the forecasters that run on it: this is a hand-typed command.
        raise ParamsError(f"params.yaml: forecasters.{args.forecaster}.datasets does not list {args.dataset!r}")
    series = pd.read_csv(args.series, dtype={"time": str}, float_precision="round_trip")
    if specs:
        check_lengths(len(series), ds.file, bt, specs, ds.season_length, params.num_steps)
    if args.group == "forecasters":
        # In the order of forecasters: in params.yaml; those its `datasets` leave out get no folder.
        with atomic_dir(args.out) as out:
            run_members([Member(f"backtest@{args.dataset}-{name}",
                                ["-m", "stages.backtest", "--dataset", args.dataset, "--forecaster", name,
                                 "--series", str(args.series), "--out", str(out / name)]) for name in specs])
        return
    origin_list = origins(len(series), bt.horizon, bt.n_windows, bt.step_size, bt.calibration_windows)

    stage = f"{args.group}@{args.dataset}" if args.group else f"backtest@{args.dataset}-{args.forecaster}"
    kind = {"baselines": "baseline", "statistical": "statistical"}[args.group] if args.group \
        else specs[args.forecaster].kind
    if args.group:
        described = {"forecasters": list(specs), **{f"spec.{name}": spec.model_dump() for name, spec in specs.items()}}
    else:
        described = {"forecaster": args.forecaster, "spec": specs[args.forecaster].model_dump()}
    run_params = {"dataset": args.dataset, "season_length": ds.season_length, "num_steps": params.num_steps,
                  "backtest": bt.model_dump(), **described}
    tags = {"dataset": args.dataset, "forecaster": ",".join(specs), "kind": kind}
    with stage_run("forecast", stage, run_params, inputs=[args.series], tags=tags) as run, \
            atomic_dir(args.out) as out:
        for name, spec in specs.items():
            forecaster = registry.build(spec, ds.season_length, params.num_steps)
            # Several forecasters in one stage: a subfolder, a metric prefix and an artifact folder each.
            label, folder, prefix, artifacts = (f"{stage}: {name}", out / name, f"{name}.", name) if args.group \
                else (stage, out, "", None)
            print(f"{label}: {len(origin_list)} origins ({bt.calibration_windows} calibration, {bt.n_windows} "
                  f"evaluation), horizon {bt.horizon}, refit every {forecaster.refit_every}")
            folder.mkdir(exist_ok=True)
            facts, elapsed = backtest_into(folder, forecaster, series, origin_list, bt.calibration_windows,
                                           bt.horizon, bt.levels, progress=lambda msg: print(f"{label}: {msg}"))
            log_backtest(run, folder, forecaster, facts, elapsed, prefix, artifacts)
            chosen = "".join(f", {k}={v}" for k, v in facts["summary"].items())
            print(f"{label}: done in {elapsed:.1f} s{chosen}")


if __name__ == "__main__":
    cli.run(main)
