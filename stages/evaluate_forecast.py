"""Stage evaluate_forecast@<dataset>: errors of every forecaster and baseline on the test points."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from stages.core import cli, metrics
from stages.core.baselines import BASELINES
from stages.core.io import atomic_dir, write_csv, write_json
from stages.core.params import load_params
from stages.core.tracking import stage_run


def score(actual: np.ndarray, predicted: np.ndarray, train: np.ndarray) -> dict[str, float]:
    """Errors on the original scale; MASE scaled by the in-sample naive error."""
    scores = {name: fn(actual, predicted) for name, fn in metrics.FORECAST_METRICS.items()}
    scores["mase"] = metrics.mase(actual, predicted, train)
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True, help="folder of <forecaster>.csv")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--histories", type=Path, required=True, help="folder of <model>.csv training losses")
    parser.add_argument("--plot-data", type=Path, required=True, help="folder: actual.csv and <forecaster>.csv")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the PNGs")
    args = parser.parse_args(argv)

    params = load_params()
    series = pd.read_csv(args.series)
    y = series["value"].to_numpy(dtype=float)
    n_train = len(y) - params.preprocess.test_len
    forecasters = [*params.train_forecast.models, "arima"]

    from stages.core import plots

    run_params = {"dataset": args.dataset, "forecasters": forecasters,
                  "baselines": params.evaluate_forecast.baselines, "test_len": params.preprocess.test_len}
    inputs = [args.series, args.histories, *(args.predictions / f"{name}.csv" for name in forecasters)]
    with stage_run("forecast", f"evaluate_forecast@{args.dataset}", run_params, inputs,
                   tags={"dataset": args.dataset}) as run:
        predicted = {name: pd.read_csv(args.predictions / f"{name}.csv")["predicted"].to_numpy() for name in forecasters}
        predicted |= {name: BASELINES[name](y, n_train) for name in params.evaluate_forecast.baselines}
        actual = y[n_train:]
        results = {name: score(actual, pred, y[:n_train]) for name, pred in predicted.items()}
        for name, values in results.items():
            print(f"evaluate_forecast@{args.dataset}: {name:>8}: " + "  ".join(f"{k}={v:.4g}" for k, v in values.items()))

        write_json(args.metrics, {"dataset": args.dataset, "n_train": n_train, "n_test": len(actual),
                                  "filled_points": int(series["filled"].sum()), **results})
        times = series["time"].iloc[n_train:].to_numpy()
        # One file per line of the DVC plot, so the plot follows the list of models.
        with atomic_dir(args.plot_data) as folder:
            for name, values in {"actual": actual, **predicted}.items():
                write_csv(folder / f"{name}.csv", pd.DataFrame({"time": times, "value": values}))
        figures = {
            "forecast": args.figures / f"forecast-{args.dataset}.png",
            "loss": args.figures / f"forecast_loss-{args.dataset}.png",
        }
        frames = {name: pd.DataFrame({"time": times, "predicted": pred}) for name, pred in predicted.items()}
        plots.forecast(series, frames, n_train, figures["forecast"], f"{args.dataset}: one-step-ahead forecasts of the test part")
        histories = {name: pd.read_csv(args.histories / f"{name}.csv") for name in params.train_forecast.models}
        plots.loss_curves(histories, figures["loss"], f"{args.dataset}: training loss")

        for name, values in results.items():
            run.log_metrics(values, prefix=f"{name}.")
        for path in (args.metrics, *figures.values()):
            run.log_artifact(path)


if __name__ == "__main__":
    cli.run(main)
