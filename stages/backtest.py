"""Stage backtest@<dataset>-<forecaster>: rolling-origin forecasts of one forecaster on one dataset.

Writes a folder:

- ``forecasts.csv``: one row per origin and step ahead (``h``), with the actual
  value, the forecast and its intervals (the forecaster's own, or empirical from
  the errors of earlier origins), and whether the origin calibrates or evaluates;
- ``fitted.csv``: in-sample one-step fit of the last history the forecaster was fitted to;
- ``facts.json``: what the forecaster chose or learnt (an ARIMA order, epochs run).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stages.core import cli
from stages.core.backtest import check_length, empirical_intervals, origins, run_backtest
from stages.core.io import atomic_dir, write_csv, write_json
from stages.core.params import load_params
from stages.core.tracking import stage_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key under datasets: in params.yaml")
    parser.add_argument("--forecaster", required=True, help="a key under forecasters: in params.yaml")
    parser.add_argument("--series", type=Path, required=True, help="CSV written by ingest")
    parser.add_argument("--out", type=Path, required=True, help="folder for forecasts.csv, fitted.csv, facts.json")
    args = parser.parse_args(argv)

    params = load_params()
    ds, spec, bt = params.dataset(args.dataset), params.forecaster(args.forecaster), params.backtest
    series = pd.read_csv(args.series, dtype={"time": str})
    y = series["value"].to_numpy(dtype=float)
    check_length(len(y), ds.file, bt, args.forecaster, spec, ds.season_length, params.num_steps)
    origin_list = origins(len(y), bt.horizon, bt.n_windows, bt.step_size, bt.calibration_windows)
    evaluation = set(origin_list[bt.calibration_windows:])

    stage = f"backtest@{args.dataset}-{args.forecaster}"
    run_params = {"dataset": args.dataset, "forecaster": args.forecaster, "season_length": ds.season_length,
                  "num_steps": params.num_steps, "backtest": bt.model_dump(), "spec": spec.model_dump()}
    with stage_run("forecast", stage, run_params, inputs=[args.series],
                   tags={"dataset": args.dataset, "forecaster": args.forecaster, "kind": spec.kind}) as run, \
            atomic_dir(args.out) as folder:
        forecaster = spec.build(ds.season_length, params.num_steps)
        print(f"{stage}: {len(origin_list)} origins ({bt.calibration_windows} calibration, {bt.n_windows} evaluation), "
              f"horizon {bt.horizon}, refit every {forecaster.refit_every}")
        started = time.perf_counter()
        frame = run_backtest(forecaster, y, origin_list, bt.horizon, bt.levels, progress=lambda msg: print(f"{stage}: {msg}"))
        elapsed = time.perf_counter() - started
        own = frame[f"lo{bt.levels[0]}"].notna().all() if bt.levels else True
        frame = empirical_intervals(frame, bt.levels)
        frame.insert(0, "time", series["time"].to_numpy()[frame["index"]])
        frame.insert(1, "window", np.where(frame["origin"].isin(evaluation), "evaluation", "calibration"))
        frame["interval"] = "model" if own else "empirical"
        write_csv(folder / "forecasts.csv", frame, digits=None)
        fitted = forecaster.fitted()
        write_csv(folder / "fitted.csv", pd.DataFrame({"time": series["time"].to_numpy()[:len(fitted)], "fitted": fitted}),
                  digits=None)
        facts = {"origins": origin_list, "interval": "model" if own else "empirical", **forecaster.facts()}
        write_json(folder / "facts.json", facts)

        # Timings go to MLflow only: committed files stay byte-identical across reruns.
        run.log_metrics({"backtest_time_s": elapsed, "origins": len(origin_list)})
        for k, history in enumerate(getattr(forecaster, "histories", [])):
            run.log_history(history, prefix=f"refit{k}.")
        run.set_tags({k: v for k, v in facts.items() if k in ("order", "seasonal_order", "trend")})
        for path in sorted(folder.iterdir()):
            run.log_artifact(path)
        chosen = f", ARIMA{tuple(facts['order'])}{tuple(facts['seasonal_order'])} trend={facts['trend']}" \
            if "order" in facts else ""
        print(f"{stage}: done in {elapsed:.1f} s{chosen}")


if __name__ == "__main__":
    cli.run(main)
