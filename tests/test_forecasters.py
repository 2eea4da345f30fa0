"""Every forecaster kind: the contract over all of them, the baselines, ARIMA's order search, the Keras adapter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.forecast.arima import kpss_diffs, select_order
from stages.lib.forecast.registry import FORECASTERS, build
from stages.lib.forecast.specs import SPECS, ArimaSpec, KerasSpec
from stages.lib.nn.models import FitParams


@pytest.fixture(autouse=True)
def no_cached_fits():
    """Each test fits afresh: a fit reused from the stage-wide cache would hide a non-deterministic one."""
    import stages.lib.forecast.statistical as statistical

    statistical.forget_fits()


def test_between_refits_a_keras_forecaster_keeps_the_scaler_it_was_fitted_with():
    """The scaler and the weights are fitted on the same history: update() takes the longer history as input and
    keeps both, so the network sees inputs scaled as in its training."""
    spec = KerasSpec(kind="keras", model="lstm", fit=FitParams(seed=0, max_epochs=1, batch_size=4), arch={"units": [4]})
    history = np.arange(20.0)  # differences all 1
    longer = np.concatenate([history, [1000.0, 1001.0]])  # a jump of 981 after the first origin
    f = build(spec, season_length=1, num_steps=3).fit(history)
    assert f.scale == 1.0  # max |difference| of the history; the jump to 1000 is not in it
    weights = [w.copy() for w in f.model.get_weights()]
    f.update(longer)
    assert f.scale == 1.0 and len(f.training_histories()) == 1  # neither the scaler nor the network is refitted
    assert all(np.array_equal(a, b) for a, b in zip(weights, f.model.get_weights()))
    step = f.predict(1)[0] - longer[-1]  # the next change, from the longer history in the fitted scale
    assert step == pytest.approx(float(f._step(np.array([[1.0, 981.0, 1.0]]))[0]), rel=1e-5)
    assert f.fit(longer).scale == 981.0  # a refit refits both


def test_a_keras_forecaster_validates_on_the_end_of_its_history_and_keeps_the_best_weights():
    y = 10 + np.cumsum(np.random.default_rng(4).normal(size=60))
    spec = KerasSpec(kind="keras", model="lstm", fit=FitParams(seed=0, max_epochs=30, batch_size=8, patience=2,
                                                               learning_rate=0.05), arch={"units": [4]})
    f = build(spec, season_length=1, num_steps=3).fit(y)
    history = f.training_histories()["fit0.seed0"]
    # 56 windows of 3 differences: the last ceil(0.2 * 56) = 12 validate, the first 44 train.
    assert "val_loss" in history and len(history) < 30  # it stopped early
    X_val = np.stack([np.diff(y)[i:i + 3] for i in range(44, 56)]) / f.scale
    target = np.diff(y)[47:59] / f.scale
    kept = float(np.mean((f._step(X_val) - target) ** 2))
    assert kept == pytest.approx(history["val_loss"].min(), rel=1e-4)  # the best epoch's weights, not the last


def test_a_refit_keras_forecaster_learns_the_end_of_its_history_with_no_validation_point_in_the_validation_fit():
    """refit: the validation fit's scaler comes from the windows before validation only (the largest difference,
    put in the validation windows, does not reach it); it chooses the epochs; the refit trains that long, from the
    same seed, on every window with the whole history's scaler, and that network forecasts."""
    y = 10 + np.cumsum(np.random.default_rng(6).normal(size=60))
    # 56 windows of 3 differences, the last ceil(0.2 * 56) = 12 validate: the training windows' targets end at
    # z[46], the validation ones' start at z[47]. A jump of 20 at z[46] and of 40 at z[47] pins that boundary.
    y[47:] += 20.0
    y[48:] += 40.0
    spec = KerasSpec(kind="keras", model="lstm", refit=True, arch={"units": [4]},
                     fit=FitParams(seed=3, max_epochs=30, batch_size=8, patience=2, learning_rate=0.05))
    f = build(spec, season_length=1, num_steps=3)
    calls = []
    train = f._train
    f._train = lambda seed, z, scale, held, fit: calls.append((seed, scale, held, fit.max_epochs)) or \
        train(seed, z, scale, held, fit)
    f.fit(y)
    z = np.diff(y)
    (seed, scale, held, _), (refit_seed, refit_scale, refit_held, epochs) = calls
    assert (seed, held, refit_seed, refit_held) == (3, 12, 3, 0)
    assert scale == abs(z[46]) == np.max(np.abs(z[:47])) and 15 < scale < 25  # the jump of 20, not of 40
    assert refit_scale == f.scale == abs(z[47]) == np.max(np.abs(z)) and 35 < refit_scale < 45
    histories = f.training_histories()
    assert list(histories) == ["fit0.seed3.validation", "fit0.seed3.refit"]
    validation, refit = histories.values()
    assert "val_loss" in validation and "val_loss" not in refit
    assert epochs == len(refit) == int(np.argmin(validation["val_loss"].to_numpy())) + 1
    assert f.facts()["refits"] == 1 and f.facts()["epochs_run"] == {"fit0.seed3.validation": len(validation),
                                                                     "fit0.seed3.refit": epochs}
    twin = build(spec.model_copy(update={"refit": False}), season_length=1, num_steps=3).fit(y)
    assert f.scale == twin.scale and not np.allclose(f.predict(3), twin.predict(3))  # another network forecasts


@pytest.mark.parametrize("windows, share, held", [
    (56, 0.2, 12),  # ceil(11.2)
    (8, 0.2, 2),    # ceil(1.6): sales' first fit, 12 points, validates on 2 windows
    (3, 0.2, 1),    # at least one
    (4, 0.9, 3),    # never all: one window is left to train on
    (2, 0.2, 0),    # too few to validate on
])
def test_the_validation_windows_by_hand(windows, share, held):
    from stages.lib.forecast.keras import held_windows

    assert held_windows(windows, share) == held


def test_several_seeds_forecast_their_median():
    y = 10 + np.cumsum(np.random.default_rng(5).normal(size=40))
    spec = KerasSpec(kind="keras", model="lstm", seeds=(1, 2, 3), fit=FitParams(seed=1, max_epochs=2, batch_size=8),
                     arch={"units": [4]})
    f = build(spec, season_length=1, num_steps=3).fit(y)
    assert len(f.models) == 3 and f.facts()["seeds"] == 3
    paths = np.stack([f._path(model, 4) for model in f.models])
    assert not np.allclose(paths[0], paths[1])  # different seeds, different networks
    np.testing.assert_array_equal(f.predict(4), np.median(paths, axis=0))
    members = f.member_forecasts(4)  # each seed alone, named by its seed, for the backtest's spread
    assert list(members) == ["seed1", "seed2", "seed3"]
    np.testing.assert_array_equal(np.stack(list(members.values())), paths)
    one = build(spec.model_copy(update={"seeds": None}), season_length=1, num_steps=3).fit(y)
    assert one.member_forecasts(4) == {}  # one network: no members to spread over


def test_the_forecast_report_says_which_forecasters_refit_at_every_origin():
    from stages.lib.forecast.specs import NaiveSpec
    from stages.report import refit_line

    lstm = KerasSpec(kind="keras", model="lstm", refit_every=11, fit=FitParams(seed=1))
    specs = {"naive": NaiveSpec(kind="naive"), "arima": ArimaSpec(kind="arima"), "lstm": lstm}
    assert refit_line(specs) == [
        "Refitted at every origin: naive, arima. Refitted less often: lstm (every 11 origins); between refits such a "
        "forecaster conditions on the longer history with the parameters, the weights and the scaler of its last "
        "fit.", ""]
    specs["lstm"] = lstm.model_copy(update={"refit_every": 1})
    assert refit_line(specs) == ["Refitted at every origin: naive, arima, lstm.", ""]


def test_baselines_on_series_with_known_forecasts():
    line = 3.0 + 2.0 * np.arange(10)
    naive, drift = build(SPECS["naive"](kind="naive"), 1, 1), build(SPECS["drift"](kind="drift"), 1, 1)

    def seasonal_naive(m):
        return build(SPECS["seasonal_naive"](kind="seasonal_naive"), m, 1)

    np.testing.assert_array_equal(naive.fit(line).predict(3), [21.0, 21.0, 21.0])
    np.testing.assert_allclose(drift.fit(line).predict(3), [23.0, 25.0, 27.0])  # a line continues exactly
    seasonal = np.tile([1.0, 5.0, 2.0, 8.0], 3)
    np.testing.assert_array_equal(seasonal_naive(4).fit(seasonal).predict(6), [1.0, 5.0, 2.0, 8.0, 1.0, 5.0])
    np.testing.assert_array_equal(seasonal_naive(1).fit(line).predict(2), naive.fit(line).predict(2))
    np.testing.assert_array_equal(seasonal_naive(4).fit(seasonal).fitted()[4:], seasonal[:-4])


def test_auto_order_recovers_simulated_processes():
    from statsmodels.tsa.arima_process import arma_generate_sample

    spec = ArimaSpec(kind="arima", max_p=2, max_q=2, max_P=0, max_Q=0, max_D=0)
    np.random.seed(11)
    ar2 = arma_generate_sample(ar=[1, -0.6, 0.3], ma=[1], nsample=400, burnin=100)  # AR(2): phi = 0.6, -0.3
    assert select_order(ar2, 1, spec)["order"] == (2, 0, 0)
    np.random.seed(12)
    integrated = np.cumsum(arma_generate_sample(ar=[1], ma=[1, 0.7], nsample=400, burnin=100))  # IMA(1, 1)
    chosen = select_order(integrated, 1, spec)
    assert chosen["order"] == (0, 1, 1) and chosen["models_tried"] >= 9


def test_kpss_differences_a_random_walk_once():
    walk = np.random.default_rng(6).normal(size=300).cumsum()
    assert kpss_diffs(walk, max_d=2) == 1
    assert kpss_diffs(np.random.default_rng(7).normal(size=300), max_d=2) == 0


def test_arima_intervals_nest_and_cover_the_forecast():
    y = np.random.default_rng(8).normal(size=80).cumsum()
    f = build(ArimaSpec(kind="arima", order=(1, 1, 0), seasonal_order=(0, 0, 0)), 1, 3).fit(y)
    mean, bands = f.predict(4), f.predict_interval(4, [80, 95])
    assert (bands[95][0] < bands[80][0]).all() and (bands[80][0] < mean).all() and (mean < bands[80][1]).all()
    assert f.facts()["order"] == [1, 1, 0] and f.facts()["selected_by"] == "params"


# ------------------------------------------------ contract over every kind

TINY = {
    "naive": {"kind": "naive"},
    "seasonal_naive": {"kind": "seasonal_naive"},
    "drift": {"kind": "drift"},
    "arima": {"kind": "arima", "max_p": 1, "max_q": 1, "max_P": 1, "max_Q": 0},
    "ets": {"kind": "ets"},
    "theta": {"kind": "theta"},
    "auto_arima": {"kind": "auto_arima", "max_p": 2, "max_q": 2},
    "combination": {"kind": "combination", "members": ["ets", "theta"]},
    "naive2": {"kind": "naive2"},
    "comb_shd": {"kind": "comb_shd"},
    "keras": {"kind": "keras", "model": "tcn", "fit": {"seed": 1, "max_epochs": 2, "batch_size": 8},
              "arch": {"filters": 4, "kernel_size": 2}},
}


def test_the_contract_covers_every_registered_kind():
    assert set(TINY) == set(FORECASTERS) == set(SPECS)  # every kind has its settings and its class


@pytest.mark.parametrize("kind", list(FORECASTERS))
def test_forecaster_contract(kind):
    spec = SPECS[kind].model_validate(TINY[kind])
    t = np.arange(48)
    y = 10 + 0.3 * t + 2 * np.sin(2 * np.pi * t / 4) + np.random.default_rng(9).normal(scale=0.3, size=48)
    first = build(spec, season_length=4, num_steps=3).fit(y)
    mean = first.predict(5)
    assert mean.shape == (5,) and np.isfinite(mean).all()
    again = build(spec, season_length=4, num_steps=3).fit(y).predict(5)
    np.testing.assert_array_equal(mean, again)  # seeded: the same history gives the same forecast
    assert first.fitted().shape == y.shape
    updated = first.update(np.append(y, 30.0)).predict(5)
    assert updated.shape == (5,)
    if first.has_intervals:
        bands = first.predict_interval(5, [80])
        assert (bands[80][0] <= bands[80][1]).all() and bands[80][0].shape == (5,)
    assert isinstance(first.summary(), dict) and isinstance(first.facts(), dict)
    assert spec.min_history(4, 3) <= 40


def test_a_fixed_part_of_the_order_is_not_searched():
    y = 10 + np.tile([0.0, 3.0, 1.0, 5.0], 12) + np.random.default_rng(10).normal(scale=0.2, size=48).cumsum()
    fixed_order = ArimaSpec(kind="arima", order=(1, 1, 0), seasonal_order="auto", max_P=1, max_Q=1)
    chosen = select_order(y, 4, fixed_order)
    assert chosen["order"] == (1, 1, 0)
    fixed_season = ArimaSpec(kind="arima", order="auto", seasonal_order=(0, 1, 1), max_p=1, max_q=1)
    chosen = select_order(y, 4, fixed_season)
    assert chosen["seasonal_order"] == (0, 1, 1, 4)


def test_the_grid_chooses_the_same_over_several_processes_as_in_one(monkeypatch):
    from stages.lib.forecast import arima as forecasters

    y = 10 + np.tile([0.0, 3.0, 1.0, 5.0], 12) + np.random.default_rng(13).normal(scale=0.3, size=48).cumsum()
    spec = ArimaSpec(kind="arima", max_p=1, max_q=1, max_P=1, max_Q=1)
    monkeypatch.setattr(forecasters, "PARALLEL_MIN_FITS", 10**6)
    in_one = select_order(y, 4, spec)
    monkeypatch.setattr(forecasters, "PARALLEL_MIN_FITS", 1)
    monkeypatch.setenv("PIPELINE_CORES", "2")  # two workers, as on the 2-core machine
    assert select_order(y, 4, spec) == in_one and in_one["models_tried"] == 32


def test_a_stage_process_ends_with_its_grid_workers():
    """cli.run ends a stage without freeing its modules, but after stopping joblib's workers:
    left running they would hold the stage's output pipe, and DVC would wait for them (5 minutes)."""
    import subprocess
    import sys
    import textwrap

    from tests.project import ROOT

    script = textwrap.dedent("""
        import os
        import numpy as np
        from stages.lib.forecast import arima as forecasters
        from stages.lib.infra import cli

        def main(argv):
            os.environ["PIPELINE_CORES"] = "2"
            y = np.random.default_rng(0).normal(size=60).cumsum()
            grid = [((p, 1, q), (0, 0, 0, 0), "n") for p in range(3) for q in range(3)] * 3
            assert len(grid) >= forecasters.PARALLEL_MIN_FITS  # the parallel path
            print("fitted", sum(aic is not None for aic in forecasters.grid_aics(y, grid)))

        cli.run(main)
    """)
    # run() returns once the pipes close: a worker that outlived the stage would hold them past the timeout.
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "fitted 27\n"



# ------------------------------------------------ the classical benchmarks (statsforecast)

def test_ets_finds_a_damped_or_additive_trend_and_continues_a_clean_line():
    line = 5.0 + 2.0 * np.arange(40) + np.random.default_rng(3).normal(scale=0.01, size=40)
    f = build(SPECS["ets"](kind="ets"), 1, 3).fit(line)
    assert f.summary()["model"].startswith("ETS(A,A")  # additive error and trend: a line
    np.testing.assert_allclose(f.predict(3), 5.0 + 2.0 * np.arange(40, 43), atol=0.2)
    assert f.facts()["library"] == "statsforecast"


def test_ets_needs_exactly_the_history_statsforecast_fits_npars_plus_five():
    """statsforecast refuses npars + 4 points ("tiny datasets"); ZZZ without a season counts alpha and l0."""
    spec = SPECS["ets"](kind="ets")
    assert spec.min_history(1, 1) == 7 and spec.min_history(12, 1) == 26  # a season needs two and 2 points
    y = np.array([3.0, 5.0, 4.0, 6.0, 7.0, 6.0, 8.0])
    assert np.isfinite(build(spec, 1, 1).fit(y).predict(2)).all()  # 7 points: fits
    with pytest.raises(NotImplementedError, match="tiny datasets"):
        build(spec, 1, 1).fit(y[:6])  # 6: the boundary min_history guards, so the panels fall back instead


def test_theta_on_a_seasonal_series_adjusts_for_the_season_and_not_on_noise():
    t = np.arange(60)
    seasonal = 50 + 10 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(4).normal(scale=0.5, size=60)
    assert build(SPECS["theta"](kind="theta"), 12, 3).fit(seasonal).summary()["model"] == "Theta(multiplicative season)"
    noise = 50 + np.random.default_rng(5).normal(size=60)
    assert build(SPECS["theta"](kind="theta"), 12, 3).fit(noise).summary()["model"] == "Theta(no season)"


def test_a_statistical_update_keeps_the_model_and_conditions_on_the_longer_history():
    y = 20 + np.random.default_rng(6).normal(size=50).cumsum()
    f = build(SPECS["ets"](kind="ets"), 1, 3).fit(y)
    chosen, params = f.summary(), f.fitted_model.model_["par"].copy()
    longer = np.append(y, [y[-1] + 30.0])
    f.update(longer)
    # the same model and parameters: not re-estimated
    assert f.summary() == chosen and np.array_equal(f.fitted_model.model_["par"], params, equal_nan=True)
    assert f.predict(1)[0] > y[-1] + 10  # but the forecast starts from the new last value


def test_auto_arima_keeps_a_drift_on_a_trending_random_walk():
    y = np.random.default_rng(0).normal(loc=1.0, size=80).cumsum()
    f = build(SPECS["auto_arima"](kind="auto_arima"), 1, 3).fit(y)
    assert "drift" in f.summary()["model"]
    assert f.predict(10)[-1] > y[-1] + 5  # the drift carries on
    no_drift = build(SPECS["auto_arima"](kind="auto_arima", allowdrift=False), 1, 3).fit(y)
    assert "drift" not in no_drift.summary()["model"]


def test_the_combination_is_the_mean_of_its_members():
    y = 30 + np.random.default_rng(8).normal(size=60).cumsum()
    combined = build(SPECS["combination"](kind="combination", members=("ets", "theta")), 1, 3).fit(y)
    ets = build(SPECS["ets"](kind="ets"), 1, 3).fit(y).predict(4)
    theta = build(SPECS["theta"](kind="theta"), 1, 3).fit(y).predict(4)
    np.testing.assert_allclose(combined.predict(4), (ets + theta) / 2)
    assert not combined.has_intervals  # empirical intervals, as for every forecaster without its own
    assert combined.summary() == {"members": "mean of ets, theta"}


def test_a_combination_names_a_repeated_or_unknown_member():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="members: each once"):
        SPECS["combination"](kind="combination", members=("ets", "ets"))
    with pytest.raises(ValidationError, match="members: .keras. is neither a statistical: entry"):
        SPECS["combination"](kind="combination", members=("ets", "keras"))


def test_arima_can_choose_its_order_again_at_every_refit():
    rng = np.random.default_rng(9)
    y = np.concatenate([rng.normal(size=60), rng.normal(size=60).cumsum()])  # white noise, then a random walk
    once = build(ArimaSpec(kind="arima", max_P=0, max_Q=0), 1, 3).fit(y[:60])
    again = build(ArimaSpec(kind="arima", max_P=0, max_Q=0, select="every_fit"), 1, 3).fit(y[:60])
    assert once.choice["order"][1] == again.choice["order"][1] == 0
    assert once.fit(y).choice["order"][1] == 0  # chosen once: kept
    assert again.fit(y).choice["order"][1] == 1  # chosen again: the walk needs a difference


def test_a_keras_window_of_auto_spans_two_seasons_where_there_is_one():
    spec = KerasSpec(kind="keras", model="tcn", input_size="auto", fit=FitParams(seed=0, max_epochs=1, batch_size=8),
                     arch={"filters": 4, "kernel_size": 2})
    assert spec.window(12, 3) == 24 and spec.window(1, 3) == 3 and spec.window(4, 10) == 10
    assert KerasSpec(**{**spec.model_dump(), "input_size": None}).window(12, 3) == 3  # the article's num_steps
    assert KerasSpec(**{**spec.model_dump(), "input_size": 7}).window(12, 3) == 7
    assert spec.min_history(12, 3) == 1 + 24 + 2
    y = 10 + np.sin(2 * np.pi * np.arange(60) / 12)
    f = build(spec, season_length=12, num_steps=3).fit(y)
    assert f.model.input_shape == (None, 24, 1) and f.summary() == {"input_size": 24}
    assert np.isnan(f.fitted()[:25]).all() and np.isfinite(f.fitted()[25:]).all()  # the first window ends at 24


def test_fits_made_ahead_over_the_cores_give_the_same_forecasts():
    import stages.lib.forecast.statistical as statistical
    from stages.lib.forecast.backtest import run_backtest

    t = np.arange(72)
    y = 20 + 3 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(10).normal(scale=0.4, size=72).cumsum() * 0.2
    spec = SPECS["auto_arima"](kind="auto_arima", max_p=1, max_q=1, max_P=1, max_Q=1)
    statistical.forget_fits()
    alone = build(spec, 12, 3)
    alone.prepare = lambda histories: None  # every search in the loop, in this process
    one = run_backtest(alone, y, [66, 67, 68, 69], 3, [80])
    statistical.forget_fits()
    ahead = build(spec, 12, 3)
    ahead.fit_ahead([y[:o] for o in (66, 67, 68, 69)], workers=2)
    assert len(statistical._FITS) == 4  # fitted in two worker processes
    pd.testing.assert_frame_equal(one, run_backtest(ahead, y, [66, 67, 68, 69], 3, [80]))


def test_the_two_season_forecasters_differ_from_the_article_window_ones_only_in_their_window():
    from stages.lib.config import load_params
    from stages.lib.forecast.specs import window_pairs

    params = load_params()
    assert window_pairs(params.forecasters) == [("lstm", "lstm_auto"), ("tcn", "tcn_auto")]
    for plain, auto in window_pairs(params.forecasters):
        a, b = params.forecasters[plain].model_dump(), params.forecasters[auto].model_dump()
        assert {k for k in a if a[k] != b[k]} == {"input_size", "datasets"}, (plain, auto)
