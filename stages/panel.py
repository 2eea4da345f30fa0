"""Stage panel@<panel>: every baseline and statistical forecaster on every series of a panel, by the
competition protocol.

Each series' last ``horizon`` points are held out and forecast from one origin
by each forecaster of the classical set (``baselines:`` and ``statistical:``,
through the same interface as in the backtests). The series run in parallel over
the cores (joblib) or on a Dask cluster (``DASK_SCHEDULER_ADDRESS``, docs/team.md), in
chunks, with a progress line per chunk. ``--out``: the
forecasts, one row per series, forecaster and step ahead, with split-conformal
intervals at the panel's ``levels`` (``lo80``, ``hi80``, ...: calibrated across the
series on a second forecast of each from ``horizon`` points earlier,
stages/lib/panel/intervals.py); evaluate_panel scores them beside the Keras models'. One MLflow run with each forecaster's seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from stages.lib.config import load_params
from stages.lib.infra import cli
from stages.lib.infra.cluster import where
from stages.lib.infra.cores import cores
from stages.lib.infra.io import write_csv
from stages.lib.infra.tracking import stage_run
from stages.lib.panel.run import (earlier_origin_intervals, eta, fallback_lines, forecast_panel, forecast_table,
                                  kept_series, skipped_line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--panel", required=True, help="a key under panels: in params.yaml")
    parser.add_argument("--series", type=Path, required=True, help="CSV written by ingest_panel")
    parser.add_argument("--out", type=Path, required=True, help="CSV of the forecasts")
    args = parser.parse_args(argv)

    params = load_params()
    spec = params.panel(args.panel)
    specs = params.panel_forecasters(args.panel)
    stage = f"panel@{args.panel}"
    workers = cores()  # PIPELINE_CORES where set
    place = where(workers)  # first: a cluster that does not answer stops the stage before it reads the panel
    # num_steps 1: the classical set has no input window, and the stage does not re-run when num_steps changes.
    series, skipped, need = kept_series(args.series, params, args.panel, specs, num_steps=1)
    print(f"{stage}: {len(series)} series, horizon {spec.horizon}, season {spec.season_length}, "
          f"{len(specs)} forecasters ({', '.join(specs)}), {place}")
    if skipped:
        print(skipped_line(stage, args.panel, skipped, need))
    for line in fallback_lines(stage, series, specs, spec.horizon, spec.season_length, 1):
        print(line)

    run_params = {"panel": args.panel, **spec.model_dump(), "forecasters": list(specs),
                  **{f"spec.{n}": s.model_dump() for n, s in specs.items()}}
    tags = {"dataset": args.panel, "kind": "panel", "forecaster": ",".join(specs)}
    with stage_run("forecast", stage, run_params, inputs=[args.series], tags=tags) as run:
        started = time.perf_counter()
        results = forecast_panel(series, spec.horizon, specs, spec.season_length, 1, workers,
                                 progress=lambda done: print(f"{stage}: {eta(done, len(series), time.perf_counter() - started)}"),
                                 name=stage)
        table = forecast_table(results, dict(series), spec.horizon)
        facts = {"calibration_s": 0.0}
        if spec.levels:
            table, facts = earlier_origin_intervals(
                table, series, spec, specs, 1, stage,
                lambda short, progress: forecast_panel(short, spec.horizon, specs, spec.season_length, 1, workers,
                                                       progress, name=f"{stage}-calibration"))
        write_csv(args.out, table, digits=None)
        # Seconds per forecaster, summed over the series (worker time: the stage's wall time is less
        # by the cores); in MLflow only, so that the committed files stay byte-identical.
        seconds = pd.DataFrame([s for _, _, s in results]).sum()
        run.log_metrics({"series": len(series), "skipped": len(skipped), **facts,
                         **{f"{n}.fit_s": float(seconds[n]) for n in specs}})
    print(f"{stage}: done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    cli.run(main)
