"""Collecting a seq sweep: the newest run per seq, the horizon, the budget beside each verdict."""

from __future__ import annotations

import json
import os

import numpy as np

import pandas as pd
import pytest

from stages.lib.errors import CommandError
from stages.tools.horizon import (article_claim, bracket, horizon_table, horizons, keep, next_seq, outcome,
                                  read_ledger, render, runs_from_exp_show, tolerance, verdicts_of, waiting_out_other_dvc,
                                  write_ledger)


def run(seq: int, remembers: dict[str, bool], timestamp: str = "2026-01-01T00:00:00", task: str = "first_last") -> dict:
    memory = {"task": task, "seq": seq, "probed_positions": {"first": 0, "last": seq - 1}}
    for model, verdict in remembers.items():
        memory[model] = {"change_first_pct": 24.0 if verdict else 0.5, "change_first_pct_min": 20.0 if verdict else 0.0,
                         "change_first_pct_max": 25.0 if verdict else 1.0, "blind_first_mse": 0.01 if verdict else 0.3,
                         "remembers_first": verdict, "remembers_first_fraction": 1.0 if verdict else 0.0, "seeds": 3,
                         "epochs_run": 40, "samples_seen": 80000}
    params = {"seq": seq, "train_memory": {"models": list(remembers), "fit": {"max_epochs": 40, "batch_size": 64,
                                                                            "patience": 10, "target_val_loss": 0.005}}}
    return {"params": {"params.yaml": {"data": params}}, "metrics": {"reports/metrics/memory.json": {"data": memory}},
            "timestamp": timestamp}


def exp_show(*runs: tuple[str, dict]) -> list[dict]:
    base_name, base = runs[0]
    return [{"rev": "abc", "name": base_name, "data": base,
             "experiments": [{"name": name, "revs": [{"rev": name, "data": {**data, "name": name}}]} for name, data in runs[1:]]}]


def test_horizon_is_the_largest_seq_that_remembers():
    shown = exp_show(
        ("main", run(70, {"lstm": False, "tcn": True})),
        ("exp-10", run(10, {"lstm": True, "tcn": True})),
        ("exp-40", run(40, {"lstm": True, "tcn": True})),
        ("exp-50", run(50, {"lstm": False, "tcn": True})),
        ("exp-adding", run(20, {"lstm": True, "tcn": True}, task="adding")),  # not a probe task: left out
    )
    table = horizon_table(runs_from_exp_show(shown))
    assert sorted(table["seq"].unique()) == [10, 40, 50, 70]
    found = horizons(table)
    assert found["lstm", "default"] == {"remembers_up_to": 40, "forgets_from": 50, "seqs": [10, 40, 50, 70],
                                        "answer": "remembers up to 40, forgets at 50 (bracket not yet within 10%)"}
    assert found["tcn", "default"]["remembers_up_to"] == 70 and found["tcn", "default"]["forgets_from"] is None
    md = render(table, found)
    assert "| lstm | default | remembers up to 40, forgets at 50 (bracket not yet within 10%) | 40 | 50 | 10, 40, 50, 70 |" in md
    assert "| lstm | 50 | +0.5% [+0.0, +1.0] | 0.300 | no (0% of 3) | 40 | 80000 | 40, 64, 10, 0.005 | exp-50 |" in md


def test_newest_run_wins_a_seq():
    shown = exp_show(
        ("main", run(70, {"lstm": False})),
        ("old", run(30, {"lstm": False}, timestamp="2026-01-01T00:00:00")),
        ("new", run(30, {"lstm": True}, timestamp="2026-02-01T00:00:00")),
    )
    table = horizon_table(runs_from_exp_show(shown))
    (row,) = table[table["seq"] == 30].itertuples()
    assert row.experiment == "new" and bool(row.remembers_first) is True


def test_a_timing_run_of_a_point_never_replaces_its_verdict():
    """benchmarks/gpu_floor.py search repeats a search point (same seq and seeds) under a gpu-floor- name: while it
    exists it must not win the point as the newest run."""
    shown = exp_show(
        ("main", run(70, {"lstm": False})),
        ("hz-default-lstm-30", run(30, {"lstm": True}, timestamp="2026-01-01T00:00:00")),
        ("gpu-floor-lstm-30-123", run(30, {"lstm": False}, timestamp="2026-02-01T00:00:00")),
    )
    assert [r["name"] for r in runs_from_exp_show(shown)] == ["main", "hz-default-lstm-30"]
    (row,) = horizon_table(runs_from_exp_show(shown)).query("seq == 30").itertuples()
    assert row.experiment == "hz-default-lstm-30" and bool(row.remembers_first) is True


def test_never_remembering_is_said_in_words():
    table = horizon_table(runs_from_exp_show(exp_show(("main", run(70, {"lstm": False})))))
    found = horizons(table)
    assert found["lstm", "default"]["remembers_up_to"] is None
    assert "| lstm | default | forgets at every seq tried, down to 70 (search unfinished) | — | 70 | 70 |" in render(table, found)


# ------------------------------------------------------------ the search's next point

def walk(truth, **kwargs) -> tuple[dict[int, bool], list[int]]:
    """Run the search against a verdict oracle until it stops; return the verdicts and the order tried."""
    verdicts, tried = dict(kwargs.pop("known", {})), []
    while (seq := next_seq(verdicts, **kwargs)) is not None:
        assert seq not in verdicts, f"asked for {seq} twice"
        tried.append(seq)
        verdicts[seq] = truth(seq)
        assert len(tried) < 40
    return verdicts, tried


@pytest.mark.parametrize("boundary", [2, 3, 7, 19, 20, 45, 68, 150, 400, 999])
def test_monotone_boundary_is_bracketed_within_tolerance(boundary):
    verdicts, tried = walk(lambda seq: seq <= boundary)
    lo, hi = bracket(verdicts)
    assert lo is not None and lo <= boundary < hi
    assert hi - lo <= tolerance(lo)
    assert len(tried) <= 12


def test_the_article_points_come_first_and_then_the_search():
    verdicts, tried = walk(lambda seq: seq <= 68, include=(68, 69))
    assert tried[:2] == [68, 69]
    assert bracket(verdicts) == (68, 69) and len(tried) == 2  # 68 and 69 already bracket within 2


def test_never_remembers_stops_at_the_lowest_seq():
    verdicts, tried = walk(lambda seq: False)
    assert tried == [64, 32, 16, 8, 4, 2]
    assert bracket(verdicts) == (None, 2)
    assert outcome(verdicts) == "forgets at every seq tried, down to 2"


def test_always_remembers_stops_at_the_highest_seq():
    verdicts, tried = walk(lambda seq: True)
    assert tried == [64, 128, 256, 512, 1000]
    assert outcome(verdicts) == "remembers at every seq tried, up to 1000"
    _, capped = walk(lambda seq: True, highest=300)
    assert capped == [64, 128, 256, 300]


def test_a_seed_flip_above_the_boundary_moves_the_bracket_up():
    # The model remembers to 40, but at 100 a lucky majority remembered once.
    flips = {100: True}
    verdicts, _ = walk(lambda seq: flips.get(seq, seq <= 40), known={64: False, 100: True})
    lo, hi = bracket(verdicts)
    assert lo == 100 and hi - lo <= tolerance(lo)  # the rule: the largest seq that remembers
    # ... and a flip to "forgets" below the boundary is simply passed over.
    verdicts, _ = walk(lambda seq: seq <= 40 and seq != 16)
    lo, hi = bracket(verdicts)
    assert lo <= 40 < hi and hi - lo <= tolerance(lo)


def test_resume_from_partial_results_asks_only_for_what_is_missing():
    truth = lambda seq: seq <= 90  # noqa: E731
    full, tried = walk(truth)
    for cut in range(1, len(tried)):
        known = {seq: full[seq] for seq in tried[:cut]}
        resumed, rest = walk(truth, known=known)
        assert rest == tried[cut:] and resumed == full


def test_a_finished_search_asks_for_nothing():
    assert next_seq({64: True, 70: False}) is None
    assert next_seq({2: False}) is None
    assert next_seq({1000: True}) is None
    assert next_seq({}) == 64


def test_budgets_are_kept_apart_and_seeds_must_match():
    article = run(68, {"lstm": True})
    article["params"]["params.yaml"]["data"]["train_memory"].update(budget="article", seeds=[0, 1, 2])
    default = run(68, {"lstm": False})
    default["params"]["params.yaml"]["data"]["train_memory"]["seeds"] = [0, 1, 2]
    one_seed = run(40, {"lstm": True})
    table = horizon_table(runs_from_exp_show(exp_show(("main", one_seed), ("a", article), ("d", default))))
    assert verdicts_of(table, "lstm", "article", (0, 1, 2)) == {68: True}
    assert verdicts_of(table, "lstm", "default", (0, 1, 2)) == {68: False}
    assert verdicts_of(table, "lstm", "default") == {40: True, 68: False}
    row = table[table["budget"] == "article"].iloc[0]
    assert (row["max_epochs"], row["batch_size"]) == (1000, 256) and pd.isna(row["patience"])


def test_article_claim_sentence_from_the_verdicts():
    def at(seq, ok):
        r = run(seq, {"lstm": ok})
        r["params"]["params.yaml"]["data"]["train_memory"]["budget"] = "article"
        return (f"e{seq}", r)

    table = horizon_table(runs_from_exp_show(exp_show(("main", run(70, {"lstm": False})), at(68, False), at(69, False),
                                                      at(32, True), at(40, False), at(36, True))))
    sentence = article_claim(table)
    assert "does not reproduce" in sentence and "forgets x[0] at seq 68 (0 of 3 seeds)" in sentence
    assert "between seq 36 and 40" in sentence
    table = horizon_table(runs_from_exp_show(exp_show(("main", run(70, {"lstm": False})), at(68, True), at(69, False))))
    assert "reproduces**" in article_claim(table)


def test_the_search_log_adds_up_over_resumed_runs(tmp_path):
    from stages.tools.horizon import record_search

    log = tmp_path / "search.json"
    record_search(log, "default", ["lstm"], 1000, ran=3, wall_s=60.0, before={})
    first = json.loads(log.read_text())["default"]
    record_search(log, "article", ["lstm"], 300, ran=1, wall_s=5.0, before={})  # another budget beside it
    record_search(log, "default", ["gru"], 1000, ran=2, wall_s=30.0, before=first)  # a resumed search
    entries = json.loads(log.read_text())
    assert entries["default"] == {"models": ["gru", "lstm"], "lowest": 2, "highest": 1000, "experiments": 5,
                                  "wall_s": 90.0}
    assert entries["article"]["experiments"] == 1


def test_the_ledger_keeps_every_experiment_verdict_and_a_fresh_clone_resumes_from_it(tmp_path):
    ledger = tmp_path / "horizon_points.csv"
    first = runs_from_exp_show(exp_show(("main", run(70, {"lstm": False})), ("e16", run(16, {"lstm": True})),
                                        ("e32", run(32, {"lstm": False}))))
    keep(first, ledger)
    kept = read_ledger(ledger)
    # the commit's own run (seq 70) is not an experiment: it is reported, not kept
    assert list(kept["seq"]) == [16, 32] and list(kept["experiment"]) == ["e16", "e32"]
    assert kept.loc[0, "seed_list"] == (0,) and bool(kept.loc[0, "remembers_first"]) is True
    # a fresh clone has no experiments: the search's next point comes from the ledger alone
    table = horizon_table([], known=read_ledger(ledger))
    assert verdicts_of(table, "lstm", "default", (0,)) == {16: True, 32: False}
    assert next_seq(verdicts_of(table, "lstm", "default", (0,))) == 23
    # a later search adds its verdicts; the earlier ones stay
    keep(runs_from_exp_show(exp_show(("main", run(70, {"lstm": False})), ("e23", run(23, {"lstm": False})))), ledger)
    assert list(read_ledger(ledger)["seq"]) == [16, 23, 32]
    # written twice from the same verdicts, the file is the same bytes
    before = ledger.read_bytes()
    write_ledger(read_ledger(ledger), ledger)
    assert ledger.read_bytes() == before


def test_an_experiment_rerun_with_as_many_seeds_wins_over_the_ledger(tmp_path):
    ledger = tmp_path / "horizon_points.csv"
    keep(runs_from_exp_show(exp_show(("main", run(70, {"lstm": False})),
                                     ("old", run(30, {"lstm": False}, timestamp="2026-01-01T00:00:00")))), ledger)
    rerun = runs_from_exp_show(exp_show(("main", run(70, {"lstm": False})),
                                        ("new", run(30, {"lstm": True}, timestamp="2026-02-01T00:00:00"))))
    (row,) = horizon_table(rerun, known=read_ledger(ledger)).query("seq == 30").itertuples()
    assert row.experiment == "new" and bool(row.remembers_first) is True


def test_a_ledger_edited_by_hand_is_refused_by_name(tmp_path):
    ledger = tmp_path / "horizon_points.csv"
    ledger.write_text("budget,model,seq\ndefault,lstm,16\n")
    with pytest.raises(Exception, match=r"horizon_points.csv: missing column\(s\) experiment"):
        read_ledger(ledger)


def test_an_unfinished_or_stale_experiment_gives_no_verdict():
    running = run(37, {"lstm": False})
    running["params"]["params.yaml"]["data"]["seq"] = 37
    running["metrics"]["reports/metrics/memory.json"]["data"]["seq"] = 70  # the baseline's metrics, still
    shown = exp_show(("main", run(70, {"lstm": False})), ("stale", running), ("done", run(40, {"lstm": False})))
    shown[0]["experiments"].append({"name": "busy", "executor": {"state": "running"},
                                    "revs": [{"rev": "busy", "data": {**run(44, {"lstm": True}), "name": "busy"}}]})
    names = [r["name"] for r in runs_from_exp_show(shown)]
    assert names == ["main", "done"]


def test_a_queue_worker_removing_its_workspace_mid_show_is_tried_again_and_other_errors_are_not():
    """CI saw `dvc exp show` fail once because a worker removed .dvc/tmp/exps/tmp…/.dvc while it read."""
    failures = [CommandError("dvc exp show --all-commits: ERROR: failed to show experiments - directory "
                             "'/p/.dvc/tmp/exps/tmpej5y6y4y/.dvc' does not exist"),
                CommandError("dvc exp show: ERROR: Unable to acquire lock. Most likely another DVC process is running")]
    calls = []

    def flaky():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "shown"

    assert waiting_out_other_dvc(flaky, pause=0) == "shown" and len(calls) == 3

    def broken():
        calls.append(1)
        raise CommandError("dvc exp show: ERROR: unexpected error - 'params.yaml' does not exist")

    calls.clear()
    with pytest.raises(CommandError, match="params.yaml"):
        waiting_out_other_dvc(broken, pause=0)
    assert len(calls) == 1


# ------------------------------------------------------------ the horizon with a confidence interval

def test_the_fifty_percent_point_by_hand():
    from stages.tools.horizon import fifty_point

    seq = np.array([10, 20, 40, 80])
    # 1, 0.75, 0.25, 0: crosses 50% halfway between 20 and 40 in log seq, at sqrt(20 * 40).
    assert fifty_point(seq, np.array([1.0, 0.75, 0.25, 0.0])) == pytest.approx(np.sqrt(800))
    assert fifty_point(seq, np.array([1.0, 1.0, 0.5, 0.5])) is None  # never below 50%: beyond the last seq
    assert fifty_point(seq, np.array([0.4, 0.3, 0.0, 0.0])) is None  # below 50% from the first seq


def test_the_horizon_fit_recovers_a_known_fifty_percent_point_from_seed_verdicts():
    """Seeds drawn with P(remember) = 1 / (1 + (seq / 100)^6): the 50% point is 100, and the interval covers it."""
    from stages.tools.horizon import horizon_interval

    rng = np.random.default_rng(7)
    seq = np.array([40, 55, 70, 85, 100, 118, 140, 180, 250])
    n = np.full(len(seq), 40)
    k = rng.binomial(n, 1 / (1 + (seq / 100.0) ** 6))
    h = horizon_interval(pd.DataFrame({"seq": seq, "k": k, "n": n}), draws=400)
    assert h["horizon"] == pytest.approx(100, rel=0.1)
    assert h["low"] < 100 < h["high"] and h["within_goal"]
    # Three seeds per seq on the same curve (k = 3 p rounded: 3 3 3 2 2 1 0 0 0): located, and wider.
    few = horizon_interval(pd.DataFrame({"seq": seq, "k": [3, 3, 3, 2, 2, 1, 0, 0, 0], "n": np.full(len(seq), 3)}),
                           draws=400)
    assert few["horizon"] == pytest.approx(100, rel=0.15) and few["half_width"] > h["half_width"]


def test_the_logistic_horizon_recovers_a_known_fifty_percent_point_from_seed_verdicts():
    """P(remember) = 1 / (1 + (seq / 100)^6) is logistic in log seq (slope -6, 50% at 100). With the seeds that
    remember at their expected counts (40 p, rounded: a random draw would fail the deviance test 1 time in 20, as
    it should), the logistic fit finds the curve, its interval covers 100 within the goal, and it is the one the
    estimate uses."""
    from stages.tools.horizon import horizon_estimate

    seq = np.array([40, 55, 70, 85, 100, 118, 140, 180, 250])
    n = np.full(len(seq), 40)
    k = np.round(n / (1 + (seq / 100.0) ** 6)).astype(int)
    h = horizon_estimate(pd.DataFrame({"seq": seq, "k": k, "n": n}), draws=400)
    assert h["method"] == "logistic" and h["horizon"] == pytest.approx(100, rel=0.05)
    assert h["low"] < 100 < h["high"] and h["within_goal"] and h["fit_p"] > 0.05
    assert h["params"][1] == pytest.approx(-6, rel=0.25)
    assert h["isotonic"]["horizon"] == pytest.approx(100, rel=0.1)  # the other fit is kept beside it


def test_the_logistic_fit_by_hand_and_against_statsmodels():
    from scipy.special import logit

    from stages.tools.horizon import deviance_p, logistic_crossing, logistic_fit

    # Shares 0.8, 0.5, 0.2 at seq 10, 100, 1000 lie exactly on a logistic curve in log seq, symmetric about 100:
    # the fit goes through them (deviance 0, p = 1) and crosses 50% at 100.
    seq, n = np.array([10, 100, 1000]), np.full(3, 10)
    k = np.array([8, 5, 2])
    ab = logistic_fit(seq, k, n)[0]
    assert ab == pytest.approx([0.0, logit(0.8) / -np.log(10)], abs=1e-9)
    assert logistic_crossing(seq, ab)[0] == pytest.approx(100)
    assert deviance_p(seq, k, n, ab) == pytest.approx(1.0)
    # Draws at once, each the maximum-likelihood fit statsmodels' GLM finds.
    import statsmodels.api as sm

    seq = np.array([12, 16, 23, 32, 45, 64])
    n = np.array([6, 9, 12, 12, 9, 6])
    draws = np.random.default_rng(3).binomial(n, [0.9, 0.8, 0.6, 0.45, 0.3, 0.1], size=(5, len(seq)))
    fits = logistic_fit(seq, draws, n)
    x = sm.add_constant(np.log(seq) - np.log(seq).mean())
    for k, ab in zip(draws, fits):
        glm = sm.GLM(np.column_stack([k, n - k]), x, family=sm.families.Binomial()).fit()
        assert ab == pytest.approx(glm.params, rel=1e-6)


def test_separated_seeds_have_no_logistic_fit_and_the_isotonic_one_is_used():
    from stages.tools.horizon import horizon_estimate, logistic_fit, separated

    n = np.full(4, 3)
    rows = np.array([[3, 3, 0, 0],   # remember below, forget above: separated
                     [3, 2, 0, 0],   # one mixed seq at the boundary: still separated (quasi-complete)
                     [3, 2, 1, 0],   # mixed at two seqs: a fit exists
                     [0, 0, 3, 3],   # the other way round
                     [3, 3, 3, 3],   # all remember
                     [2, 3, 0, 1],   # a seed remembers above one that forgets
                     [0, 1, 3, 3]])  # rising, one mixed seq: separated the other way
    assert separated(rows, n).tolist() == [True, True, False, True, True, False, True]
    assert separated(np.array([[2]]), np.array([3])).tolist() == [True]  # one seq: no slope to fit
    assert np.isnan(logistic_fit(np.array([16, 32, 64, 128]), rows, n)[[0, 1, 3, 4]]).all()
    h = horizon_estimate(pd.DataFrame({"seq": [16, 32, 64, 128], "k": [3, 3, 0, 0], "n": n}), draws=200)
    assert h["method"] == "isotonic" and h["logistic"]["horizon"] is None
    assert "separated" in h["logistic"]["why"] and h["horizon"] == pytest.approx(np.sqrt(32 * 64))


def test_a_logistic_curve_that_does_not_fit_the_seeds_is_not_used():
    """Shares that rise and fall again (all 40 remember at 10 and 40, none at 20 and beyond) are no logistic
    curve: its deviance test rejects it, and the isotonic horizon is the one reported."""
    from stages.tools.horizon import horizon_estimate

    points = pd.DataFrame({"seq": [10, 20, 40, 80, 160], "k": [40, 0, 40, 0, 0], "n": np.full(5, 40)})
    h = horizon_estimate(points, draws=200)
    assert h["logistic"]["horizon"] is not None and h["logistic"]["fit_p"] < 1e-6
    assert h["method"] == "isotonic" and h["horizon"] == h["isotonic"]["horizon"]


def test_the_logistic_interval_covers_as_it_says_with_many_seeds_and_less_with_few():
    """The coverage check behind the choice of fit: seeds drawn from a known logistic curve (50% at 100) at a
    design of 9 seqs. With 40 seeds per seq a nominal 90% interval covers the truth close to 90% of the time
    (200 sets: a binomial band of about ±5 points around 87.5%); with 3 per seq it covers markedly less."""
    from stages.tools.horizon import simulated_coverage

    seq = np.array([60, 70, 80, 90, 100, 112, 125, 140, 160])
    ab = np.array([6 * (np.log(100) - np.log(seq).mean()) * -1, -6.0])  # a + b (log seq - mean) = 0 at 100
    many = simulated_coverage(seq, np.full(9, 40), ab, reps=200, draws=300, level=0.9, rng=np.random.default_rng(0))
    few = simulated_coverage(seq, np.full(9, 3), ab, reps=200, draws=300, level=0.9, rng=np.random.default_rng(0))
    assert 0.82 <= many <= 0.95
    assert few < many - 0.04 and few < 0.86


def test_a_logistic_interval_too_narrow_for_its_seeds_is_not_used():
    """Three seeds per seq on a logistic curve: the fit exists and fits, but its 90% interval covers about 80%
    at this design, below the 85% the rule asks: the isotonic horizon is reported."""
    from stages.tools.horizon import horizon_estimate

    seq = np.array([60, 70, 80, 90, 100, 112, 125, 140, 160])
    h = horizon_estimate(pd.DataFrame({"seq": seq, "k": [3, 3, 2, 2, 2, 1, 1, 0, 0], "n": np.full(9, 3)}), draws=400)
    assert h["logistic"]["horizon"] is not None and h["logistic"]["fit_p"] > 0.5
    assert h["logistic"]["coverage"] < 0.85 and not h["logistic"]["usable"]
    assert h["method"] == "isotonic" and h["horizon"] == h["isotonic"]["horizon"]


def test_the_refinement_follows_the_logistic_curve_when_it_is_used():
    """Seeds go where the fitted curve in use is least certain, p (1 - p) / n: under a logistic fit that is
    not the isotonic curve's choice; and whole-number seqs next to a small horizon do not stop a logistic
    refinement (seeds still narrow its interval), as they stop an isotonic one."""
    from stages.tools.horizon import logistic_curve, next_refinement

    points = pd.DataFrame({"seq": [90, 100, 110], "k": [20, 10, 3], "n": [30, 30, 12]})
    ab = np.array([0.0, -4.0])  # 50% at the geometric mean of the seqs, about 99.7
    h = {"horizon": 99.7, "low": 80.0, "high": 125.0, "half_width": 0.25, "method": "logistic", "params": ab}
    p = logistic_curve(points["seq"].to_numpy(), ab)
    assert next_refinement(points, h) == points["seq"][np.argmax(p * (1 - p) / points["n"])]
    # A horizon of 2.4 between seq 2 and 3: ±25% apart, and no whole seq between them.
    small = pd.DataFrame({"seq": [2, 3, 4], "k": [7, 2, 0], "n": [9, 9, 9]})
    tiny = {"horizon": 2.4, "low": 2.0, "high": 3.0, "half_width": 0.25, "method": "logistic",
            "params": np.array([-1.0, -4.0])}
    assert next_refinement(small, tiny) in (2, 3)
    assert next_refinement(small, {**tiny, "method": "isotonic"}) is None


def test_the_report_shows_both_fits_and_says_why_one_is_missing():
    from stages.tools.horizon import confidence_section

    def rows(model: str, shares: dict[int, tuple[int, int]]) -> list[dict]:
        return [{"budget": "default", "model": model, "seq": seq, "remembers_first_fraction": k / n, "seeds": n}
                for seq, (k, n) in shares.items()]

    seq = [60, 70, 80, 90, 100, 112, 125, 140, 160]
    many = dict(zip(seq, zip(np.round(40 / (1 + (np.array(seq) / 100.0) ** 6)).astype(int), [40] * 9)))
    table = pd.DataFrame(rows("wide", many) + rows("two", {16: (2, 3), 32: (1, 3)})
                         + rows("clean", {16: (3, 3), 32: (3, 3), 64: (0, 3)}))
    md = "\n".join(confidence_section(table))
    assert "| wide | default | 40 | logistic |" in md and "nan" not in md
    assert "| two | default | 3 | isotonic |" in md  # two seqs: no deviance test, so the isotonic fit
    assert "| two | default | **22.6** | below 16 to beyond 32 (unbounded) | 22.6 | below 16 to beyond 32 (unbounded) | — |" in md  # ... its p shown as —
    assert "| clean | default | **45.3** | 32 to 64 (±41%) | — | the seeds are separated in seq: no logistic fit | — | — | — |" in md


def test_the_seeds_needed_for_the_goal_by_hand():
    from stages.tools.horizon import seeds_to_goal

    # ±30% from 100 seeds: twice the goal's ±15% width needs four times the seeds if it narrows as 1/sqrt(seeds).
    assert seeds_to_goal(0.30, 100) == 400
    assert seeds_to_goal(0.75, 210) == 5250  # ±75% from 210 seeds: 25 times as many
    assert seeds_to_goal(0.151, 10) == 11  # rounded up
    assert seeds_to_goal(float("inf"), 50) is None


def test_the_figure_draws_one_dot_per_seed_above_one_or_below_zero_the_same_every_time():
    from stages.tools.horizon import seed_dots

    points = pd.DataFrame({"seq": [16, 32, 64], "k": [3, 2, 0], "n": [3, 6, 3]})
    x, y = seed_dots(points)
    assert len(x) == 12 and (y > 1).sum() == 5 and (y < 0).sum() == 7
    at_32 = np.abs(np.log(x / 32)) < 0.05
    assert at_32.sum() == 6 and (y[at_32] > 1).sum() == 2  # each dot stays by its own seq
    again = seed_dots(points)
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1])


def test_seeds_that_all_agree_leave_the_grid_as_the_only_limit():
    from stages.tools.horizon import horizon_interval

    points = pd.DataFrame({"seq": [16, 32, 64, 128], "k": [3, 3, 0, 0], "n": [3, 3, 3, 3]})
    h = horizon_interval(points, draws=200)
    assert h["horizon"] == pytest.approx(np.sqrt(32 * 64))  # halfway in log seq
    assert (h["low"], h["high"]) == (32, 64) and h["outside_share"] == 0.0


def seeded_run(seq: int, model: str, seeds: tuple[int, ...], remembered: int, timestamp: str) -> dict:
    """A run of ``model`` at ``seq`` with these seeds, ``remembered`` of them remembering x[0]."""
    data = run(seq, {model: remembered * 2 > len(seeds)}, timestamp)
    memory = data["metrics"]["reports/metrics/memory.json"]["data"][model]
    memory.update(remembers_first_fraction=remembered / len(seeds), seeds=len(seeds), change_first_pct=10.0 * remembered)
    data["params"]["params.yaml"]["data"]["train_memory"]["seeds"] = list(seeds)
    return data


def test_runs_of_disjoint_seeds_at_one_seq_add_up_and_a_rerun_of_the_same_seeds_replaces():
    shown = runs_from_exp_show(exp_show(
        ("main", run(8, {"lstm": True})),
        ("a", seeded_run(16, "lstm", (0, 1, 2), 2, "2026-01-01T00:00:00")),
        ("b", seeded_run(16, "lstm", (3, 4, 5), 1, "2026-01-02T00:00:00")),
        ("c", seeded_run(17, "lstm", (0, 1, 2), 1, "2026-01-01T00:00:00")),
        ("d", seeded_run(17, "lstm", (0, 1, 2), 2, "2026-01-03T00:00:00"))))  # a rerun: the newest wins
    combined = horizon_table(shown).set_index("seq")
    assert combined.loc[16, "seeds"] == 6 and combined.loc[16, "remembers_first_fraction"] == pytest.approx(0.5)
    assert not combined.loc[16, "remembers_first"]  # 3 of 6 is no majority
    assert combined.loc[16, "experiment"] == "a+b" and combined.loc[16, "seed_list"] == (0, 1, 2, 3, 4, 5)
    assert combined.loc[16, "change_first_pct"] == pytest.approx((20.0 * 3 + 10.0 * 3) / 6)
    assert combined.loc[17, "experiment"] == "d" and combined.loc[17, "seeds"] == 3
    # The ledger keeps one row per experiment; the search's bracket reads the base seeds' runs only.
    each = horizon_table(shown, combine=False)
    assert sorted(each.loc[each["seq"] == 16, "experiment"]) == ["a", "b"]
    assert verdicts_of(each, "lstm", "default", (0, 1, 2))[16] is True


def test_the_refinement_adds_a_seq_where_the_grid_is_coarser_than_the_goal_then_seeds_where_least_certain():
    from stages.tools.horizon import horizon_interval, new_seeds, next_refinement

    # The LSTM's default-budget points: 2 of 3 seeds at 16, 1 of 3 at 17 and 19: nothing tried below 16.
    points = pd.DataFrame({"seq": [16, 17, 19, 23, 32], "k": [2, 1, 1, 0, 0], "n": [3, 3, 3, 3, 3]})
    h = horizon_interval(points, draws=300)
    assert not h["within_goal"]
    target = next_refinement(points, h)
    assert h["low"] == 0 and target == 14  # draws below every seq tried: one goal's width (15%) below 16
    # Neighbours inside the band on both sides: seeds go to the least certain seq of the band.
    grid = pd.DataFrame({"seq": [40, 44, 46, 48, 52, 56, 80], "k": [3, 3, 2, 2, 3, 0, 0], "n": [3, 3, 3, 3, 6, 3, 3]})
    hg = horizon_interval(grid, draws=300)
    assert hg["horizon"] == pytest.approx(52) and 0.10 < hg["half_width"] <= 0.15
    # Within ±15%: nothing more. To ±10%, both neighbours (52 itself, 56) lie inside the band 46.8..57.2, so
    # seeds go where p (1 - p) / n is largest: 48 (2 of 3 seeds) against 52's 3 of 6 and 56's none of 3.
    assert next_refinement(grid, hg) is None
    assert next_refinement(grid, hg, width=0.10) == 48
    assert new_seeds({0, 1, 2}, 3) == (3, 4, 5) and new_seeds(set(), 3) == (0, 1, 2)
    # Every seed remembers everywhere: the range widens upwards.
    assert next_refinement(pd.DataFrame({"seq": [8, 16], "k": [3, 3], "n": [3, 3]}), {"horizon": None}) == 32


@pytest.mark.parametrize("fit", ["horizon_estimate", "horizon_interval"])  # the search's, and the isotonic alone
def test_a_simulated_refinement_narrows_a_known_horizon_to_the_goal_within_its_budget(fit):
    """Seeds drawn with P(remember) = 1 / (1 + (seq / 40)^8); the search's own functions choose every next
    experiment of three seeds: bracket first, then refinement. The 50% point is 40."""
    from stages.tools import horizon as module
    from stages.tools.horizon import new_seeds, next_refinement, seed_outcomes

    rng = np.random.default_rng(3)
    k_of = lambda seq, seeds: int(rng.binomial(seeds, 1 / (1 + (seq / 40.0) ** 8)))  # noqa: E731
    points: dict[int, list[int]] = {}  # seq -> [k, n]
    experiments = 0
    while (seq := next_seq({s: 2 * k > n for s, (k, n) in points.items()})) is not None:
        points[seq] = [k_of(seq, 3), 3]
        experiments += 1
    for _ in range(60):
        table = pd.DataFrame({"seq": list(points), "k": [v[0] for v in points.values()],
                              "n": [v[1] for v in points.values()]}).sort_values("seq", ignore_index=True)
        h = getattr(module, fit)(table, draws=300)
        target = next_refinement(table, h)
        if target is None:
            break
        k, n = points.get(target, [0, 0])
        points[target] = [k + k_of(target, 3), n + 3]
        experiments += 1
    assert h["within_goal"] and h["low"] <= 40 <= h["high"], h
    assert experiments <= 60, experiments
    assert set(seed_outcomes(pd.DataFrame({"seq": [16], "remembers_first_fraction": [0.5], "seeds": [6]}))["k"]) == {3}
    assert new_seeds({0, 1, 2, 3, 4, 5}, 3) == (6, 7, 8)


def test_a_second_queue_worker_gets_more_seeds_instead_of_idling():
    """With one model left refining and two queue workers, the experiment in flight counts: its seeds are used
    and it counts against the budget of experiments, so the next one takes the next seeds at the same seq."""
    from stages.tools.horizon import in_flight, refinement

    states = {"hz-article-lstm-34-s3": "running", "hz-article-lstm-37": "queued", "hz-article-gru-34": "running",
              "hz-default-lstm-34": "running", "hz-article-lstm-40": "failed", "other": "running"}
    assert in_flight(states, "article", "lstm", (0, 1, 2)) == [(34, (3, 4, 5)), (37, (0, 1, 2))]
    rows = [{"budget": "article", "model": "lstm", "seq": seq, "experiment": f"hz-article-lstm-{seq}",
             "seed_list": (0, 1, 2), "remembers_first_fraction": share, "seeds": 3}
            for seq, share in [(28, 1.0), (31, 2 / 3), (34, 2 / 3), (37, 1 / 3), (40, 1 / 3), (48, 1 / 3), (68, 0.0)]]
    table = pd.DataFrame(rows)
    target, seeds = refinement(table, "lstm", "article", (0, 1, 2), 0.15, 40, 1000)
    assert target is not None and seeds == (3, 4, 5)
    flying = [(target, (3, 4, 5))]
    assert refinement(table, "lstm", "article", (0, 1, 2), 0.15, 40, 1000, flying) == (target, (6, 7, 8))
    # In-flight experiments count against the budget: 7 finished + 1 flying reach a budget of 8.
    assert refinement(table, "lstm", "article", (0, 1, 2), 0.15, 8, 1000, flying) == (None, (0, 1, 2))


def test_a_horizon_between_two_neighbouring_whole_seqs_wider_than_the_goal_spends_no_more_seeds():
    from stages.tools.horizon import horizon_interval, next_refinement

    # 2 of 3 seeds remember at 3, 1 of 3 at 4: the 50% point is 3.46 (halfway in log seq), 3 and 4 lie 13% and
    # 15.5% from it, and there is no whole seq between them to try: the goal of ±15% cannot be reached.
    points = pd.DataFrame({"seq": [2, 3, 4, 6], "k": [3, 2, 1, 0], "n": [3, 3, 3, 3]})
    h = horizon_interval(points, draws=300)
    assert 3 <= h["horizon"] <= 4 and h["half_width"] > 0.15
    assert next_refinement(points, h) is None
    # The same shape ten times larger has room for another seq, and gets one.
    wide = points.assign(seq=points["seq"] * 10)
    assert next_refinement(wide, horizon_interval(wide, draws=300)) is not None


def test_the_search_starts_the_workers_again_while_a_point_waits_in_the_queue(tmp_path, monkeypatch):
    """A worker shutting down as a point is queued answers `dvc queue start`, then exits: the point would wait
    for ever. The search starts the workers at every look while a point is queued, not while it runs."""
    from stages.tools import horizon

    looks = iter([{}, {"hz-default-lstm-4": "queued"}, {"hz-default-lstm-4": "queued"},
                  {"hz-default-lstm-4": "running"}])
    calls = []

    class Stop(Exception):
        pass

    def shown_runs(all_commits, timeout=None):
        try:
            return [], next(looks)
        except StopIteration:
            raise Stop from None

    monkeypatch.setattr(horizon, "shown_runs", shown_runs)
    monkeypatch.setattr(horizon, "dvc", lambda *args: calls.append(args[:2]))
    monkeypatch.setattr(horizon.time, "sleep", lambda s: None)
    with pytest.raises(Stop):
        horizon.search(["lstm"], "default", (0, 1), (), 4, jobs=2, poll_s=0, all_commits=False,
                       log_file=tmp_path / "search.json", ledger=tmp_path / "points.csv")
    # Look 1 queues the point and starts the workers; looks 2 and 3 find it queued; look 4 finds it running.
    assert calls == [("exp", "run"), ("queue", "start"), ("queue", "start"), ("queue", "start")], calls
    assert json.loads((tmp_path / "search.json").read_text())["default"]["experiments"] == 1


def test_the_search_says_where_a_refined_horizon_stands_in_one_line():
    """The progress line a refining search prints as it queues: the estimate the report would give now, with its
    experiments and seeds counted; nothing for a model with no experiments at that budget."""
    from stages.tools.horizon import estimate_line, horizon_estimate, per_seq, seed_outcomes

    rows = [{"budget": "article", "model": "lstm", "seq": seq, "experiment": f"hz-article-lstm-{seq}",
             "seed_list": (0, 1, 2), "remembers_first_fraction": share, "seeds": 3}
            for seq, share in [(28, 1.0), (31, 2 / 3), (34, 2 / 3), (37, 1 / 3), (40, 1 / 3), (48, 1 / 3), (68, 0.0)]]
    table = pd.DataFrame(rows)
    h = horizon_estimate(seed_outcomes(per_seq(table)))
    line = estimate_line(table, "lstm", "article")
    assert line.startswith(f"50% horizon {h['horizon']:.1f}, 90% interval {h['low']:.0f} to {h['high']:.0f} (")
    assert line.endswith(f", {h['method']} fit) from 7 experiments, 21 seeds") and 31 <= h["horizon"] <= 48
    assert estimate_line(table, "gru", "article") == "" and estimate_line(table, "lstm", "default") == ""


def test_a_dvc_show_that_hangs_is_killed_as_one_line_and_tried_again(tmp_path, monkeypatch):
    """DVC issue 8762: `dvc exp show` can wait for ever on a lock. Past its time it is killed, which reads as a
    transient failure (tried again), and the time allowed follows the slowest show so far."""
    from stages.lib.infra import cli
    from stages.tools.horizon import HUNG_FLOOR_S, show_timeout, transient

    fake = tmp_path / "dvc"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(CommandError, match=r"^dvc exp show: no answer in 0.5 s$") as caught:
        cli.dvc_json("exp", "show", timeout=0.5)
    assert transient(str(caught.value)) and not transient("dvc exp show: ERROR: unexpected error")
    assert show_timeout(0.0) is None  # nothing measured yet: no limit on the first show
    assert show_timeout(3.0) == HUNG_FLOOR_S and show_timeout(60.0) == 300.0
