"""Stage panel@<panel>: every baseline and statistical forecaster on every series of a panel, by the
competition protocol, scored per series and aggregated.

Each series' last ``horizon`` points are held out and forecast from one origin
by each forecaster of the classical set (``baselines:`` and ``statistical:``,
through the same interface as in the backtests). The series run in parallel over
the cores (joblib), in chunks, with a progress line per chunk. Outputs:

- ``--out``: the forecasts, one row per series, forecaster and step ahead;
- ``--scores``: sMAPE and MASE per series and forecaster (committed);
- ``--metrics``: the aggregates (mean sMAPE, mean MASE, mean rank, wins against
  each baseline), the series scored and skipped; one MLflow run with the same
  aggregates as metrics, each forecaster's seconds, and the score table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.config import load_params
from stages.lib.forecast import registry, statistical
from stages.lib.infra import cli
from stages.lib.infra.io import write_csv, write_json
from stages.lib.infra.tracking import stage_run
from stages.lib.panel.load import min_length, screen
from stages.lib.panel.scores import aggregate, holdout, score_series, undefined_mase

# Below this many series per core the pool's start-up (a process and statsforecast's import
# each) costs more than it saves: they run in the stage's own process.
MIN_SERIES_PER_CORE = 4


def forecast_series(y: np.ndarray, horizon: int, specs: dict, season_length: int
                    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every forecaster's forecast of one series' held-out points, and the seconds each took."""
    train, _ = holdout(y, horizon)
    forecasts, seconds = {}, {}
    for name, spec in specs.items():
        started = time.perf_counter()
        forecasts[name] = registry.build(spec, season_length, num_steps=1).fit(train).predict(horizon)
        seconds[name] = time.perf_counter() - started
    # The combination has reused its members' fits of this history; no later series will, so the
    # cache is emptied and a worker's memory stays flat over thousands of series.
    statistical.forget_fits()
    return forecasts, seconds


def forecast_chunk(chunk: list[tuple[str, np.ndarray]], horizon: int, specs: dict, season_length: int
                   ) -> list[tuple[str, dict[str, np.ndarray], dict[str, float]]]:
    """Forecasts and seconds per forecaster of each series of a chunk (run in a worker)."""
    return [(sid, *forecast_series(y, horizon, specs, season_length)) for sid, y in chunk]


def forecast_panel(series: list[tuple[str, np.ndarray]], horizon: int, specs: dict, season_length: int,
                   workers: int, progress) -> list[tuple[str, dict[str, np.ndarray], dict[str, float]]]:
    """Every series' forecasts, in the panel's order, over ``workers`` processes; ``progress(done)`` after each chunk."""
    size = max(1, min(25, len(series) // (8 * workers)))  # small chunks: a steady progress line, little waiting at the end
    chunks = [series[i:i + size] for i in range(0, len(series), size)]
    if workers < 2 or len(series) < MIN_SERIES_PER_CORE * workers:
        results = (forecast_chunk(chunk, horizon, specs, season_length) for chunk in chunks)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=workers, return_as="generator")(
            delayed(forecast_chunk)(chunk, horizon, specs, season_length) for chunk in chunks)
    done: list = []
    for part in results:
        done += part
        progress(len(done))
    return done


def eta(done: int, total: int, elapsed: float) -> str:
    """``12/40 series, 0:31 so far, about 1:12 left``."""
    def clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    left = f", about {clock(elapsed / done * (total - done))} left" if 0 < done < total else ""
    return f"{done}/{total} series, {clock(elapsed)} so far{left}"


def tables(results: list, values: dict[str, np.ndarray], horizon: int, season_length: int
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The forecasts (id, forecaster, h, actual, forecast) and the scores (id, forecaster, smape, mase) of each
    series' ``values``."""
    forecasts, scores = [], []
    for sid, predicted, _ in results:
        y = values[sid]
        for name, f in predicted.items():
            forecasts.append(pd.DataFrame({"id": sid, "forecaster": name, "h": np.arange(1, horizon + 1),
                                           "actual": y[-horizon:], "forecast": f}))
        for name, s in score_series(y, predicted, horizon, season_length).items():
            scores.append({"id": sid, "forecaster": name, **s})
    return pd.concat(forecasts, ignore_index=True), pd.DataFrame(scores)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--panel", required=True, help="a key under panels: in params.yaml")
    parser.add_argument("--series", type=Path, required=True, help="CSV written by ingest_panel")
    parser.add_argument("--out", type=Path, required=True, help="CSV of the forecasts")
    parser.add_argument("--scores", type=Path, required=True, help="CSV of sMAPE and MASE per series and forecaster")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON of the aggregates")
    args = parser.parse_args(argv)

    params = load_params()
    spec = params.panel(args.panel)
    specs = params.panel_forecasters(args.panel)
    stage = f"panel@{args.panel}"
    panel = pd.read_csv(args.series, dtype={"id": str, "time": str}, float_precision="round_trip")
    need = min_length(specs.values(), spec.horizon, spec.season_length)
    panel, skipped = screen(panel, need, spec.short_series, args.panel)
    series = [(sid, part["value"].to_numpy(dtype=float)) for sid, part in panel.groupby("id", sort=False)]
    workers = os.cpu_count() or 1
    print(f"{stage}: {len(series)} series, horizon {spec.horizon}, season {spec.season_length}, "
          f"{len(specs)} forecasters ({', '.join(specs)}), {workers} cores")
    if skipped:
        named = ", ".join(f"{sid} ({n})" for sid, n in list(skipped.items())[:10])
        print(f"{stage}: {len(skipped)} series skipped, shorter than {need} points (short_series: skip): {named}"
              + (f" and {len(skipped) - 10} more (every one in the MLflow run's skipped.csv)" if len(skipped) > 10 else ""))

    run_params = {"panel": args.panel, **spec.model_dump(), "forecasters": list(specs),
                  **{f"spec.{n}": s.model_dump() for n, s in specs.items()}}
    tags = {"dataset": args.panel, "kind": "panel", "forecaster": ",".join(specs)}
    with stage_run("forecast", stage, run_params, inputs=[args.series], tags=tags) as run:
        started = time.perf_counter()
        results = forecast_panel(series, spec.horizon, specs, spec.season_length, workers,
                                 progress=lambda done: print(f"{stage}: {eta(done, len(series), time.perf_counter() - started)}"))
        forecasts, scores = tables(results, dict(series), spec.horizon, spec.season_length)
        summary = aggregate(scores, baselines=[n for n in params.baselines if n in specs])
        # Laid out as forecast-<dataset>.json: one entry per forecaster beside the panel's facts.
        metrics: dict[str, Any] = {"protocol": "holdout", "horizon": spec.horizon, "season_length": spec.season_length,
                                   "series": len(series), "skipped": len(skipped),
                                   "mase_undefined": undefined_mase(scores), "group": spec.group, **summary}
        write_csv(args.out, forecasts, digits=None)
        write_csv(args.scores, scores)
        write_json(args.metrics, metrics)
        # Seconds per forecaster, summed over the series (worker time: the stage's wall time is less
        # by the cores); in MLflow only, so that the committed files stay byte-identical.
        seconds = pd.DataFrame([s for _, _, s in results]).sum()
        run.log_metrics({"series": len(series), "skipped": len(skipped),
                         **{f"{n}.fit_s": float(seconds[n]) for n in specs}})
        run.log_metrics({f"{n}.{k}": v for n, agg in summary.items() for k, v in agg.items()})
        run.log_artifact(args.scores)
        if skipped:
            with tempfile.TemporaryDirectory() as tmp:
                write_csv(Path(tmp) / "skipped.csv", pd.DataFrame({"id": list(skipped), "points": list(skipped.values())}))
                run.log_artifact(Path(tmp) / "skipped.csv")
    best = min(summary, key=lambda n: summary[n]["smape"])
    print(f"{stage}: done in {time.perf_counter() - started:.1f} s; best sMAPE {best} "
          f"{summary[best]['smape']:.2f}, MASE {summary[best]['mase']:.3f}")


if __name__ == "__main__":
    cli.run(main)
