"""Stage evaluate_forecast@<dataset>: score every forecaster's backtest on the original scale.

Per forecaster and step ahead (``h1`` .. ``hH``, and ``all`` pooled): MAE, RMSE,
MAPE, sMAPE, MASE (each error scaled by the in-sample seasonal-naive error of its
own origin's history), interval coverage and width on the evaluation windows;
and the persistence check on the one-step forecasts of every origin. The best
forecaster is the one with the lowest pooled MASE. A forecaster that is the median of
several seeds (a Keras forecaster's ``seeds``) also gets ``seeds``: each seed's
pooled MASE and sMAPE alone, their mean ± sd over the seeds and the best. Each claim the report makes from
these scores (a forecaster beats the best baseline; the best beats the runner-up)
carries the Diebold-Mariano p-value of the two forecasters' per-origin MASE.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from stages.lib.config import load_params
from stages.lib.forecast.scoring import member_scores, naive_scales, origin_losses, persistence, score_by_horizon
from stages.lib.forecast.specs import window_pairs
from stages.lib.infra import cli
from stages.lib.infra.io import atomic_dir, read_json, write_csv, write_json
from stages.lib.infra.tracking import stage_run
from stages.lib.panel.significance import diebold_mariano


def best_of(results: dict[str, dict], key: str = "mase") -> str:
    return min(results, key=lambda name: results[name]["all"][key])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--baselines", type=Path, required=True, help="folder of <baseline>/ written by baselines")
    parser.add_argument("--statistical", type=Path, required=True, help="folder of <forecaster>/ written by statistical")
    parser.add_argument("--backtests", type=Path, required=True, help="folder of <forecaster>/ written by backtest")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plot-data", type=Path, required=True, help="folder: actual.csv and <forecaster>.csv")
    parser.add_argument("--figure", type=Path, required=True, help="PNG: series, in-sample fit, forecasts, intervals")
    args = parser.parse_args(argv)

    params = load_params()
    ds, bt, rule = params.dataset(args.dataset), params.backtest_for(args.dataset), params.evaluate_forecast.persistence
    series = pd.read_csv(args.series, dtype={"time": str}, float_precision="round_trip")
    y = series["value"].to_numpy(dtype=float)
    specs = params.forecasters_of(args.dataset)
    names = list(specs)
    folders = {**{name: args.baselines / name for name in params.baselines},
               **{name: args.statistical / name for name in params.statistical},
               **{name: args.backtests / name for name in params.forecasters}}
    frames = {name: pd.read_csv(folders[name] / "forecasts.csv", dtype={"time": str}, float_precision="round_trip") for name in names}
    fitted = {name: pd.read_csv(folders[name] / "fitted.csv", dtype={"time": str}, float_precision="round_trip") for name in names}
    facts = {name: read_json(folders[name] / "facts.json") for name in names}

    from stages.lib.infra import plots

    run_params = {"dataset": args.dataset, "forecasters": names, "backtest": bt.model_dump(),
                  "persistence": rule.model_dump(), "season_length": ds.season_length}
    inputs = [args.series, *(folders[name] / "forecasts.csv" for name in names)]
    with stage_run("forecast", f"evaluate_forecast@{args.dataset}", run_params, inputs,
                   tags={"dataset": args.dataset}) as run:
        origin_list = facts[names[0]]["origins"]
        scales = naive_scales(y, origin_list, ds.season_length)
        results, losses = {}, {}
        for name, frame in frames.items():
            evaluation = frame[frame["window"] == "evaluation"]
            losses[name] = origin_losses(evaluation, scales)
            results[name] = {
                "kind": specs[name].kind,
                **score_by_horizon(evaluation, scales, bt.levels),
                "interval": facts[name]["interval"],
                "persistence": persistence(y, frame[frame["h"] == 1], rule.min_lag_corr, rule.lag_margin,
                                           rule.min_change_ratio),
                **facts[name]["summary"],  # what the forecaster chose, e.g. an ARIMA order
            }
            seeds = member_scores(evaluation, scales)  # several seeds: each alone, beside their median
            if seeds:
                results[name]["seeds"] = seeds
        best = best_of(results)
        baselines = list(params.baselines)
        best_baseline = best_of({n: results[n] for n in baselines})
        runner_up = best_of({n: r for n, r in results.items() if n != best})

        def dm(a: str, b: str) -> float | None:
            return diebold_mariano(losses[a].to_numpy(), losses[b].to_numpy(), bt.horizon)

        evaluation_origins = origin_list[bt.calibration_windows:]
        write_json(args.metrics, {
            "dataset": args.dataset, "n_points": len(y), "season_length": ds.season_length,
            "filled_points": int(series["filled"].sum()), "protocol": bt.protocol, "horizon": bt.horizon,
            "n_windows": bt.n_windows,
            "first_evaluation_time": series["time"].iloc[evaluation_origins[0]],
            "best": best, "best_baseline": best_baseline,
            "beats_baselines": [n for n in names if n not in baselines
                                and results[n]["all"]["mase"] < results[best_baseline]["all"]["mase"]],
            **({  # Diebold-Mariano p-values (two-sided, per-origin MASE) behind the report's claims
                "dm_p_vs_best_baseline": {n: dm(n, best_baseline) for n in names if n not in baselines},
                "runner_up": runner_up, "dm_p_best_vs_runner_up": dm(best, runner_up),
                # Every other forecaster against the best: how far "worse than the best" is a verdict.
                "dm_p_vs_best": {n: dm(n, best) for n in names if n != best},
                # Each two-season model against the same model with the article's window (summary.md).
                "dm_p_windows": {auto: dm(auto, plain) for plain, auto in window_pairs(specs)
                                 if plain in losses and auto in losses},
            } if len(evaluation_origins) > 1 else {}),  # one origin (holdout): nothing to test over
            **results,
        })
        for name, r in results.items():
            flag = "  PERSISTENT" if r["persistence"]["persistent"] else ""
            print(f"evaluate_forecast@{args.dataset}: {name:>15}: MASE h1={r['h1']['mase']:.3f} "
                  f"all={r['all']['mase']:.3f}  RMSE all={r['all']['rmse']:.4g}{flag}")
        print(f"evaluate_forecast@{args.dataset}: best {best} (best baseline {best_baseline})")

        # One file per line of the DVC plot (one-step forecasts of the evaluation windows).
        with atomic_dir(args.plot_data) as folder:
            one_step = {name: f[(f["h"] == 1) & (f["window"] == "evaluation")] for name, f in frames.items()}
            first = next(iter(one_step.values()))
            write_csv(folder / "actual.csv", pd.DataFrame({"time": first["time"], "value": first["actual"]}))
            for name, rows in one_step.items():
                write_csv(folder / f"{name}.csv", pd.DataFrame({"time": rows["time"], "value": rows["forecast"]}))
        plots.backtest(series, frames, fitted, bt.levels, args.figure,
                       f"{args.dataset}: one-step backtest forecasts with {'/'.join(map(str, bt.levels))}% intervals "
                       f"(shaded: evaluation windows)", best=best)

        for name, r in results.items():
            run.log_metrics({k: v for k, v in r.items() if k not in ("kind", "interval")}, prefix=f"{name}.")
        run.log_artifact(args.metrics)
        run.log_artifact(args.figure)


if __name__ == "__main__":
    cli.run(main)
