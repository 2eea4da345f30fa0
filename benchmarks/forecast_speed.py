"""Forecast branch speed: ARIMA `auto` on the seasonal series, and refits against time and accuracy.

    python benchmarks/forecast_speed.py                 # all of it, about 8 minutes on 2 cores
    python benchmarks/forecast_speed.py --refits 20 10 --epochs 128   # fewer settings

Measured in one process, one after the other, with the params of params.yaml:

1. ARIMA `auto` (order search by AIC over the bounded grid, then the fit) on
   the shipped 156-point seasonal series, in one process and then over the
   cores, and the same forecaster's whole 20-origin backtest.
2. For each Keras forecaster on each dataset named by --datasets: the whole
   backtest with `refit_every` set to each value of --refits, its wall time,
   the number of fits and the pooled MASE of the evaluation windows, so the
   time a refit costs sits beside what it buys.

Timings are printed, never written into the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from stages.lib.config import load_params  # noqa: E402
from stages.lib.forecast import arima as forecasters  # noqa: E402
from stages.lib.forecast.arima import select_order  # noqa: E402
from stages.lib.forecast.backtest import empirical_intervals, origins, run_backtest  # noqa: E402
from stages.lib.forecast.registry import build  # noqa: E402
from stages.lib.forecast.scoring import naive_scales, score  # noqa: E402
from stages.lib.forecast.series import load_series  # noqa: E402


def series_of(params, name: str):
    ds = params.dataset(name)
    return ds, load_series(Path(ds.file), ds.time_col, ds.value_col, ds.fill, ds.freq)["value"].to_numpy(float)


def backtest_once(params, dataset: str, spec) -> tuple[float, float, object]:
    ds, y = series_of(params, dataset)
    bt = params.backtest
    origin_list = origins(len(y), bt.horizon, bt.n_windows, bt.step_size, bt.calibration_windows)
    forecaster = build(spec, ds.season_length, params.num_steps)
    started = time.perf_counter()
    frame = empirical_intervals(run_backtest(forecaster, y, origin_list, bt.horizon, bt.levels), bt.levels)
    elapsed = time.perf_counter() - started
    evaluation = frame[frame["origin"].isin(origin_list[bt.calibration_windows:])]
    mase = score(evaluation, naive_scales(y, origin_list, ds.season_length), bt.levels)["mase"]
    return elapsed, mase, forecaster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seasonal", default="elnino", help="dataset for the ARIMA auto measurement")
    parser.add_argument("--datasets", nargs="+", default=["sales"], help="datasets for the refit measurement")
    parser.add_argument("--refits", nargs="+", type=int, default=[20, 10, 5, 1], help="refit_every values to compare")
    parser.add_argument("--epochs", nargs="+", type=int, default=[128, 64], help="max_epochs values to compare")
    args = parser.parse_args()
    params = load_params()

    arima = next(spec for spec in params.forecasters.values() if spec.kind == "arima")
    ds, y = series_of(params, args.seasonal)
    searches = {}
    # In one process first, then over the cores with workers started afresh, as in a stage.
    for label, threshold in (("in one process", 10**9), (f"over {os.cpu_count()} cores", forecasters.PARALLEL_MIN_FITS)):
        forecasters.PARALLEL_MIN_FITS = threshold
        started = time.perf_counter()
        chosen = select_order(y[:len(y) - params.backtest.horizon], ds.season_length, arima)
        searches[label] = time.perf_counter() - started
        print(f"ARIMA auto on {args.seasonal} ({len(y)} points, season {ds.season_length}): order search {label} "
              f"{searches[label]:.1f} s over {chosen['models_tried']} models -> "
              f"{chosen['order']}{chosen['seasonal_order']} trend {chosen['trend']}")
    one, parallel = searches.values()
    print(f"ARIMA auto: the parallel search takes {parallel / one:.2f}x the time of the one-process search")
    elapsed, mase, _ = backtest_once(params, args.seasonal, arima)
    print(f"ARIMA auto, whole backtest on {args.seasonal} (search once, refit every {arima.refit_every}): "
          f"{elapsed:.1f} s, MASE {mase:.3f}")

    print("\n| dataset | forecaster | refit_every | max_epochs | fits | backtest time | pooled MASE |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for dataset in args.datasets:
        for name, spec in params.forecasters.items():
            if spec.kind != "keras":
                continue
            for every in args.refits:
                for epochs in args.epochs:
                    variant = spec.model_copy(update={"refit_every": every,
                                                      "fit": spec.fit.model_copy(update={"max_epochs": epochs})})
                    elapsed, mase, forecaster = backtest_once(params, dataset, variant)
                    print(f"| {dataset} | {name} | {every} | {epochs} | {forecaster.facts()['refits']} | {elapsed:.1f} s "
                          f"| {mase:.3f} |", flush=True)


if __name__ == "__main__":
    main()
