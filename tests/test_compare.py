"""The review comment: direction of each metric, the headline, Δ%, not-run lines, the size budget, valid GFM."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from stages.tools import compare
from stages.tools.compare import (ARTIFACT, COMMENT_BUDGET, COMMENT_FILE, FULL_FILE, changed_data_plots, judge,
                                  metric_rows, relative_pct, render, render_full, verdict_changes)

MEMORY = "reports/metrics/memory.json"
GFM = MarkdownIt("commonmark").enable("table")  # CommonMark with GitHub's table extension


def gfm_tables(markdown: str) -> list[list[list[str]]]:
    """Every table the parser finds, as rows of cell texts, after checking that each row has the header's cells.

    A GFM parser pads a short row and drops a long row's extra cells, so the
    parsed table alone cannot show a bad row. A row is a table's header only
    when it has exactly as many cells as the delimiter row under it, so each
    row is parsed once more as the header of the table's delimiter.
    """
    lines, tables, inside = markdown.splitlines(), [], False
    for token in GFM.parse(markdown):
        if token.type == "table_open":
            start, end = token.map
            delimiter = lines[start + 1]
            for row in [lines[start], *lines[start + 2:end]]:
                assert GFM.parse(f"{row}\n{delimiter}\n")[0].type == "table_open", f"cell count differs: {row}"
            tables.append([])
            inside = True
        elif token.type == "table_close":
            inside = False
        elif token.type == "tr_open":
            tables[-1].append([])
        elif token.type == "inline" and inside:
            tables[-1][-1].append(text(token))
    return tables


def text(inline) -> str:
    """A cell as a reader sees it: escapes resolved, a code span in backticks."""
    return "".join(f"`{c.content}`" if c.type == "code_inline" else c.content for c in inline.children)


def test_the_table_check_catches_a_row_of_the_wrong_width_and_an_unescaped_pipe():
    assert gfm_tables("| a | b |\n|---|---|\n| x\\|y | z |\n") == [[["a", "b"], ["x|y", "z"]]]
    with pytest.raises(AssertionError, match="cell count differs"):
        gfm_tables("| a | b |\n|---|---|\n| x|y | z |\n")
    with pytest.raises(AssertionError, match="cell count differs"):
        gfm_tables("| a | b |\n|---|---|\n| x |\n")


def memory_diff(**changes) -> dict:
    """A memory.json diff with every key unchanged but `changes` (key -> (old, new))."""
    base = {"seq": 10, "lstm.val_mse": 0.5, "lstm.val_mse_min": 0.4, "lstm.val_mse_max": 0.6,
            "lstm.remembers_first": False, "lstm.change_first_pct": 0.0, "lstm.blind_first_mse": 0.3}
    diff = {key: {"old": value, "new": value} for key, value in base.items()}
    diff.update({key: {"old": old, "new": new} for key, (old, new) in changes.items()})
    return {MEMORY: diff}


@pytest.mark.parametrize("key, old, new, mark", [
    ("lstm.val_mse", 0.5, 0.4, "better"),
    ("lstm.val_mse", 0.4, 0.5, "worse"),
    ("arima.mase", 1.0, 1.0005, "close"),            # within the default 0.1%
    ("lstm.change_first_pct", 10.0, 20.0, "better"),  # closer to the ideal +25
    ("lstm.change_first_pct", 24.0, 40.0, "worse"),
    ("lstm.change_first_pct", 20.0, 30.0, "same"),    # as far from +25 either way
    ("lstm.remembers_first", True, False, "worse"),
    ("lstm.remembers_first", False, True, "better"),
    ("lstm.persistence.persistent", False, True, "worse"),   # a warning flag: false is the good news
    ("lstm.persistence.persistent", True, False, "better"),
    ("lstm.all.smape", 2.0, 1.5, "better"),
    ("lstm.mse_all", 9000.0, 2500.0, "better"),
    ("ets.mean_rank", 3.2, 2.9, "better"),          # a panel's mean rank: 1 is best
    ("ets.wins_naive", 0.70, 0.75, "better"),       # the share of series beating naive: higher is better
    ("ets.wins_naive", 0.70, 0.65, "worse"),
    ("nbeats_g.members.smape_mean", 13.8, 13.5, "better"),  # an ensemble's members alone
    ("lstm.seeds.mase_best", 0.90, 0.95, "worse"),          # a median of seeds: its best seed alone
    ("lstm.seeds.mase_sd", 0.02, 0.05, "changed"),          # a spread has no better direction
    ("seq", 70, 69, "changed"),                       # no better direction
    ("lstm.epochs_run", 40, 12, "changed"),
    ("tcn.val_mse", None, 0.1, "changed"),            # new metric
    ("tcn.val_mse", 0.1, 0.1, "same"),
])
def test_judge_knows_each_direction(key, old, new, mark):
    assert judge(key, old, new) == mark


def test_rows_deltas_and_relative_change():
    diff = {"m.json": {"lstm.val_mse": {"old": 0.5, "new": 0.25, "diff": -0.25}, "seq": {"old": 10, "new": 20}}}
    rows = {r.key: r for r in metric_rows(diff)}
    assert rows["lstm.val_mse"].delta == -0.25 and rows["lstm.val_mse"].relative_pct == -50.0
    assert rows["seq"].delta == 10 and rows["seq"].relative_pct == 100.0


@pytest.mark.parametrize("old, new, pct", [
    (0.5, 0.25, -50.0),
    (2e-4, 1e-4, -50.0),             # a small loss still carries a percentage
    (0.03, 20.0, pytest.approx(66566.67, rel=1e-6)),   # base at 1.5e-3 of the new value: kept
    (0.01, 20.0, None),              # base under 1e-3 of the new value
    (-3.18521e-05, 21.8, None),      # the issue's +68,529,333.6%: a model ignoring x[0] that starts to use it
    (0.0, 1.0, None),
    (0.0, 0.0, None),
    (5e-7, 1e-6, None),              # under the absolute floor, however close the two are
    (True, False, None),
    ("drift", "lstm", None),
    (None, 1.0, None),
])
def test_relative_change_only_where_the_base_can_carry_it(old, new, pct):
    assert relative_pct(old, new) == pct


def test_a_near_zero_base_shows_no_percentage_in_either_file():
    diff = memory_diff(**{"lstm.change_first_pct": (-3.18521e-05, 21.8)})
    comment = render("main", "exp", {}, metric_rows(diff), [], [])
    full = render_full("main", "exp", {}, metric_rows(diff), [], [])
    assert "| lstm | false | -3.185e-05 → 21.8 ✅ |" in comment
    assert f"| {MEMORY} | lstm.change_first_pct | -3.18521e-05 | 21.8 | +21.8 | — | ✅ better |" in full
    assert "68,529" not in comment + full


def test_verdict_change_in_words():
    diff = {MEMORY: {
        "seq": {"old": 68, "new": 69},
        "lstm.remembers_first": {"old": True, "new": False},
        "tcn.remembers_first": {"old": True, "new": True},
    }}
    assert verdict_changes(metric_rows(diff)) == ["lstm: remembers_first true -> false at seq=69"]


def removed_models_diff() -> dict:
    diff = memory_diff(**{"lstm.val_mse": (0.5, 0.01), "lstm.remembers_first": (False, True)})
    for model in ("fullconv", "tcn"):
        for key, value in {"val_mse": 0.2, "val_mse_min": 0.1, "val_mse_max": 0.3, "test_mse": 0.2,
                           "remembers_first": True, "epochs_run": 12, "change_first_pct": 24.0}.items():
            diff[MEMORY][f"{model}.{key}"] = {"old": value, "new": None}
    return diff


def test_a_removed_model_is_one_line_not_its_metrics():
    rows = metric_rows(removed_models_diff())
    comment = render("HEAD", "exp-1a2b3", {}, rows, [], [])
    assert comment.count("Models not run in `exp-1a2b3`: fullconv, tcn") == 1
    assert "fullconv." not in comment and "tcn." not in comment and "absent" not in comment
    assert verdict_changes(rows) == ["lstm: remembers_first false -> true at seq=10"]
    assert "**0 param(s) changed, 2 metric(s) changed (0 regression(s))" in comment
    # The full file keeps them, each marked by the side that did not run it.
    full = render_full("HEAD", "exp-1a2b3", {}, rows, [], [])
    assert f"| {MEMORY} | tcn.val_mse | 0.2 [0.1, 0.3] | — | — | — | not run in `exp-1a2b3` |" in full
    assert "| tcn | " not in full  # no headline row for what head did not run


def test_an_added_dataset_is_one_line_and_its_column_says_not_run():
    before = {"best": "drift", "drift.all.mase": 0.9, "lstm.all.mase": 1.2}
    diff = {"reports/metrics/forecast-sales.json": {k: {"old": v, "new": v} for k, v in before.items()},
            "reports/metrics/forecast-nile.json": {k: {"old": None, "new": v} for k, v in before.items()}}
    diff["reports/metrics/forecast-sales.json"]["lstm.all.mase"]["new"] = 0.6
    comment = render("main", "HEAD", {}, metric_rows(diff), [], [])
    assert "Datasets not run in `main`: nile" in comment
    assert "| forecaster | nile | sales |" in comment
    assert "| best | not run → drift | drift |" in comment
    assert "| lstm | not run → 1.2 | 1.2 → 0.6 (-50.0%) ✅ |" in comment
    assert "nile.json" not in comment


def test_seed_spread_is_one_cell_median_min_max():
    diff = memory_diff(**{"lstm.val_mse": (0.5, 0.0123), "lstm.val_mse_min": (0.4, 0.0101),
                          "lstm.val_mse_max": (0.6, 0.015)})
    comment = render("main", "exp", {}, metric_rows(diff), [], [])
    assert "| lstm | false | 0 | 0.3 | 0.5 [0.4, 0.6] → 0.0123 [0.0101, 0.015] (-97.5%) ✅ |" in comment
    full = render_full("main", "exp", {}, metric_rows(diff), [], [])
    assert (f"| {MEMORY} | lstm.val_mse | 0.5 [0.4, 0.6] | 0.0123 [0.0101, 0.015] | -0.4877 | -97.5% | ✅ better |"
            in full)
    assert "val_mse_min" not in comment + full


def test_a_moved_spread_around_a_held_median_still_shows():
    diff = memory_diff(**{"lstm.val_mse_max": (0.6, 0.9)})
    comment = render("main", "exp", {}, metric_rows(diff), [], [])
    assert "| lstm | false | 0 | 0.3 | 0.5 [0.4, 0.6] → 0.5 [0.4, 0.9] |" in comment


def test_headline_first_then_params_figures_and_the_rest():
    diff = memory_diff(**{"seq": (68, 69), "lstm.remembers_first": (True, False), "lstm.val_mse": (0.01, 0.3),
                          "lstm.val_mse_min": (0.005, 0.2), "lstm.val_mse_max": (0.02, 0.4),
                          "lstm.epochs_run": (40, 12)})
    params = {"params.yaml": {"seq": {"old": 68, "new": 69}}}
    md = render("main", "workspace", params, metric_rows(diff), [("memory_probes", "memory_probes.png")], [])
    order = ["## `main` → `workspace`", "### Headline", "- lstm: remembers_first true -> false at seq=69",
             "Regressions: `memory: lstm.remembers_first`, `memory: lstm.val_mse`", "| model | remembers x[0] |",
             "| lstm | true → false ❌ | 0 | 0.3 | 0.01 [0.005, 0.02] → 0.3 [0.2, 0.4] (+2,900.0%) ❌ |",
             "### Params", "| seq | 68 | 69 |", "### Plots", "![memory_probes](memory_probes.png)",
             "### Other metrics that changed", "<details><summary>2 metric(s) that no headline table shows</summary>",
             f"| {MEMORY} | lstm.epochs_run | 40 | 12 | -28 | -70.0% | changed |"]
    positions = [md.index(line) for line in order]
    assert positions == sorted(positions)
    assert "lstm.val_mse" not in md.split("### Other metrics")[1]  # shown once, in the headline
    assert "unchanged" not in md  # unchanged metrics live in the full file only
    full = render_full("main", "workspace", params, metric_rows(diff), [("memory_probes", "memory_probes.png")], [])
    assert f"| {MEMORY} | lstm.blind_first_mse | 0.3 |" in full and "2 unchanged metric(s)" in full


def test_nothing_changed_is_one_line():
    diff = {"m.json": {"a.mse": {"old": 1.0, "new": 1.0}}}
    md = render("main", "HEAD", {"params.yaml": {}}, metric_rows(diff), [], [])
    assert md == "No changes between `main` and `HEAD`: params, metrics and plots are identical.\n"
    assert render_full("main", "HEAD", {"params.yaml": {}}, metric_rows(diff), [], []) == md


def synthetic_diff(n: int) -> dict:
    """n changed metrics in a benchmark file no headline kind knows, and a memory change for the headline."""
    diff = memory_diff(**{"lstm.remembers_first": (False, True)})
    diff["reports/metrics/benchmark.json"] = {f"series{i:05d}.all.mase": {"old": 1.0 + i, "new": 2.0 + i}
                                              for i in range(n)}
    return diff


def test_the_comment_stays_under_budget_with_5000_changed_metrics_and_the_full_file_has_every_row():
    rows = metric_rows(synthetic_diff(5000))
    comment = render("main", "HEAD", {}, rows, [], [], details_url="https://github.com/o/r/actions/runs/1")
    assert len(comment.encode()) <= COMMENT_BUDGET
    assert "- lstm: remembers_first false -> true at seq=10" in comment
    assert ("`compare-full.md`, in the `compare` artifact of [this workflow run](https://github.com/o/r/actions/runs/1)"
            in comment)
    shown = comment.count("| reports/metrics/benchmark.json | series")
    assert 100 < shown < 5000
    assert comment.rstrip().endswith(f"**Left out to stay under GitHub's comment limit (60,000 characters):** "
                                     f"{5000 - shown:,} metric row(s). `compare-full.md` has them all.")
    assert comment.count("<details>") == comment.count("</details>") == 1  # the cut table is still closed
    full = render_full("main", "HEAD", {}, rows, [], [])
    assert all(f"| reports/metrics/benchmark.json | series{i:05d}.all.mase | {1.0 + i:g} | {2.0 + i:g} |" in full
               for i in range(5000))
    assert "Left out" not in full
    assert sum(len(t) - 1 for t in gfm_tables(comment)) == 1 + shown  # the memory row, the benchmark rows


def test_a_headline_too_long_for_the_budget_says_how_much_was_left_out():
    """Thousands of datasets: the headline tables themselves are cut, and the closing line counts their rows."""
    diff = {f"reports/metrics/forecast-d{i:04d}.json": {
        "best": {"old": "naive", "new": "lstm"},
        **{f"{f}.all.mase": {"old": 1.0, "new": 0.5} for f in ("naive", "lstm", "tcn")}} for i in range(3000)}
    comment = render("main", "HEAD", {"params.yaml": {"seq": {"old": 1, "new": 2}}}, metric_rows(diff), [], [])
    assert len(comment.encode()) <= COMMENT_BUDGET
    tables = gfm_tables(comment)
    assert tables and all(len(header) <= 1 + compare.MAX_COLUMNS for header, *_ in tables)
    total = 3000 // compare.MAX_COLUMNS * 4  # a table per 6 datasets, a best row and 3 forecasters in each
    shown = sum(len(t) - 1 for t in tables)
    assert f"**Left out to stay under GitHub's comment limit (60,000 characters):** {total - shown:,} headline " \
           f"row(s), 1 param row(s). `compare-full.md` has them all." in comment


def test_tables_parse_as_gfm_with_equal_cells_and_pipes_kept_inside_their_cell():
    diff = removed_models_diff()
    diff[MEMORY]["note|with|pipes"] = {"old": "a|b", "new": "back\\slash|c"}
    params = {"params.yaml": {"train_memory.models": {"old": ["lstm", "tcn"], "new": ["lstm|gru"]}},
              "other|params.yaml": {"x": {"old": 1, "new": 2}}}
    for md in (render("ma|in", "HEAD", params, metric_rows(diff), [("f", "f.png")], ["p.csv"]),
               render_full("ma|in", "HEAD", params, metric_rows(diff), [("f", "f.png")], ["p.csv"])):
        tables = gfm_tables(md)
        assert len(tables) >= 3
        cells = {text for table in tables for row in table for text in row}
        assert {"note|with|pipes", "a|b", "back\\slash|c", "['lstm|gru']", "other|params.yaml:x", "`ma|in`"} <= cells
        for table in tables:
            assert len({len(row) for row in table}) == 1


def test_a_panel_shows_its_mean_smape_and_a_moved_m3_mean_is_flagged():
    """The panel kind of KINDS: one column per panel, its series count as a fact; a worse mean sMAPE is a regression."""
    diff = {"reports/metrics/panel-m3_monthly.json": {"series": {"old": 1428, "new": 1428},
                                                      "theta.smape": {"old": 13.9, "new": 14.6},
                                                      "theta.wins_naive": {"old": 0.7, "new": 0.6},
                                                      "naive.smape": {"old": 16.9, "new": 16.9}}}
    rows = metric_rows(diff)
    assert {r.key: r.mark for r in rows}["theta.wins_naive"] == "worse"
    md = render("main", "HEAD", {}, rows, [], [])
    assert "#### panel (`reports/metrics/panel-*.json`)" in md
    assert "Regressions: `panel-m3_monthly: theta.smape`, `panel-m3_monthly: theta.wins_naive`" in md
    assert gfm_tables(md)[0] == [["forecaster", "m3_monthly mean sMAPE", "m3_monthly mean rank"],
                                 ["series", "1428", ""], ["naive", "16.9", "—"],
                                 ["theta", "13.9 → 14.6 (+5.0%) ❌", "—"]]


def test_changed_data_plots_compares_points_per_revision():
    def plot(values):
        return [{"type": "vega", "content": {"data": {"values": values}}}]

    plots = {
        "same.csv": plot([{"x": 1, "rev": "a"}, {"x": 1, "rev": "b"}]),
        "moved.csv": plot([{"x": 1, "rev": "a"}, {"x": 2, "rev": "b"}]),
    }
    assert changed_data_plots(plots, "a", "b") == ["moved.csv"]


def test_review_workflow_uploads_the_file_the_comment_points_to():
    """The artifact is the --out folder, under the name the comment gives, and the comment links to the run."""
    workflow = Path(__file__).resolve().parents[1] / ".github/workflows/review.yml"
    steps = yaml.safe_load(workflow.read_text())["jobs"]["compare"]["steps"]
    names = [step.get("name", step.get("uses", "")) for step in steps]
    compare_step = next(step for step in steps if "stages.tools.compare" in step.get("run", ""))
    args = shlex.split(compare_step["run"])
    out = args[args.index("--out") + 1]
    assert args[args.index("--details-url") + 1] == "$RUN_URL" and "/actions/runs/" in compare_step["env"]["RUN_URL"]
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["name"] == ARTIFACT and upload["with"]["path"].rstrip("/") == out
    post = next(step for step in steps if "cml comment" in step.get("run", ""))
    assert post["run"].endswith(f" {out}/{COMMENT_FILE}") and FULL_FILE not in post["run"]
    assert names.index(compare_step["name"]) < names.index(upload["name"]) < names.index(post["name"])


def test_a_probe_that_stays_within_noise_of_zero_is_close_not_a_regression():
    """The issue's case: x[0] change % from 0.0006 to -0.0014 (a model ignoring x[0] in both runs) is "≈"."""
    diff = memory_diff(**{"lstm.change_first_pct": (0.0006, -0.0014), "gru.change_first_pct": (0.0006, 21.8),
                          "tcn.change_first_pct": (24.9, 0.4)})
    rows = {row.key: row for row in metric_rows(diff)}
    assert rows["lstm.change_first_pct"].mark == "close" and rows["lstm.change_first_pct"].relative_pct is None
    assert rows["gru.change_first_pct"].mark == "better"  # starts to use x[0]: a real move
    assert rows["tcn.change_first_pct"].mark == "worse"   # stops using it
    comment = render("main", "exp", {}, metric_rows(diff), [], [])
    assert "-349" not in comment and "0.0006 → -0.0014 ≈" in comment


def test_a_panel_mean_rank_within_the_critical_difference_is_close_and_beyond_it_a_move():
    """The headline says whether a mean rank moved by more than the panel's Nemenyi critical difference."""
    file = "reports/metrics/panel-m3_quarterly.json"
    diff = {file: {"theta.mean_rank": {"old": 3.58, "new": 3.80}, "ets.mean_rank": {"old": 3.67, "new": 4.20},
                   "auto_arima.mean_rank": {"old": 4.20, "new": 3.70},
                   "significance.cd": {"old": 0.38, "new": 0.40}}}
    rows = {row.key: row for row in metric_rows(diff)}
    assert rows["theta.mean_rank"].mark == "close"  # 0.22 < CD 0.40 (the larger side's)
    assert rows["ets.mean_rank"].mark == "worse" and rows["auto_arima.mean_rank"].mark == "better"  # 0.53, 0.50
    comment = render("main", "exp", {}, metric_rows(diff), [], [])
    assert "critical difference (mean rank)" in comment and "3.58 → 3.8" in comment
    # Without a critical difference a mean rank is judged as any lower-is-better score.
    plain = {row.key: row for row in metric_rows({file: {"theta.mean_rank": {"old": 3.58, "new": 3.80}}})}
    assert plain["theta.mean_rank"].mark == "worse"
