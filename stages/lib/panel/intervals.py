"""Prediction intervals on a panel: split-conformal across the series.

A series of a competition panel is forecast from one origin, so it has no past
errors of its own to calibrate an interval (a 95% split-conformal interval needs
19 of them, and an M3 yearly series has 14 to 41 points). The errors come from
the other series instead, at an earlier origin:

1. every series is forecast once more from ``horizon`` points before its test
   origin (its history with the last ``horizon`` points held out: the
   competition protocol on the shortened series); a global direct Keras model
   has that forecast already, from its members' validation fits
   (``validation_calibration``), so it is not trained again;
2. each error there is divided by that history's scale, the in-sample MAE of the
   seasonal naive forecast (MASE's and MSIS's denominator), so that series of
   different levels can be pooled;
3. at each step ahead, the radius is the split-conformal quantile of the pooled
   scaled errors (the ceil((n + 1) * level / 100)-th smallest of the n series);
4. a series' interval is its forecast ± that radius times its own history's scale.

For a series exchangeable with the calibration series (in its scaled error) the
interval covers with probability at least ``level`` % (Vovk et al. 2005; Lei et
al. 2018), and the measured coverage over a panel says how far that holds. A
forecaster's calibration set leaves out a series whose shortened history is too
short for it (the fallback would forecast it: those would be another model's
errors) or has no scale (a flat history). A level with too few calibration
series (19 for 95%) gets no interval, and the stage says so.

Hand-written rather than statsforecast's ConformalIntervals: that one calibrates
each series on its own past windows (``n_windows`` origins per series), which the
short competition series cannot give at 95%.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.forecast.backtest import conformal_radius
from stages.lib.forecast.scoring import msis, naive_scale
from stages.lib.forecast.specs import NaiveSpec, min_calibration
from stages.lib.panel.load import fallback_spec
from stages.lib.panel.scores import holdout


def series_scale(history: np.ndarray, season_length: int) -> float:
    """The in-sample MAE of the seasonal naive forecast (of the naive one where the history is no longer than a
    season); NaN where it is 0 or undefined."""
    lag = season_length if len(history) > season_length else 1
    scale = naive_scale(history, lag)
    return scale if scale > 0 else float("nan")


def shortened(series: list[tuple[str, np.ndarray]], horizon: int, season_length: int
              ) -> list[tuple[str, np.ndarray]]:
    """Each series without its test part, where what is left still has a history before its own last
    ``horizon`` points (the calibration origin)."""
    need = horizon + NaiveSpec(kind="naive").min_history(season_length, 1)
    return [(sid, np.asarray(y, dtype=float)[:-horizon]) for sid, y in series if len(y) - horizon >= need]


def scaled_errors(calibration: list[tuple[str, dict[str, np.ndarray]]], shortened_: dict[str, np.ndarray],
                  specs: dict, horizon: int, season_length: int, num_steps: int) -> dict[str, np.ndarray]:
    """Per forecaster, the absolute errors of its calibration forecasts divided by their history's scale: an
    array (series, step), a row per series it could fit itself and that has a scale.

    ``calibration``: each shortened series' id and forecasts (forecaster -> ``horizon`` values);
    ``shortened_``: the shortened series by id.
    """
    out: dict[str, list[np.ndarray]] = {name: [] for name in specs}
    for sid, forecasts in calibration:
        y = shortened_[sid]
        history, actual = y[:-horizon], y[-horizon:]
        scale = series_scale(history, season_length)
        if not np.isfinite(scale):
            continue
        for name, spec in specs.items():
            if fallback_spec(spec, len(history), horizon, season_length, num_steps) is spec and name in forecasts:
                out[name].append(np.abs(actual - forecasts[name]) / scale)
    return {name: np.array(rows).reshape(-1, horizon) for name, rows in out.items()}


def radii(errors: dict[str, np.ndarray], levels: list[int]) -> dict[str, dict[int, np.ndarray]]:
    """Per forecaster and level, the scaled radius at each step ahead (NaN where the series are too few)."""
    return {name: {level: np.array([conformal_radius(e[:, h], level) for h in range(e.shape[1])])
                   for level in levels}
            for name, e in errors.items()}


def too_few(errors: dict[str, np.ndarray], levels: list[int]) -> dict[int, list[str]]:
    """Per level, the forecasters with fewer calibration series than it needs."""
    return {level: short for level in levels
            if (short := [n for n, e in errors.items() if len(e) < min_calibration(level)])}


def borrowed_radii(lengths: dict[str, int], specs: dict, horizon: int, season_length: int, num_steps: int
                   ) -> dict[tuple[str, str], str | None]:
    """Per (forecaster, series id) that the fallback forecasts (``short_series: fallback``): the forecaster of the
    set whose radius its interval takes, the one of the fallback's own kind (naive, seasonal naive), whose
    calibration errors are those of the same forecast; None where the set has none (no interval).

    ``lengths``: each series' total length, test part included."""
    out: dict[tuple[str, str], str | None] = {}
    for name, spec in specs.items():
        for sid, n in lengths.items():
            used = fallback_spec(spec, n - horizon, horizon, season_length, num_steps)
            if used is not spec:
                out[(name, sid)] = next((other for other, s in specs.items() if s.kind == used.kind), None)
    return out


def validation_calibration(series: list[tuple[str, np.ndarray]], members: list, names: list[str], horizon: int
                           ) -> tuple[list[tuple[str, dict[str, np.ndarray]]], dict[str, np.ndarray]]:
    """The calibration forecasts of a global direct model, which needs no second training: its members'
    validation fits already forecast each series' last horizon before the test origin, the calibration origin
    (stages/lib/forecast/global_direct.py). Under ``names[0]`` the median of the members' (the ensemble's),
    under ``names[1]`` where given the first member's alone. Returns them by series id, and the shortened
    series (test part removed) by id, as ``scaled_errors`` takes them.

    ``series``: every series the members were trained on, in their order (test part included).
    Two caveats: validation chose each member's epoch count on these very points, so the errors are a little
    smaller than those of a fresh origin; and with ``refit`` the network that forecasts the test is another
    one, trained on the validation points too. The measured coverage says how far that matters
    (docs/panels.md)."""
    from stages.lib.forecast.global_direct import median_ensemble

    shortened_ = {sid: holdout(y, horizon)[0] for sid, y in series}
    if not members or any(m.val_forecast is None for m in members):
        return [], shortened_
    validated = members[0].validated
    if any(not np.array_equal(m.validated, validated) for m in members):
        raise ValueError("the members validated on different series: their calibration forecasts do not pair")
    by_name = {names[0]: median_ensemble([m.val_forecast for m in members])}
    if len(names) > 1:
        by_name[names[1]] = members[0].val_forecast
    return [(series[i][0], {n: f[j] for n, f in by_name.items()}) for j, i in enumerate(validated)], shortened_


def calibrated(table: pd.DataFrame, series: list[tuple[str, np.ndarray]], calibration: list, shortened_: dict,
               spec, specs: dict, num_steps: int) -> tuple[pd.DataFrame, dict[str, float], list[str]]:
    """The forecast table with split-conformal intervals at the panel's levels from the calibration forecasts
    (``scaled_errors``' arguments), the facts for MLflow, and the lines for the stage's log (a level without
    enough calibration series, the fallback forecasts' intervals).

    ``spec``: the panel's (horizon, season_length, levels); ``series``: every series of the table, whole."""
    errors = scaled_errors(calibration, shortened_, specs, spec.horizon, spec.season_length, num_steps)
    lines = [f"no {level}% interval for {', '.join(names)}: fewer than the {min_calibration(level)} "
             f"calibration series it needs ({min(len(errors[n]) for n in names)})"
             for level, names in too_few(errors, spec.levels).items()]
    scales = {sid: series_scale(holdout(y, spec.horizon)[0], spec.season_length) for sid, y in series}
    radius = radii(errors, spec.levels)
    borrowed = borrowed_radii({sid: len(y) for sid, y in series}, specs, spec.horizon, spec.season_length, num_steps)
    lent = sum(v is not None for v in borrowed.values())
    none = "get no interval (no forecaster of their kind in the set)"
    if lent:
        lines.append(f"{lent} fallback forecasts take the interval of the forecaster of their kind"
                     + (f"; {len(borrowed) - lent} {none}" if lent < len(borrowed) else ""))
    elif borrowed:
        lines.append(f"{len(borrowed)} fallback forecasts {none}")
    facts = {f"{n}.calibration_series": len(e) for n, e in errors.items()}
    facts.update({f"{n}.radius{lv}_h{h}": float(r[lv][h - 1]) for n, r in radius.items() for lv in spec.levels
                  for h in (1, spec.horizon) if np.isfinite(r[lv][h - 1])})
    return with_intervals(table, radius, scales, spec.levels, borrowed), facts, lines


def with_intervals(table: pd.DataFrame, radius: dict[str, dict[int, np.ndarray]], scales: dict[str, float],
                   levels: list[int], borrowed: dict[tuple[str, str], str | None] | None = None) -> pd.DataFrame:
    """The forecast table (``id, forecaster, h, ...``) with ``lo<level>`` and ``hi<level>`` columns: the forecast
    ± the step's radius times the series' scale; NaN for a forecaster without a radius or a series without a
    scale. A forecast the fallback made takes the radius ``borrowed`` names (``borrowed_radii``): the
    forecaster's own was calibrated on its own errors, not the fallback's."""
    out = table.copy()
    scale = out["id"].map(scales).to_numpy(dtype=float)
    # Each row's radius by a code per forecaster and an index, not a Python float per row: a list of 3.2 million
    # floats per level at 20,000 series and nine forecasters (the stage's peak went from 1106 to 1059 MiB,
    # docs/speed.md).
    forecaster = pd.Categorical(out["forecaster"])
    names = [str(n) for n in forecaster.categories]
    names += sorted({n for n in (borrowed or {}).values() if n is not None} - set(names))
    code = {n: i for i, n in enumerate(names)}
    nowhere = len(names)  # a row that gets no radius
    rows = forecaster.codes.astype(np.int64)
    if borrowed:  # the fallback series' rows (few): the radius their forecast's kind lends, or none
        ids, kinds = out["id"].to_numpy(), out["forecaster"].to_numpy()
        for i in np.flatnonzero(out["id"].isin({sid for _, sid in borrowed}).to_numpy()):
            if (kinds[i], ids[i]) in borrowed:
                lender = borrowed[(kinds[i], ids[i])]
                rows[i] = nowhere if lender is None else code[lender]
    steps = out["h"].to_numpy(dtype=np.int64) - 1
    width = int(steps.max(initial=0)) + 1
    for name in names:  # a step without a radius is a bug upstream, not a missing interval
        if name in radius and (steps.min(initial=0) < 0 or any(len(radius[name][lv]) < width for lv in levels)):
            raise ValueError(f"{name}: steps ahead 1 to {width} need a radius each, "
                             f"got {min(len(radius[name][lv]) for lv in levels)}")
    for level in levels:
        by_code = np.full((nowhere + 1, width), np.nan)
        for name in names:
            if name in radius:
                by_code[code[name]] = np.asarray(radius[name][level], dtype=float)[:width]
        r = by_code[rows, steps]
        out[f"lo{level}"] = out["forecast"] - r * scale
        out[f"hi{level}"] = out["forecast"] + r * scale
    return out


def interval_scores(table: pd.DataFrame, scales: dict[str, float], levels: list[int]) -> dict[str, dict[str, float]]:
    """Per forecaster with intervals: at each level the coverage over its points with an interval and the MSIS
    (M4's interval score, scaled per series as MASE) averaged over those series, and ``interval_series_<level>``,
    how many series have one. A series without a scale (a flat history) has no interval: ``missing_intervals``
    counts them; nor has a fallback forecast without a forecaster of its kind in the set (``borrowed_radii``)."""
    out: dict[str, dict[str, float]] = {}
    for name, rows in table.groupby("forecaster", sort=False):
        scores: dict[str, float] = {}
        for level in levels:
            column = f"lo{level}"
            if column not in rows or rows[column].isna().all():
                continue
            has = rows[rows[column].notna()]
            actual = has["actual"].to_numpy(dtype=float)
            scores[f"coverage_{level}"] = float(np.mean((actual >= has[column]) & (actual <= has[f"hi{level}"])))
            per_series = [msis(part["actual"].to_numpy(dtype=float), part[column].to_numpy(dtype=float),
                               part[f"hi{level}"].to_numpy(dtype=float), level, np.full(len(part), scales[sid]))
                          for sid, part in has.groupby("id", sort=False)]
            scores[f"msis_{level}"] = float(np.mean(per_series))
            # What the two are over: pooling panels weighs each by it (stages/report.py, pooled).
            scores[f"interval_series_{level}"] = len(per_series)
        if scores:
            out[str(name)] = scores
    return out


def missing_intervals(scales: dict[str, float]) -> int:
    """Series that get no interval: their history has no scale (flat)."""
    return sum(not np.isfinite(v) for v in scales.values())
