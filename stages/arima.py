"""Stage arima@<dataset>: statsmodels ARIMA fitted on the training part only.

One-step-ahead forecasts of the test points: the parameters fitted on the
training part are kept, and each forecast conditions on the true values up to
the point before it (``append(..., refit=False)``), as the neural forecasters do.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from stages.core import cli
from stages.core.io import write_csv, write_json
from stages.core.params import load_params
from stages.core.tracking import stage_run


def one_step_forecasts(y: np.ndarray, n_train: int, order: tuple[int, int, int]):
    """Fit ARIMA(order) on y[:n_train]; one-step predictions of y[n_train:]."""
    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        # Short series make statsmodels warn about starting values; the fit is still reported.
        warnings.simplefilter("ignore")
        fitted = ARIMA(y[:n_train], order=order).fit()
        extended = fitted.append(y[n_train:], refit=False)
    return fitted, np.asarray(extended.predict(start=n_train, end=len(y) - 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--fit-out", type=Path, required=True, help="JSON: fitted coefficients, AIC, BIC")
    args = parser.parse_args(argv)

    params = load_params()
    order, test_len = params.arima.order, params.preprocess.test_len
    series = pd.read_csv(args.series)
    y = series["value"].to_numpy(dtype=float)
    n_train = len(y) - test_len
    if n_train <= sum(order) + 1:
        raise cli.DataError(f"{params.dataset(args.dataset).file}: {n_train} training points is too few for "
                            f"arima.order={list(order)} with preprocess.test_len={test_len}")

    run_params = {"dataset": args.dataset, "order": list(order), "test_len": test_len}
    with stage_run("forecast", f"arima@{args.dataset}", run_params, inputs=[args.series],
                   tags={"dataset": args.dataset}) as run:
        fitted, predicted = one_step_forecasts(y, n_train, order)
        write_csv(args.predictions, pd.DataFrame({"time": series["time"].iloc[n_train:].to_numpy(),
                                                  "actual": y[n_train:], "predicted": predicted}), digits=None)
        # Coefficients rather than fitted.summary(), which stamps the date and time.
        fit_facts = {"order": list(order), "n_train": n_train, "aic": fitted.aic, "bic": fitted.bic,
                     "coefficients": dict(zip(fitted.param_names, map(float, fitted.params), strict=True))}
        write_json(args.fit_out, fit_facts)
        run.log_metrics({"aic": fitted.aic, "bic": fitted.bic})
        run.log_artifact(args.predictions)
        run.log_artifact(args.fit_out)
        print(f"arima@{args.dataset}: ARIMA{tuple(order)} on {n_train} points, AIC={fitted.aic:.2f}")


if __name__ == "__main__":
    cli.run(main)
