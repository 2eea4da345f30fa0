"""The review comment: direction of each metric, verdict changes, the Markdown."""

from __future__ import annotations

import pytest

from stages.tools.compare import changed_data_plots, judge, metric_rows, render, verdict_changes


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


def test_verdict_change_in_words():
    diff = {"reports/metrics/memory.json": {
        "seq": {"old": 68, "new": 69},
        "lstm.remembers_first": {"old": True, "new": False},
        "tcn.remembers_first": {"old": True, "new": True},
    }}
    assert verdict_changes(metric_rows(diff)) == ["lstm: remembers_first true -> false at seq=69"]


def test_markdown_names_params_metrics_regressions_and_figures():
    diff = {"reports/metrics/memory.json": {
        "seq": {"old": 68, "new": 69},
        "lstm.remembers_first": {"old": True, "new": False},
        "lstm.val_mse": {"old": 0.01, "new": 0.3},
        "tcn.val_mse": {"old": 0.02, "new": 0.02},
    }}
    params = {"params.yaml": {"seq": {"old": 68, "new": 69}}}
    md = render("main", "workspace", params, metric_rows(diff), [("memory_probes", "memory_probes.png")], [])
    assert "| seq | 68 | 69 |" in md
    assert "- lstm: remembers_first true -> false at seq=69" in md
    assert "| reports/metrics/memory.json | lstm.val_mse | 0.01 | 0.3 | +0.29 | +2900.0% | ❌ **regression** |" in md
    assert "Regressions: `lstm.remembers_first`, `lstm.val_mse`" in md
    assert "<details><summary>1 unchanged metric(s)</summary>" in md
    assert "![memory_probes](memory_probes.png)" in md


def test_nothing_changed_is_one_line():
    diff = {"m.json": {"a.mse": {"old": 1.0, "new": 1.0}}}
    md = render("main", "HEAD", {"params.yaml": {}}, metric_rows(diff), [], [])
    assert md == "No changes between `main` and `HEAD`: params, metrics and plots are identical.\n"


def test_changed_data_plots_compares_points_per_revision():
    def plot(values):
        return [{"type": "vega", "content": {"data": {"values": values}}}]

    plots = {
        "same.csv": plot([{"x": 1, "rev": "a"}, {"x": 1, "rev": "b"}]),
        "moved.csv": plot([{"x": 1, "rev": "a"}, {"x": 2, "rev": "b"}]),
    }
    assert changed_data_plots(plots, "a", "b") == ["moved.csv"]
