"""Stage article: the LSTM-vs-ARIMA article's own protocol, to set beside its published figures.

The article (brief, section B): first difference; divide by the largest
absolute difference of the *whole* series (it looks at the test period);
windows of ``num_steps`` differences predict the next one; the last
``article.test_len`` windows are the test set; one fit; the predicted
differences are turned back into levels by a cumulative sum; MSE over all
predicted points. Published: LSTM 2521.30, ARIMA 4401.02.

The default protocol (the backtest stages) differs on purpose: the scaler is
fitted on each origin's history only, forecasts come from many origins rather
than one split, levels are rebuilt from the last true level rather than by
accumulating predicted differences (whose errors add up), and every model is
compared with naive baselines on the original scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.config import load_params
from stages.lib.errors import DataError
from stages.lib.forecast.arima import fit_arima
from stages.lib.forecast.article import article_windows, cumsum_levels, one_step_levels
from stages.lib.forecast.keras import resolved_fit
from stages.lib.forecast.scoring import mse
from stages.lib.infra import cli
from stages.lib.infra.io import write_json
from stages.lib.infra.tracking import stage_run

PUBLISHED = {"lstm": 2521.30, "arima": 4401.02}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=Path, required=True, help="CSV written by ingest for article.dataset")
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args(argv)

    params = load_params()
    a = params.article
    spec = params.forecaster(a.forecaster)
    y = pd.read_csv(args.series, float_precision="round_trip")["value"].to_numpy(dtype=float)
    w = article_windows(y, params.num_steps, a.test_len)
    if w["n_train"] < 2:
        raise DataError(f"{params.dataset(a.dataset).file}: {len(y)} points leave {w['n_train']} training windows "
                        f"for article.test_len={a.test_len} and num_steps={params.num_steps} (needs at least 2)")

    from stages.lib.nn.training import predictor, seed_everything, train

    run_params = {"dataset": a.dataset, "num_steps": params.num_steps, **a.model_dump(), "spec": spec.model_dump()}
    with stage_run("forecast", "article", run_params, inputs=[args.series], tags={"dataset": a.dataset}) as run:
        n_train, first = int(w["n_train"]), int(w["first_level"])
        seed_everything(spec.fit.seed or 0)
        model = spec.model_spec().build(params.num_steps, 1)
        # The article's epochs and learning-rate schedule where article: sets them (its forecaster trains shorter).
        fit = spec.fit.model_copy(update={k: v for k, v in (("max_epochs", a.max_epochs),
                                                            ("lr_decay_every", a.lr_decay_every)) if v is not None})
        history = train(model, w["X"][:n_train], w["target"][:n_train], resolved_fit(fit, len(y)))
        diffs = predictor(model)(w["X"]) * w["scale"]
        levels = {"cumsum": cumsum_levels(y, diffs, first), "one_step": one_step_levels(y, diffs, first)}
        actual = y[first:]
        test = slice(n_train, None)

        # ARIMA on the same split: fitted on the training levels, one-step predictions of every point after it.
        arima = fit_arima(y[:first + n_train], tuple(a.arima_order), (0, 0, 0, 0), "n")
        arima_pred = np.asarray(arima.append(y[first + n_train:], refit=False).predict(start=first, end=len(y) - 1))
        naive = y[first - 1:-1]
        results = {
            "lstm": {"mse_all": mse(actual, levels["cumsum"]), "mse_test": mse(actual[test], levels["cumsum"][test]),
                     "mse_test_one_step_inversion": mse(actual[test], levels["one_step"][test]),
                     "published_mse": PUBLISHED["lstm"]},
            "arima": {"order": list(a.arima_order), "mse_all": mse(actual, arima_pred),
                      "mse_test": mse(actual[test], arima_pred[test]), "published_mse": PUBLISHED["arima"]},
            "naive": {"mse_all": mse(actual, naive), "mse_test": mse(actual[test], naive[test])},
        }
        write_json(args.metrics, {"dataset": a.dataset, "test_len": a.test_len, "num_steps": params.num_steps,
                                  "scale": w["scale"], "scaler": "max |difference| of the whole series (the article's)",
                                  "train_windows": n_train, "predicted_points": len(actual), **results})
        run.log_history(history)
        run.log_metrics({k: v for k, v in results.items()})
        run.log_artifact(args.metrics)
        for name, r in results.items():
            published = f" (published {r['published_mse']})" if "published_mse" in r else ""
            print(f"article: {name:>6}: MSE over all {len(actual)} predicted points {r['mse_all']:.1f}, "
                  f"test {r['mse_test']:.1f}{published}")


if __name__ == "__main__":
    cli.run(main)
