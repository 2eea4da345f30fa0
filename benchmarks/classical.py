"""The classical forecasters side by side on the shipped series: accuracy and time per backtest.

    python benchmarks/classical.py                       # every candidate on every dataset of params.yaml
    python benchmarks/classical.py --datasets sales      # fewer datasets
    python benchmarks/classical.py --series extra.csv:12 # also a CSV of your own (time,value; season 12)
    python benchmarks/classical.py --skip "every refit"  # leave out a candidate (that one takes minutes on elnino)

Each candidate runs the params.yaml protocol (rolling origins, horizon, refits)
in this one process, one after the other, and prints per dataset the pooled
MASE and sMAPE of the evaluation windows, the 80% coverage and the seconds the
whole backtest took. It answers the choices that issue #14 asks to measure:

- the project's ARIMA (order by AIC over a bounded grid, chosen once at the
  first origin; or again at every refit) against statsforecast's AutoARIMA
  (Hyndman and Khandakar's stepwise search by AICc, drift allowed);
- Theta from statsforecast against statsmodels' ThetaModel;
- ETS from statsforecast (AutoETS). statsmodels' ETSModel has no automatic
  choice of error, trend and season, so it is not a candidate: that choice
  would have to be hand-written;
- the combination of ETS, ARIMA and Theta.

Timings are printed, never written into the repository; run it on a quiet
machine and compare within one run.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.config import load_params  # noqa: E402
from stages.lib.forecast.backtest import empirical_intervals, origins, run_backtest  # noqa: E402
from stages.lib.forecast import statistical  # noqa: E402
from stages.lib.forecast.base import Forecaster, as_array  # noqa: E402
from stages.lib.forecast.registry import build  # noqa: E402
from stages.lib.forecast.scoring import naive_scales, score  # noqa: E402
from stages.lib.forecast.series import load_series  # noqa: E402
from stages.lib.forecast.specs import SPECS, Spec  # noqa: E402


class StatsmodelsTheta(Forecaster):
    """statsmodels' ThetaModel (deseasonalised by a test, as thetaf), refitted at every origin."""

    has_intervals = True

    def fit(self, history: np.ndarray) -> StatsmodelsTheta:
        from statsmodels.tsa.forecasting.theta import ThetaModel

        self.history = as_array(history)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.result = ThetaModel(self.history, period=self.m, deseasonalize=self.m > 1).fit()
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.asarray(self.result.forecast(horizon), dtype=float)

    def predict_interval(self, horizon: int, levels: list[int]):
        out = {}
        for level in levels:
            bounds = np.asarray(self.result.prediction_intervals(horizon, alpha=1 - level / 100), dtype=float)
            out[level] = (bounds[:, 0], bounds[:, 1])
        return out


def candidates() -> dict[str, Spec | type[Forecaster]]:
    return {
        "arima (project, order once)": SPECS["arima"](kind="arima"),
        "arima (project, order every refit)": SPECS["arima"](kind="arima", select="every_fit"),
        "auto_arima (statsforecast)": SPECS["auto_arima"](kind="auto_arima"),
        "ets (statsforecast AutoETS)": SPECS["ets"](kind="ets"),
        "theta (statsforecast Theta)": SPECS["theta"](kind="theta"),
        "theta (statsmodels ThetaModel)": StatsmodelsTheta,
        "combination (ets, arima, theta)": SPECS["combination"](kind="combination", members=("ets", "arima", "theta")),
        "combination (ets, auto_arima, theta)": SPECS["combination"](kind="combination",
                                                                     members=("ets", "auto_arima", "theta")),
    }


def measure(y: np.ndarray, season_length: int, made, bt, num_steps: int) -> dict[str, float]:
    origin_list = origins(len(y), bt.horizon, bt.n_windows, bt.step_size, bt.calibration_windows)
    statistical.forget_fits()  # each candidate alone: no fit reused from the one before
    forecaster = made(SPECS["naive"](kind="naive"), season_length, num_steps) if isinstance(made, type) \
        else build(made, season_length, num_steps)
    started = time.perf_counter()
    frame = empirical_intervals(run_backtest(forecaster, y, origin_list, bt.horizon, bt.levels), bt.levels)
    elapsed = time.perf_counter() - started
    evaluation = frame[frame["origin"].isin(origin_list[bt.calibration_windows:])]
    scores = score(evaluation, naive_scales(y, origin_list, season_length), bt.levels)
    chosen = forecaster.summary()
    return {"mase": scores["mase"], "smape": scores["smape"], "coverage_80": scores["coverage_80"],
            "seconds": elapsed, "chose": ", ".join(f"{v}" for v in chosen.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", help="datasets of params.yaml (default: all)")
    parser.add_argument("--series", nargs="*", default=[], help="extra CSV files as PATH:SEASON (columns time,value)")
    parser.add_argument("--skip", nargs="*", default=[], help="leave out candidates whose label contains this text")
    args = parser.parse_args()
    params = load_params()
    data = {}
    for name in args.datasets if args.datasets is not None else params.datasets:
        ds = params.dataset(name)
        data[name] = (load_series(Path(ds.file), ds.time_col, ds.value_col, ds.fill, ds.freq)["value"]
                      .to_numpy(float), ds.season_length)
    for item in args.series:
        path, season = item.rsplit(":", 1)
        data[Path(path).stem] = (pd.read_csv(path)["value"].to_numpy(float), int(season))
    rows = []
    for name, (y, m) in data.items():
        for label, made in candidates().items():
            if any(text in label for text in args.skip):
                continue
            result = measure(y, m, made, params.backtest, params.num_steps)
            rows.append({"dataset": name, "forecaster": label, **result})
            print(f"{name:8s} {label:38s} MASE {result['mase']:.3f}  sMAPE {result['smape']:6.2f}%  "
                  f"cover80 {result['coverage_80']:.0%}  {result['seconds']:6.2f} s  {result['chose']}", flush=True)
    table = pd.DataFrame(rows)
    table["rank"] = table.groupby("dataset")["mase"].rank()
    print("\nMean over datasets (MASE, rank by MASE within each dataset, seconds per backtest):")
    print(table.groupby("forecaster", sort=False)[["mase", "rank", "seconds"]].mean().round(3).to_string())


if __name__ == "__main__":
    main()
