"""Stage panel_model@<panel>-<model>: a Keras forecaster of ``panel_models:`` on every series of a panel, by
the competition protocol.

``mode: global`` trains one model on the windows of every series' history (each
series scaled by its own), as deep models compete on collections: with ``output:
recursive`` one step at a time, with ``output: direct`` the whole horizon at once,
as an ensemble of members (stages/lib/forecast/global_direct.py; each member an
MLflow child run; the median and, for several, the first member alone are
written). ``mode: per_series`` trains one model per
series, over the cores, as a forecaster of ``forecasters:`` is trained on one
dataset. ``--out``: the forecasts, one row per series and step ahead, in the
layout of panel@'s, with split-conformal intervals at the panel's ``levels``
(calibrated on the direct members' validation forecasts, or on a second fit of
a recursive model at an earlier origin: stages/lib/panel/intervals.py);
evaluate_panel scores them beside the classical set's. On a
panel the model's ``datasets`` does not list, the file has only its header.
One MLflow run with the training curve (global), the seconds, and the forecasts.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.config import load_params
from stages.lib.errors import ParamsError
from stages.lib.infra import cli
from stages.lib.infra.cluster import where
from stages.lib.infra.cores import cores
from stages.lib.infra.io import write_csv
from stages.lib.infra.tracking import stage_run
from stages.lib.panel.intervals import calibrated, validation_calibration
from stages.lib.panel.run import (FORECAST_COLUMNS, Result, earlier_origin_intervals, eta, fallback_lines,
                                  forecast_panel, forecast_series, forecast_table, kept_series, skipped_line)
from stages.lib.panel.scores import holdout


def forecast_global(name: str, spec, series: list[tuple[str, np.ndarray]], horizon: int, season_length: int,
                    num_steps: int) -> tuple[list[Result], object]:
    """One model trained across every series' history; each series' forecast under ``name``, and the fitted model."""
    from stages.lib.forecast.keras import GlobalKerasForecaster

    model = GlobalKerasForecaster(spec, season_length, num_steps).fit([holdout(y, horizon)[0] for _, y in series])
    predicted = model.predict(horizon)
    return [(sid, {name: predicted[i]}, {}) for i, (sid, _) in enumerate(series)], model


def forecast_direct(name: str, spec, series: list[tuple[str, np.ndarray]], horizon: int, season_length: int,
                    num_steps: int, stage: str, run) -> tuple[list[Result], dict, list]:
    """A global direct model (an ensemble of one or more members, each an MLflow child run): the median of
    its members under ``name`` and, for several, the first member alone under ``<name>_single``; and the
    members, whose validation forecasts calibrate the intervals."""
    from stages.lib.forecast.global_direct import fit_ensemble, median_ensemble

    spec.model_spec().check_hardware(f"params.yaml: panel_models.{name}: arch")  # before any member trains
    configs = spec.members(horizon, season_length, num_steps)
    longest = max(len(y) for _, y in series) - horizon
    too_long = [c.lookback for c in configs if c.lookback > longest]
    if too_long:
        raise ParamsError(f"params.yaml: panel_models.{name}.lookback: a look-back of {too_long[0]} values is "
                          f"longer than every series' history on this panel (the longest has {longest} points)")

    def logged(i: int, member) -> None:
        print(f"{stage}: member {i + 1}/{len(configs)} ({member.config.label}): {member.epochs} epochs"
              + (f", best validation loss {member.best_val_loss:.4f}" if member.best_val_loss is not None else "")
              + f", {member.cpu_s:.0f} CPU s", flush=True)
        run.log_child(f"{stage}/{member.config.label}",
                      params={"seed": member.config.seed, "lookback": member.config.lookback,
                              "loss": member.config.loss},
                      metrics={"epochs": member.epochs, "cpu_s": member.cpu_s,
                               **({"best_val_loss": member.best_val_loss} if member.best_val_loss is not None else {})},
                      histories=member.histories)

    print(f"{stage}: {len(configs)} member(s), median ensemble" if len(configs) > 1 else f"{stage}: one network")
    members = fit_ensemble(spec, [holdout(y, horizon)[0] for _, y in series], horizon=horizon,
                           season_length=season_length, num_steps=num_steps, on_member=logged)
    forecast = median_ensemble([m.forecast for m in members])
    names, others = spec.scored_names(name, horizon), spec.member_names(name, horizon)
    # The first member alone under <name>_single, the others under <name>_member<i>: the spread over the members.
    results = [(sid, {names[0]: forecast[i], **({names[1]: members[0].forecast[i]} if len(names) > 1 else {}),
                      **{n: m.forecast[i] for n, m in zip(others, members[1:])}}, {})
               for i, (sid, _) in enumerate(series)]
    facts = {"members": len(members), "epochs_run": [m.epochs for m in members],
             "cpu_s": sum(m.cpu_s for m in members), "input_size": [m.config.lookback for m in members]}
    return results, facts, members


def direct_intervals(table: pd.DataFrame, series: list[tuple[str, np.ndarray]], fit: list[tuple[str, np.ndarray]],
                     members: list, name: str, model, panel, num_steps: int, stage: str, run) -> pd.DataFrame:
    """The table with split-conformal intervals for the ensemble and its first member alone (not the other
    members, which are written for their spread only), calibrated across the series on the members' validation
    forecasts (stages/lib/panel/intervals.py, validation_calibration): no second training. A series the
    fallback forecast (short_series: fallback) gets none: no forecaster of the fallback's kind is calibrated here.

    ``model``: the panel_models: entry; ``panel``: the panel's params; ``fit``: the series the members trained on."""
    names = model.scored_names(name, panel.horizon)
    calibration, shortened_ = validation_calibration(fit, members, names, panel.horizon)
    print(f"{stage}: calibrating the {', '.join(f'{lv}%' for lv in panel.levels)} intervals on the validation "
          f"forecasts of {len(calibration)} series")
    table, facts, lines = calibrated(table, series, calibration, shortened_, panel, {n: model for n in names},
                                     num_steps)
    for line in lines:
        print(f"{stage}: {line}")
    run.log_metrics(facts)
    return table


def calibration_forecasts(name: str, model, horizon: int, season_length: int, num_steps: int, workers: int,
                          stage: str, short: list[tuple[str, np.ndarray]], progress, on_network=None) -> list[Result]:
    """A recursive model's forecasts of the shortened series (test part removed) from ``horizon`` points before
    their end, which calibrate its intervals as panel@'s are (earlier_origin_intervals): a per_series model
    fitted once more on each; a global one trained once more, from the same seed, on the shortened series long
    enough for its window, so that no point it forecasts there was trained on. That second training doubles
    the stage's time (docs/panels.md). A direct model needs none: its validation fit is that forecast.
    ``on_network(fitted)``: called with the global calibration network once trained (its MLflow child run)."""
    if model.mode == "per_series":
        return forecast_panel(short, horizon, {name: model}, season_length, num_steps, workers, progress,
                              name=f"{stage}-calibration")
    fit, _ = split_short(short, model, horizon, season_length, num_steps)
    if not fit:
        return []
    results, fitted = forecast_global(name, model, fit, horizon, season_length, num_steps)
    print(f"{stage}: calibration network trained on {len(fit)} series, {fitted.facts()['epochs_run']} epochs")
    if on_network is not None:
        on_network(fitted)
    return results


def split_short(series: list[tuple[str, np.ndarray]], spec, horizon: int, season_length: int, num_steps: int
                ) -> tuple[list, list]:
    """The series whose history a global model can train on, and those left to the fallback (every series, where
    none is long enough: the model is then not trained)."""
    need = spec.min_panel_history(season_length, num_steps, horizon)
    fit = [(sid, y) for sid, y in series if len(y) - horizon >= need]
    return fit, [(sid, y) for sid, y in series if len(y) - horizon < need]


def fallback_results(short: list[tuple[str, np.ndarray]], name: str, spec, horizon: int, season_length: int,
                     num_steps: int) -> list[Result]:
    """The fallback's forecast of each short series, under every name the model is scored under."""
    names = spec.scored_names(name, horizon) + spec.member_names(name, horizon)
    results = []
    for sid, y in short:
        forecasts, _ = forecast_series(y, horizon, {name: spec}, season_length, num_steps)
        results.append((sid, {n: forecasts[name] for n in names}, {}))
    return results


def in_order(series: list[tuple[str, np.ndarray]], results: list[Result]) -> list[Result]:
    """``results`` in the panel's order."""
    by_id = {r[0]: r for r in results}
    return [by_id[sid] for sid, _ in series]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--panel", required=True, help="a key under panels: in params.yaml")
    parser.add_argument("--model", required=True, help="a key under panel_models: in params.yaml")
    parser.add_argument("--series", type=Path, required=True, help="CSV written by ingest_panel")
    parser.add_argument("--out", type=Path, required=True, help="CSV of the forecasts")
    args = parser.parse_args(argv)

    params = load_params()
    spec, model = params.panel(args.panel), params.panel_model(args.model)
    stage = f"panel_model@{args.panel}-{args.model}"
    if not model.runs_on(args.panel):
        # DVC wants the output: a header and no rows. evaluate_panel leaves the model out.
        write_csv(args.out, pd.DataFrame(columns=FORECAST_COLUMNS))
        print(f"{stage}: not run (panel_models.{args.model}.datasets does not list {args.panel})")
        return
    workers = cores()  # PIPELINE_CORES where set
    # first: a cluster that does not answer stops the stage before it reads the panel
    place = f", {where(workers)}" if model.mode == "per_series" else ""
    series, skipped, need = kept_series(args.series, params, args.panel, {args.model: model}, params.num_steps)
    window = model.lookbacks(spec.horizon, spec.season_length, params.num_steps)
    window = window[0] if len(window) == 1 else window
    print(f"{stage}: {len(series)} series, horizon {spec.horizon}, {model.model} {model.mode}, "
          f"input_size {window}" + place)
    if skipped:
        print(skipped_line(stage, args.panel, skipped, need))
    for line in fallback_lines(stage, series, {args.model: model}, spec.horizon, spec.season_length, params.num_steps):
        print(line)

    run_params = {"panel": args.panel, **spec.model_dump(), "model": args.model, "spec": model.model_dump(),
                  "num_steps": params.num_steps}
    tags = {"dataset": args.panel, "kind": "panel_model", "forecaster": args.model, "mode": model.mode}
    with stage_run("forecast", stage, run_params, inputs=[args.series], tags=tags) as run:
        started, members = time.perf_counter(), []
        # A series too short for a global network's window (short_series: fallback) does not train it: it gets
        # the fallback's forecast under every name the model is scored under. A per-series model forecasts
        # every series itself (forecast_series falls back per series).
        fit, short = (split_short(series, model, spec.horizon, spec.season_length, params.num_steps)
                      if model.mode == "global" else (series, []))
        if model.mode == "global" and not fit:
            print(f"{stage}: no series is long enough to train it: every series gets the fallback's forecast")
            results, facts = [], {}
        elif model.output == "direct":
            results, facts, members = forecast_direct(args.model, model, fit, spec.horizon, spec.season_length,
                                                      params.num_steps, stage, run)
        elif model.mode == "global":
            results, fitted = forecast_global(args.model, model, fit, spec.horizon, spec.season_length, params.num_steps)
            facts = fitted.facts()
            for history in fitted.training_histories().values():
                run.log_history(history)
            print(f"{stage}: trained on {facts['windows']} windows of {facts['series']} series, "
                  f"{facts['epochs_run']} epochs")
        else:
            results = forecast_panel(series, spec.horizon, {args.model: model}, spec.season_length, params.num_steps,
                                     workers, progress=lambda done: print(
                                         f"{stage}: {eta(done, len(series), time.perf_counter() - started)}"),
                                     name=stage)
            facts = {"input_size": window, "series": len(series)}
        if model.mode == "global" and short:
            results = in_order(series, results + fallback_results(short, args.model, model, spec.horizon,
                                                                  spec.season_length, params.num_steps))
        table = forecast_table(results, dict(series), spec.horizon)
        fit_s = time.perf_counter() - started  # the forecasts alone: the intervals' cost is calibration_s
        if spec.levels and model.output == "direct" and members:
            table = direct_intervals(table, series, fit, members, args.model, model, spec, params.num_steps, stage,
                                     run)
        elif spec.levels and model.output == "recursive" and fit:
            # The global calibration network's curves go to a child run, as an ensemble member's do: the
            # stage's own curves stay those of the network that forecasts.
            table, calibration = earlier_origin_intervals(
                table, series, spec, {args.model: model}, params.num_steps, stage,
                partial(calibration_forecasts, args.model, model, spec.horizon, spec.season_length,
                        params.num_steps, workers, stage,
                        on_network=lambda fitted: run.log_child(
                            f"{stage}/calibration", params={"origin": f"{spec.horizon} points before the test"},
                            metrics=fitted.facts(), histories=list(fitted.training_histories().values()))))
            run.log_metrics({k: v for k, v in calibration.items() if k != "calibration_s"})
        elapsed = time.perf_counter() - started
        write_csv(args.out, table, digits=None)
        # Timings in MLflow only, so that the committed files stay byte-identical.
        run.log_metrics({"series": len(series), "skipped": len(skipped), "fit_s": fit_s,
                         "calibration_s": elapsed - fit_s,
                         **{k: v for k, v in facts.items() if k != "series" and not isinstance(v, list)}})
        run.log_artifact(args.out)
    print(f"{stage}: done in {elapsed:.1f} s")


if __name__ == "__main__":
    cli.run(main)
