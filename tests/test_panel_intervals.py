"""Intervals on a panel: split-conformal across the series (stages/lib/panel/intervals.py), by hand and by
simulation, and through the panel stages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages.lib.forecast.specs import AutoArimaSpec, NaiveSpec, SeasonalNaiveSpec
from stages.lib.panel.intervals import (borrowed_radii, interval_scores, radii, scaled_errors, series_scale,
                                        shortened, too_few, with_intervals)
from stages.lib.panel.run import forecast_panel


def test_the_radius_is_the_conformal_order_statistic_of_the_scaled_errors_at_each_step():
    errors = np.column_stack([np.arange(19.0, 0.0, -1.0), np.arange(38.0, 0.0, -2.0)])  # 19 series, 2 steps
    r = radii({"f": errors}, [80, 95])["f"]
    # n = 19: 95% takes the ceil(20 * 0.95) = 19th smallest (the largest), 80% the 16th. A plain 95% quantile
    # would interpolate below the largest (18.1), and cover about 90% of new errors, not 95%.
    assert r[95].tolist() == [19.0, 38.0] and r[80].tolist() == [16.0, 32.0]
    fewer = radii({"f": errors[:18]}, [80, 95])["f"]
    # n = 18 (the smallest error, 1 and 2, left out): too few for 95%; 80% takes the ceil(19 * 0.8) = 16th smallest.
    assert np.isnan(fewer[95]).all() and fewer[80].tolist() == [17.0, 34.0]
    assert too_few({"f": errors[:18], "g": errors}, [80, 95]) == {95: ["f"]}


def test_scaled_errors_by_hand_leave_out_a_flat_history_and_a_series_too_short_for_the_forecaster():
    y = np.array([10.0, 12.0, 11.0, 13.0, 15.0, 14.0, 20.0, 22.0])  # horizon 2: the shortened series ends at 15.0
    flat = np.array([5.0, 5.0, 5.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    short = shortened([("a", y), ("flat", flat), ("tiny", y[:4])], 2, 1)
    assert [sid for sid, _ in short] == ["a", "flat"]  # 'tiny' leaves no history before its calibration origin
    assert short[0][1].tolist() == [10.0, 12.0, 11.0, 13.0, 15.0, 14.0]
    calibration = [("a", {"naive": np.array([13.0, 13.0]), "arima": np.array([14.0, 15.0])}),
                   ("flat", {"naive": np.array([5.0, 5.0]), "arima": np.array([5.0, 5.0])})]
    # AutoARIMA needs 10 points of history: on these 4 the fallback forecast, so not its own errors.
    specs = {"naive": NaiveSpec(kind="naive"), "arima": AutoArimaSpec(kind="auto_arima")}
    errors = scaled_errors(calibration, dict(short), specs, 2, 1, 1)
    scale = np.mean([2.0, 1.0, 2.0])  # the history 10, 12, 11, 13: its mean absolute step
    assert np.allclose(errors["naive"], [[2.0 / scale, 1.0 / scale]])  # actual 15, 14 against 13, 13
    assert errors["arima"].shape == (0, 2)


def test_intervals_are_the_forecast_plus_minus_radius_times_scale_and_scored_by_hand():
    table = pd.DataFrame({"id": ["a", "a", "b", "b"], "forecaster": "f", "h": [1, 2, 1, 2],
                          "actual": [10.0, 14.0, 2.2, 0.0], "forecast": [10.0, 10.0, 2.0, 2.0]})
    radius = {"f": {80: np.array([1.0, 2.0])}}
    out = with_intervals(table, radius, {"a": 1.5, "b": 0.5}, [80])
    assert out["lo80"].tolist() == [8.5, 7.0, 1.5, 1.0] and out["hi80"].tolist() == [11.5, 13.0, 2.5, 3.0]
    scores = interval_scores(out, {"a": 1.5, "b": 0.5}, [80])["f"]
    assert scores["coverage_80"] == 0.5 and scores["interval_series_80"] == 2  # 14 above 13 and 0 below 1
    # MSIS per series, then the mean: a: widths 3 and 6, 14 misses by 1 (2 / 0.2 * 1 = 10) -> (3 + 16) / 2 / 1.5;
    # b: widths 1 and 2, 0 misses by 1 -> (1 + 12) / 2 / 0.5 (2.2 is inside).
    assert scores["msis_80"] == pytest.approx(((3 + 16) / 2 / 1.5 + (1 + 12) / 2 / 0.5) / 2)
    assert np.isnan(series_scale(np.array([4.0, 4.0, 4.0]), 1))


def test_a_fallback_forecast_takes_the_radius_of_the_forecaster_of_its_kind():
    # AutoARIMA needs 10 points of history: series 'short' (8 points, 6 of history at horizon 2) is forecast by
    # the fallback, naive without a season; 'long' by AutoARIMA itself.
    specs = {"naive": NaiveSpec(kind="naive"), "arima": AutoArimaSpec(kind="auto_arima")}
    borrowed = borrowed_radii({"short": 8, "long": 30}, specs, 2, 1, 1)
    assert borrowed == {("arima", "short"): "naive"}
    # Without a naive forecaster in the set there is none to lend its radius: no interval.
    assert borrowed_radii({"short": 8}, {"arima": specs["arima"]}, 2, 1, 1) == {("arima", "short"): None}
    # With a season of 4 and 6 points of history, the fallback is seasonal naive, lent by its own forecaster.
    seasonal = {**specs, "snaive": SeasonalNaiveSpec(kind="seasonal_naive")}
    assert borrowed_radii({"short": 8}, seasonal, 2, 4, 1)[("arima", "short")] == "snaive"
    table = pd.DataFrame({"id": ["short", "long"], "forecaster": "arima", "h": 1, "actual": 0.0, "forecast": 10.0})
    radius = {"arima": {80: np.array([1.0])}, "naive": {80: np.array([3.0])}}
    out = with_intervals(table, radius, {"short": 1.0, "long": 1.0}, [80], borrowed)
    assert out["lo80"].tolist() == [7.0, 9.0]  # the short series takes naive's radius 3, the long its own 1
    none = with_intervals(table, radius, {"short": 1.0, "long": 1.0}, [80], {("arima", "short"): None})
    assert np.isnan(none["lo80"][0]) and none["lo80"][1] == 9.0


def test_several_forecasters_in_one_table_each_take_their_own_radius_by_hand():
    """Rows of three forecasters interleaved across two series, two levels: each row takes its forecaster's
    radius at its step, 'c' has none (NaN), and the fallback rows take the radius lent or none."""
    table = pd.DataFrame({"id": ["s1"] * 6 + ["s2"] * 6, "forecaster": ["a", "b", "c"] * 4,
                          "h": [1, 1, 1, 2, 2, 2] * 2, "actual": 0.0, "forecast": 10.0})
    radius = {"a": {80: np.array([1.0, 2.0]), 95: np.array([3.0, 4.0])},
              "b": {80: np.array([5.0, 6.0]), 95: np.array([7.0, 8.0])}}
    borrowed = {("b", "s2"): "a", ("a", "s2"): None}  # s2's 'b' forecast takes 'a''s radius, its 'a' none
    out = with_intervals(table, radius, {"s1": 2.0, "s2": 0.5}, [80, 95], borrowed)
    #            s1: a h1, b h1, c h1, a h2, b h2, c h2 (scale 2)    s2: a, b (as a), c at h1 and h2 (scale 0.5)
    expected80 = [10 - 2, 10 - 10, None, 10 - 4, 10 - 12, None, None, 10 - 0.5, None, None, 10 - 1, None]
    expected95 = [10 - 6, 10 - 14, None, 10 - 8, 10 - 16, None, None, 10 - 1.5, None, None, 10 - 2, None]
    for column, expected in (("lo80", expected80), ("lo95", expected95)):
        got = out[column].tolist()
        assert [None if np.isnan(v) else v for v in got] == expected, column
    assert (out["hi80"] - 10).fillna(0).tolist() == [-(v - 10) if v is not None else 0 for v in expected80]
    # A radius shorter than the steps in the table is a bug upstream: named, not a silent NaN.
    with pytest.raises(ValueError, match="a: steps ahead 1 to 2 need a radius each, got 1"):
        with_intervals(table, {"a": {80: np.array([1.0])}}, {"s1": 2.0, "s2": 0.5}, [80])


def simulated_coverage(panels: int, series: int, calibration: int, level: int, seed: int) -> float:
    """Mean coverage of the naive forecast's intervals over ``panels`` panels of random walks of different scales,
    each calibrated on ``calibration`` series and scored on the others, through the stage's functions."""
    rng = np.random.default_rng(seed)
    horizon, covered = 3, []
    for _ in range(panels):
        sigma = np.exp(rng.normal(0, 1, size=series))
        ys = [(f"s{i}", 100 + s * rng.normal(size=43).cumsum()) for i, s in enumerate(sigma)]
        calib, test = ys[:calibration], ys[calibration:]
        specs = {"naive": NaiveSpec(kind="naive")}
        short = shortened(calib, horizon, 1)
        results = forecast_panel(short, horizon, specs, 1, 1, workers=1, progress=lambda done: None)
        errors = scaled_errors([(sid, f) for sid, f, _ in results], dict(short), specs, horizon, 1, 1)
        tested = forecast_panel(test, horizon, specs, 1, 1, workers=1, progress=lambda done: None)
        table = pd.DataFrame([{"id": sid, "forecaster": "naive", "h": h + 1, "actual": dict(test)[sid][-horizon + h],
                               "forecast": f["naive"][h]} for sid, f, _ in tested for h in range(horizon)])
        scales = {sid: series_scale(y[:-horizon], 1) for sid, y in test}
        table = with_intervals(table, radii(errors, [level]), scales, [level])
        covered.append(interval_scores(table, scales, [level])["naive"][f"coverage_{level}"])
    return float(np.mean(covered))


def test_coverage_over_simulated_panels_is_the_nominal_level_within_a_binomial_band():
    # 19 calibration series: the 95% radius is their largest scaled error, which a new exchangeable error
    # exceeds with probability 1/20; over 150 panels the mean coverage has a standard deviation of about 0.004
    # (each panel's coverage is Beta(19, 1)-distributed around 0.95). A plain quantile would cover about 0.905.
    assert simulated_coverage(panels=150, series=40, calibration=19, level=95, seed=0) == pytest.approx(0.95, abs=0.015)


@pytest.fixture
def random_walk_panel(tmp_path, monkeypatch, raw_params):
    """params.yaml with M3 yearly run by the baselines alone (fast), and a function writing a panel of n random
    walks of different scales."""
    import yaml

    from stages.lib.infra import paths

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    raw_params["statistical"], raw_params["panel_models"] = {}, {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")

    def write(n: int):
        rng = np.random.default_rng(n)
        series = tmp_path / "series.csv"
        pd.concat([pd.DataFrame({"id": f"s{i}", "time": range(1, 31),
                                 "value": 100 + np.exp(rng.normal()) * rng.normal(size=30).cumsum()})
                   for i in range(n)]).to_csv(series, index=False)
        return series
    return write


def run_panel_stages(tmp_path, series) -> tuple[pd.DataFrame, dict]:
    from stages import evaluate_panel, panel
    from stages.lib.infra import cli

    out = tmp_path / "forecasts.csv"
    cli.run(panel.main, ["--panel", "m3_yearly", "--series", str(series), "--out", str(out)])
    cli.run(evaluate_panel.main, ["--panel", "m3_yearly", "--series", str(series), "--forecasts", str(out),
                                  "--models", str(tmp_path / "models"), "--scores", str(tmp_path / "scores.csv"),
                                  "--metrics", str(tmp_path / "m.json"), "--cd-figure", str(tmp_path / "cd.png")])
    return pd.read_csv(out), json.loads((tmp_path / "m.json").read_text())


def test_the_panel_stage_writes_both_intervals_and_evaluate_scores_their_coverage(tmp_path, capsys,
                                                                                  random_walk_panel):
    forecasts, metrics = run_panel_stages(tmp_path, random_walk_panel(24))
    assert "calibrating the 80%, 95% intervals on 24 series forecast from 6 points earlier" in capsys.readouterr().out
    assert forecasts[["lo80", "hi80", "lo95", "hi95"]].notna().all().all()
    assert (forecasts["lo95"] <= forecasts["lo80"]).all() and (forecasts["hi80"] <= forecasts["hi95"]).all()
    naive = forecasts[forecasts["forecaster"] == "naive"]
    inside = ((naive["actual"] >= naive["lo95"]) & (naive["actual"] <= naive["hi95"])).mean()
    assert metrics["naive"]["coverage_95"] == pytest.approx(inside) and metrics["missing_intervals"] == 0
    assert metrics["levels"] == [80, 95] and metrics["naive"]["msis_95"] > 0


def test_too_few_series_for_a_level_give_no_interval_at_it_and_say_so(tmp_path, capsys, random_walk_panel):
    forecasts, metrics = run_panel_stages(tmp_path, random_walk_panel(10))
    assert ("panel@m3_yearly: no 95% interval for drift, naive, seasonal_naive: fewer than the 19 calibration "
            "series it needs (10)") in capsys.readouterr().out
    assert forecasts["lo95"].isna().all() and forecasts["lo80"].notna().all()
    assert "coverage_80" in metrics["naive"] and "coverage_95" not in metrics["naive"]


def test_a_panel_model_without_its_forecasts_stops_the_evaluation_in_one_line_naming_its_stage(tmp_path, capsys,
                                                                                               random_walk_panel):
    import yaml

    from stages import evaluate_panel, panel
    from stages.lib.infra import cli
    from tests.project import ROOT

    series = random_walk_panel(6)
    cli.run(panel.main, ["--panel", "m3_yearly", "--series", str(series), "--out", str(tmp_path / "forecasts.csv")])
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["panel_models"] = {"lstm_global": yaml.safe_load((ROOT / "params.yaml").read_text())["panel_models"]["lstm_global"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def evaluate() -> list[str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            cli.run(evaluate_panel.main, ["--panel", "m3_yearly", "--series", str(series), "--forecasts",
                                          str(tmp_path / "forecasts.csv"), "--models", str(tmp_path / "models"),
                                          "--scores", str(tmp_path / "scores.csv"), "--metrics",
                                          str(tmp_path / "m.json"), "--cd-figure", str(tmp_path / "cd.png")])
        assert done.value.code == 2
        return capsys.readouterr().err.strip().splitlines()

    assert evaluate() == [f"error: {tmp_path / 'models' / 'lstm_global.csv'}: no such file: its stage "
                          "panel_model@m3_yearly-lstm_global has not run (dvc repro runs it)"]
    (tmp_path / "forecasts.csv").unlink()  # the classical set's too: named first, the other counted
    assert evaluate() == [f"error: {tmp_path / 'forecasts.csv'}: no such file: its stage panel@m3_yearly has not "
                          "run (dvc repro runs it); 1 more missing"]
    assert not any((tmp_path / name).exists() for name in ("scores.csv", "m.json", "cd.png"))
