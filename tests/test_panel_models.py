"""Keras models of panels: one trained across every series (global), or one per series, and their stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.config import parse_params
from stages.lib.errors import DataError, ParamsError
from stages.lib.forecast.specs import PanelKerasSpec


def spec(**changes) -> PanelKerasSpec:
    settings = {"kind": "keras", "model": "lstm", "mode": "global", "input_size": 4,
                "fit": {"seed": 7, "max_epochs": 40, "batch_size": 16, "learning_rate": 0.01},
                "arch": {"units": [6], "output_activation": "linear"}}
    return PanelKerasSpec.model_validate({**settings, **changes})


def two_series() -> list[np.ndarray]:
    t = np.arange(40)
    return [10 + 0.5 * t + 2 * np.sin(t * np.pi / 2), 50 - 0.2 * t + np.cos(t * np.pi / 3)]


def fit_global(series: list[np.ndarray], **changes):
    from stages.lib.forecast.keras import GlobalKerasForecaster

    return GlobalKerasForecaster(spec(**changes), season_length=1, num_steps=3).fit(series)


def test_a_global_model_trains_once_across_two_series_seeded_and_deterministic():
    series = two_series()
    first, again = fit_global(series), fit_global(series)
    np.testing.assert_array_equal(first.predict(5), again.predict(5))  # same seed, same data: the same numbers
    assert first.predict(5).shape == (2, 5) and np.all(np.isfinite(first.predict(5)))
    loss = first.training_histories()["fit0"]["loss"]
    assert len(first.training_histories()) == 1 and loss.iloc[-1] < 0.5 * loss.iloc[0]  # it learnt
    # Windows of both series: 39 differences each, windows of 4 make 35 per series.
    assert first.facts()["windows"] == 2 * 35 and first.facts()["series"] == 2
    other_seed = fit_global(series, fit={"seed": 8, "max_epochs": 40, "batch_size": 16, "learning_rate": 0.01})
    assert not np.array_equal(other_seed.predict(5), first.predict(5))


def test_each_series_is_scaled_by_its_own_history():
    """A series in other units (x1000, shifted) teaches the same network and gets the same forecast in its units."""
    a, b = two_series()
    plain = fit_global([a, b]).predict(4)
    scaled = fit_global([a, 1000 * b + 5000]).predict(4)
    np.testing.assert_allclose(scaled[0], plain[0], rtol=1e-5)
    np.testing.assert_allclose(scaled[1], 1000 * plain[1] + 5000, rtol=1e-5)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_the_forecast_continues_each_series_from_its_last_levels(order):
    """Each step's predicted difference, scaled back by its own series, is undifferenced from the levels before."""
    from stages.lib.forecast.series import undifference_next

    series = two_series()
    model = fit_global(series, diff_order=order, fit={"seed": 7, "max_epochs": 2, "batch_size": 16})
    out = model.predict(3)
    z = np.stack([zs[-4:] for zs in model.z]).astype(np.float32)
    first = np.asarray(model.model(z[..., None], training=False)).reshape(-1) * model.scales
    expected = undifference_next(first, np.stack([s[len(s) - order:] for s in series]), order) if order else first
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)


def test_with_patience_each_series_last_window_validates():
    model = fit_global(two_series(), fit={"seed": 7, "max_epochs": 5, "batch_size": 16, "patience": 2})
    assert model.facts()["windows"] == 2 * 34  # the last window of each series held out
    assert "val_loss" in model.training_histories()["fit0"] and "best_val_loss" in model.facts()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["panel_models"]["lstm_global"]["fit"].update(batch_size="auto"),
     r"^params\.yaml: panel_models\.lstm_global: fit\.batch_size: a global model needs a number of windows"),
    (lambda p: p["panel_models"]["lstm_global"].update(datasets=["sales"]),
     r"^params\.yaml: panel_models\.lstm_global\.datasets: no panel named 'sales'"),
    (lambda p: p["panel_models"]["lstm_global"].update(mode="local"),
     r"^params\.yaml: panel_models\.lstm_global\.mode: Input should be 'global' or 'per_series'"),
    (lambda p: p["panel_models"]["lstm_global"]["fit"].pop("seed"),
     r"^params\.yaml: panel_models\.lstm_global\.fit\.seed is required"),
    (lambda p: p["panel_models"].update(theta=p["panel_models"]["lstm_global"]),
     r"^params\.yaml: panel_models\.theta: the name is already used in another section"),
])
def test_a_bad_panel_model_is_named_by_its_key(raw_params, edit, message):
    edit(raw_params)
    with pytest.raises(ParamsError, match=message):
        parse_params(raw_params)


def test_both_modes_are_named_forecasters_of_the_panels_they_list(raw_params):
    params = parse_params(raw_params)
    assert {params.panel_model(n).mode for n in params.panel_models} == {"global", "per_series"}
    assert "lstm_global" in params.panel_specs("m3_monthly") and "lstm_series" not in params.panel_specs("m3_monthly")
    # An ensemble of several members is scored beside its first member alone; a single network once.
    assert params.panel_names[-9:] == ["lstm_global", "lstm_series", "nbeats_g", "nbeats_g_single", "nbeats_i",
                                       "nbeats_i_single", "lstm_direct", "gru_direct", "tcn_direct"]


def test_a_forecaster_without_a_series_stops_the_evaluation_naming_both():
    from stages.evaluate_panel import forecasts_by_series

    frame = pd.DataFrame({"id": ["a", "a", "b", "b"], "forecaster": "naive", "h": [1, 2, 1, 2],
                          "actual": 1.0, "forecast": [1.0, 2.0, 3.0, 4.0]})
    model = frame[frame["id"] == "a"].assign(forecaster="lstm_global")
    out = forecasts_by_series([frame, model], ["a"], ["naive", "lstm_global"], 2)
    np.testing.assert_array_equal(out["a"]["naive"], [1.0, 2.0])
    with pytest.raises(DataError, match=r"^series 'b' has no forecast of 2 points from lstm_global: .*run dvc repro"):
        forecasts_by_series([frame, model], ["a", "b"], ["naive", "lstm_global"], 2)


def run_stage(tmp_path, monkeypatch, raw_params, model: str, panel: str = "m3_quarterly", count: int = 3,
              lengths: dict[str, int] | None = None) -> pd.DataFrame:
    """The stage on ``count`` random walks of 30 points (and the series ``lengths`` names, of those lengths),
    with tiny networks: ``raw_params`` is changed in place to the params it ran with."""
    import yaml

    from stages import panel_model
    from stages.lib.infra import cli, paths

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    raw_params["panel_models"] = {n: raw_params["panel_models"][n] for n in ("lstm_global", "lstm_series")}
    for settings in raw_params["panel_models"].values():
        settings["fit"].update(max_epochs=3)
        settings["arch"].update(units=[4], dense=[])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")
    rng = np.random.default_rng(3)
    frames = [pd.DataFrame({"id": sid, "time": range(1, 31), "value": 100 + rng.normal(size=30).cumsum()})
              for sid in [f"q{i}" for i in range(1, count + 1)]]
    frames += [pd.DataFrame({"id": sid, "time": range(1, n + 1), "value": 100 + rng.normal(size=n).cumsum()})
               for sid, n in (lengths or {}).items()]
    pd.concat(frames).to_csv(tmp_path / "series.csv", index=False)
    out = tmp_path / f"{model}.csv"
    cli.run(panel_model.main, ["--panel", panel, "--model", model, "--series", str(tmp_path / "series.csv"),
                               "--out", str(out)])
    return pd.read_csv(out, dtype={"id": str})


@pytest.mark.parametrize(("model", "panel", "horizon"), [("lstm_global", "m3_quarterly", 8),
                                                      ("lstm_series", "m3_yearly", 6)])
def test_the_stage_forecasts_every_series_held_out_points_in_either_mode(tmp_path, monkeypatch, raw_params, model,
                                                                         panel, horizon):
    out = run_stage(tmp_path, monkeypatch, raw_params, model, panel)
    assert list(out.columns) == ["id", "forecaster", "h", "actual", "forecast", "lo80", "hi80", "lo95", "hi95"]
    assert out[["lo80", "hi95"]].isna().all().all()  # 3 series: too few to calibrate an interval on
    assert list(out["id"].unique()) == ["q1", "q2", "q3"] and set(out["forecaster"]) == {model}
    assert list(out["h"]) == [*range(1, horizon + 1)] * 3 and out["forecast"].notna().all()
    series = pd.read_csv(tmp_path / "series.csv", dtype={"id": str})
    np.testing.assert_allclose(out["actual"], series.groupby("id")["value"].apply(lambda v: v.iloc[-horizon:]).to_numpy())


@pytest.mark.parametrize(("model", "count"), [("lstm_global", 20), ("lstm_series", 6)])
def test_a_recursive_model_s_intervals_are_calibrated_on_a_second_fit_from_an_earlier_origin(
        tmp_path, monkeypatch, raw_params, capsys, model, count):
    """By hand: each series' last 6 points before the test, forecast by the model fitted on what precedes them
    (a global network trained once more, from the same seed, on every series cut there; a per-series network
    refitted on each), err by a scaled amount; the ceil((n + 1) level)-th smallest of the n at each step, times
    the series' own scale, is the radius of its interval around the test forecast. 6 per-series networks (a
    second each is slow) calibrate an 80% interval, too few for 95%. One more series is long enough for the
    model at the test origin but not at the calibration origin: not calibrated on, it gets the others' radius."""
    import math

    from stages.lib.forecast import registry
    from stages.lib.forecast.keras import GlobalKerasForecaster

    params = parse_params(raw_params)
    need = params.panel_model(model).min_panel_history(1, params.num_steps, 6)
    short = 12 + need - 1  # a history of need + 5 at the test origin, need - 1 at the calibration origin
    out = run_stage(tmp_path, monkeypatch, raw_params, model, panel="m3_yearly", count=count,
                    lengths={"short": short})
    log = capsys.readouterr().out
    assert f"calibrating the 80%, 95% intervals on {count + 1} series forecast from 6 points earlier" in log
    assert (f"calibration network trained on {count} series" in log) == (model == "lstm_global")
    params = parse_params(raw_params)  # the tiny networks run_stage ran
    spec_ = params.panel_model(model)
    values = [v.to_numpy() for _, v in pd.read_csv(tmp_path / "series.csv").groupby("id", sort=False)["value"]]
    assert [len(v) for v in values] == [30] * count + [short]
    calibrated_on = values[:count]
    if model == "lstm_global":
        earlier = GlobalKerasForecaster(spec_, 1, params.num_steps).fit([v[:-12] for v in calibrated_on]).predict(6)
    else:
        earlier = np.stack([registry.build(spec_, 1, params.num_steps).fit(v[:-12]).predict(6)
                            for v in calibrated_on])
    errors = np.sort(np.abs(np.stack([v[-12:-6] for v in calibrated_on]) - earlier)
                     / np.array([np.mean(np.abs(np.diff(v[:-12]))) for v in calibrated_on])[:, None], axis=0)
    forecast = out["forecast"].to_numpy().reshape(count + 1, 6)
    own_scale = np.array([np.mean(np.abs(np.diff(v[:-6]))) for v in values])[:, None]
    for level in (80, 95):
        if count < 19 and level == 95:
            assert out["lo95"].isna().all() and f"no 95% interval for {model}: fewer than the 19" in log
            continue
        radius = errors[math.ceil((count + 1) * level / 100) - 1]
        np.testing.assert_allclose(out[f"lo{level}"].to_numpy().reshape(count + 1, 6), forecast - radius * own_scale,
                                   rtol=1e-5)
        np.testing.assert_allclose(out[f"hi{level}"].to_numpy().reshape(count + 1, 6), forecast + radius * own_scale,
                                   rtol=1e-5)


def test_on_a_panel_it_does_not_list_the_stage_writes_only_the_header(tmp_path, monkeypatch, raw_params, capsys):
    out = run_stage(tmp_path, monkeypatch, raw_params, "lstm_series", panel="m3_monthly")
    assert out.empty and list(out.columns) == ["id", "forecaster", "h", "actual", "forecast"]
    assert "not run (panel_models.lstm_series.datasets does not list m3_monthly)" in capsys.readouterr().out


def test_a_dropped_interrupt_stops_the_panel_between_series_and_the_global_forecast():
    """Ctrl-C whose first exception was dropped still stops the per-series loop before its next series, and a global
    model's forecast before its next step."""
    import signal

    from stages.lib.forecast.specs import NaiveSpec
    from stages.lib.infra import interrupts
    from stages.lib.panel.run import forecast_chunk

    model = fit_global(two_series(), fit={"seed": 7, "max_epochs": 1, "batch_size": 16})
    chunk = [("a", np.arange(20.0)), ("b", np.arange(30.0))]
    assert len(forecast_chunk(chunk, 3, {"naive": NaiveSpec(kind="naive")}, 1, 3)) == 2
    try:
        interrupts._on_signal(signal.SIGINT, None)
    except KeyboardInterrupt:
        pass  # what Python does with it when a finaliser was running
    try:
        with pytest.raises(KeyboardInterrupt, match="signal 2"):
            forecast_chunk(chunk, 3, {"naive": NaiveSpec(kind="naive")}, 1, 3)
        with pytest.raises(KeyboardInterrupt, match="signal 2"):
            model.predict(3)
    finally:
        interrupts.reset()
