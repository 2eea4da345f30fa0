"""Stage train_forecast@<dataset>-<model>: train a Keras forecaster on the windows.

Writes the model, its per-epoch losses, and its one-step-ahead forecasts of the
test points on the original scale (scaling and differencing undone from the true
levels before each point), in the one format every forecaster writes:
``time, actual, predicted``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from stages.core import cli
from stages.core.io import read_arrays, save_with, write_csv
from stages.core.params import load_params
from stages.core.series import levels_from_diffs
from stages.core.tracking import stage_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True, help="a name listed in train_forecast.models")
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--windows", type=Path, required=True, help="folder written by preprocess")
    parser.add_argument("--model-out", type=Path, required=True)
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    args = parser.parse_args(argv)

    params = load_params()
    section = params.train_forecast
    if args.model not in section.models:
        raise cli.ParamsError(f"params.yaml: train_forecast.models: {args.model!r} is not listed (have: {', '.join(section.models)})")
    spec, fit = section.spec(args.model), section.fit
    w = read_arrays(args.windows)
    series = pd.read_csv(args.series)
    steps, channels = w["X_train"].shape[1:]

    from stages.core.training import predictor, seed_everything, train

    n_train, diff_order = int(w["n_train"]), int(w["diff_order"])
    run_params = {"dataset": args.dataset, "model": args.model, "num_steps": int(steps), "diff_order": diff_order,
                  "test_len": len(series) - n_train, "fit": fit.model_dump(), "arch": spec.model_dump()}
    with stage_run("forecast", f"train_forecast@{args.dataset}-{args.model}", run_params,
                   inputs=[args.series, args.windows], tags={"dataset": args.dataset}) as run:
        seed_everything(fit.seed)
        model = spec.build(steps, channels)
        run.log_metrics(spec.describe(steps))
        print(f"train_forecast@{args.dataset}-{args.model}: {len(w['y_train'])} windows, params={model.count_params()}")
        history = train(model, w["X_train"], w["y_train"], fit)
        levels = levels_from_diffs(predictor(model)(w["X_test"]), series["value"].to_numpy(), n_train,
                                   scale=float(w["scale"]), diff_order=diff_order)
        predictions = pd.DataFrame({"time": series["time"].iloc[n_train:].to_numpy(),
                                    "actual": series["value"].iloc[n_train:].to_numpy(), "predicted": levels})
        save_with(args.model_out, model.save)
        write_csv(args.history, history)
        write_csv(args.predictions, predictions, digits=None)
        run.log_history(history)
        run.log_metrics({"final_loss": history["loss"].iloc[-1]})
        for path in (args.model_out, args.history, args.predictions):
            run.log_artifact(path)


if __name__ == "__main__":
    cli.run(main)
