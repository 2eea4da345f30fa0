"""Forecasting every series of a panel by the competition protocol, one model per series, over the cores
or on a Dask cluster.

Shared by the classical set (stage panel@<panel>) and the per-series Keras models
(panel_model@<panel>-<name>): every forecaster through its one interface, fitted to
each series' history and asked for the held-out ``horizon`` points.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from stages.lib.forecast import registry, statistical
from stages.lib.forecast.keras import KerasForecaster
from stages.lib.infra import cluster, interrupts
from stages.lib.panel.intervals import calibrated, shortened
from stages.lib.panel.load import fallback_spec, fallbacks, min_length, screen
from stages.lib.panel.scores import holdout

# Below this many series per core the pool's start-up (a process and statsforecast's or TensorFlow's import
# each) costs more than it saves: they run in the stage's own process.
MIN_SERIES_PER_CORE = 4

Result = tuple[str, dict[str, np.ndarray], dict[str, float]]  # series id, forecast and seconds per forecaster


def forecast_series(y: np.ndarray, horizon: int, specs: dict, season_length: int, num_steps: int
                    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every forecaster's forecast of one series' held-out points, and the seconds each took."""
    # A fresh copy, so that the history starts on a 16-byte boundary wherever the series came from (a view
    # into the panel's column here, an array unpickled on a Dask worker): numpy sums in another order from
    # an address 8 bytes off, and Theta's forecasts changed in their last digit with it (measured).
    train, _ = holdout(np.array(y, dtype=float), horizon)
    forecasts, seconds = {}, {}
    for name, spec in specs.items():
        started = time.perf_counter()
        # Itself, unless the history is too short for it (only under short_series: fallback: the other
        # policies have screened such series out).
        spec = fallback_spec(spec, len(train), horizon, season_length, num_steps)
        forecaster = registry.build(spec, season_length, num_steps)
        if isinstance(forecaster, KerasForecaster):
            forecaster.verbose = 0  # a line per epoch and series would bury the progress line
        forecasts[name] = forecaster.fit(train).predict(horizon)
        seconds[name] = time.perf_counter() - started
    # The combination has reused its members' fits of this history; no later series will, so the
    # cache is emptied and a worker's memory stays flat over thousands of series.
    statistical.forget_fits()
    return forecasts, seconds


def forecast_chunk(chunk: list[tuple[str, np.ndarray]], horizon: int, specs: dict, season_length: int,
                   num_steps: int) -> list[Result]:
    """Forecasts and seconds per forecaster of each series of a chunk (run in a worker)."""
    done = []
    for sid, y in chunk:
        interrupts.check()  # Ctrl-C stops between series, not only inside a Keras fit
        done.append((sid, *forecast_series(y, horizon, specs, season_length, num_steps)))
    return done


def forecast_panel(series: list[tuple[str, np.ndarray]], horizon: int, specs: dict, season_length: int,
                   num_steps: int, workers: int, progress, name: str = "panel") -> list[Result]:
    """Every series' forecasts, in the panel's order, over ``workers`` processes or on the Dask cluster
    (stages/lib/infra/cluster.py); ``progress(done)`` after each chunk."""
    workers = cluster.slots(workers)  # on a cluster, its threads
    size = max(1, min(25, len(series) // (8 * workers)))  # small chunks: a steady progress line, little waiting at the end
    chunks = [series[i:i + size] for i in range(0, len(series), size)]
    if cluster.address() is None and len(series) < MIN_SERIES_PER_CORE * workers:
        workers = 1
    done: list = []

    def arrived(part: list[Result]) -> None:
        done.extend(part)
        progress(len(done))

    parts = cluster.map_ordered(forecast_chunk, chunks, (horizon, specs, season_length, num_steps), workers,
                                on_done=arrived, name=name)
    return [result for part in parts for result in part]  # the panel's order, whatever order the chunks arrived in


def earlier_origin_intervals(table: pd.DataFrame, series: list[tuple[str, np.ndarray]], spec, specs: dict,
                             num_steps: int, stage: str, forecast) -> tuple[pd.DataFrame, dict[str, float]]:
    """The forecast table with split-conformal intervals at ``spec.levels``, calibrated across the series on a
    second forecast of each from ``horizon`` points earlier (stages/lib/panel/intervals.py), and the facts for
    MLflow. ``forecast(short, progress)``: the forecasters' results (``forecast_panel``'s) on the shortened
    series, each with its test part removed: one model per series refitted there, or a global model trained
    again on them. ``spec``: the panel's params."""
    short = shortened(series, spec.horizon, spec.season_length)
    print(f"{stage}: calibrating the {', '.join(f'{lv}%' for lv in spec.levels)} intervals on {len(short)} series "
          f"forecast from {spec.horizon} points earlier")
    started = time.perf_counter()
    results = forecast(short, lambda done: print(f"{stage}: calibration: "
                                                 f"{eta(done, len(short), time.perf_counter() - started)}"))
    table, facts, lines = calibrated(table, series, [(sid, f) for sid, f, _ in results], dict(short), spec, specs,
                                     num_steps)
    for line in lines:
        print(f"{stage}: {line}")
    return table, {**facts, "calibration_s": time.perf_counter() - started}


def eta(done: int, total: int, elapsed: float) -> str:
    """``12/40 series, 0:31 so far, about 1:12 left``."""
    def clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    left = f", about {clock(elapsed / done * (total - done))} left" if 0 < done < total else ""
    return f"{done}/{total} series, {clock(elapsed)} so far{left}"


FORECAST_COLUMNS = ["id", "forecaster", "h", "actual", "forecast"]


def forecast_table(results: list[Result], values: dict[str, np.ndarray], horizon: int) -> pd.DataFrame:
    """The forecasts, one row per series, forecaster and step ahead (``id, forecaster, h, actual, forecast``).

    Built column by column: a small frame per series and forecaster, then their concatenation, took 1.5 GB
    beside a 460 MB table at 20,000 series and nine forecasters (docs/dask_scale.md)."""
    pairs = [(sid, name, f) for sid, predicted, _ in results for name, f in predicted.items()]
    if not pairs:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    return pd.DataFrame({"id": np.repeat(np.array([sid for sid, _, _ in pairs], dtype=object), horizon),
                         "forecaster": np.repeat(np.array([name for _, name, _ in pairs], dtype=object), horizon),
                         "h": np.tile(np.arange(1, horizon + 1), len(pairs)),
                         "actual": np.concatenate([values[sid][-horizon:] for sid, _, _ in pairs]),
                         "forecast": np.concatenate([np.asarray(f) for _, _, f in pairs])})


def kept_series(path, params, name: str, specs: dict, num_steps: int
                ) -> tuple[list[tuple[str, np.ndarray]], dict[str, int], int]:
    """The series of panel ``name`` (the CSV ingest_panel wrote) long enough for every forecaster of ``specs``,
    each as (id, values); the skipped ones as {id: length}; and the length they need.

    Each forecasting stage asks this of its own forecasters, so a Keras model's
    window does not re-run the classical set (and with ``short_series: reject`` a
    series too short for one model stops that model's stage); evaluate_panel asks
    it of all of them, and scores the series that every forecaster forecast.
    """
    spec = params.panel(name)
    panel = pd.read_csv(path, dtype={"id": str, "time": str}, float_precision="round_trip")
    need = min_length(specs.values(), spec.horizon, spec.season_length, num_steps, spec.short_series)
    panel, skipped = screen(panel, need, spec.short_series, name)
    series = [(sid, part["value"].to_numpy(dtype=float)) for sid, part in panel.groupby("id", sort=False)]
    return series, skipped, need


def skipped_line(stage: str, panel: str, skipped: dict[str, int], need: int) -> str:
    """The log line that names the skipped series (the first ten; all of them in MLflow)."""
    named = ", ".join(f"{sid} ({n})" for sid, n in list(skipped.items())[:10])
    more = (f" and {len(skipped) - 10} more (every one in skipped.csv of evaluate_panel@{panel}'s MLflow run)"
            if len(skipped) > 10 else "")
    return f"{stage}: {len(skipped)} series skipped, shorter than {need} points (short_series: skip): {named}{more}"


def fallback_lines(stage: str, series: list[tuple[str, np.ndarray]], specs: dict, horizon: int,
                   season_length: int, num_steps: int) -> list[str]:
    """The log lines that name, per forecaster, the series it left to the fallback (short_series: fallback)."""
    lengths = {sid: len(y) for sid, y in series}
    lines = []
    for name, ids in fallbacks(lengths, specs, horizon, season_length, num_steps).items():
        named = ", ".join(f"{sid} ({lengths[sid]})" for sid in ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        lines.append(f"{stage}: {name}: {len(ids)} series too short for it, forecast by the fallback "
                     f"(short_series: fallback): {named}")
    return lines
