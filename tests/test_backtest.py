"""Rolling-origin backtest, forecasters, empirical intervals, the persistence check and ARIMA order selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.core import backtest as bt
from stages.core.forecasters import (
    FORECASTERS,
    ArimaSpec,
    Drift,
    Forecaster,
    KerasSpec,
    Naive,
    SeasonalNaive,
    kpss_diffs,
    select_order,
)
from stages.core.models import FitParams


class Spy(Forecaster):
    """Records every history it is shown; forecasts the last value."""

    def __init__(self, refit_every: int) -> None:
        self.refit_every = refit_every
        self.calls: list[tuple[str, np.ndarray]] = []

    def fit(self, history):
        self.calls.append(("fit", np.array(history)))
        self.history = np.array(history)
        return self

    def update(self, history):
        self.calls.append(("update", np.array(history)))
        self.history = np.array(history)
        return self

    def predict(self, horizon):
        return np.full(horizon, self.history[-1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(20, 120), horizon=st.integers(1, 6), n_windows=st.integers(1, 8), step=st.integers(1, 4),
       calibration=st.integers(0, 6), refit_every=st.integers(1, 5))
def test_no_origin_ever_sees_its_future(n, horizon, n_windows, step, calibration, refit_every):
    need = bt.first_origin_needed(horizon, n_windows, step, calibration, min_history=2)
    if n < need:
        return
    y = np.arange(n, dtype=float) * 10  # the value names its own index
    origins = bt.origins(n, horizon, n_windows, step, calibration)
    assert len(origins) == n_windows + calibration and origins[-1] + horizon == n and min(origins) >= 2
    assert all(b - a == step for a, b in zip(origins, origins[1:]))
    spy = Spy(refit_every)
    frame = bt.run_backtest(spy, y, origins, horizon, levels=[80])
    for k, ((verb, history), origin) in enumerate(zip(spy.calls, origins)):
        assert verb == ("fit" if k % refit_every == 0 else "update")
        np.testing.assert_array_equal(history, y[:origin])  # exactly the past, nothing after it
    assert (frame["index"] >= frame["origin"]).all() and (frame["index"] < frame["origin"] + horizon).all()
    np.testing.assert_array_equal(frame["actual"], y[frame["index"]])
    assert len(frame) == len(origins) * horizon


def test_keras_forecaster_refits_its_scaler_at_each_origin_from_the_past_only():
    spec = KerasSpec(kind="keras", model="lstm", fit=FitParams(seed=0, max_epochs=1, batch_size=4), arch={"units": [4]})
    history = np.arange(20.0)  # differences all 1
    longer = np.concatenate([history, [1000.0, 1001.0]])  # a jump of 981 after the first origin
    f = spec.build(season_length=1, num_steps=3).fit(history)
    assert f.scale == 1.0  # max |difference| of the history; the jump to 1000 is not in it
    weights = [w.copy() for w in f.model.get_weights()]
    f.update(longer)
    assert f.scale == 981.0 and len(f.histories) == 1  # the scaler is refitted, the network is not retrained
    assert all(np.array_equal(a, b) for a, b in zip(weights, f.model.get_weights()))
    step = f.predict(1)[0] - longer[-1]  # the next change, in the scale of the longer history
    assert step == pytest.approx(float(f._step(np.array([[1 / 981, 1.0, 1 / 981]]))[0]) * 981.0, rel=1e-5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_origins=st.integers(4, 14), horizon=st.integers(1, 3))
def test_empirical_intervals_use_only_errors_known_at_the_origin(seed, n_origins, horizon):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n_origins + horizon + 5).cumsum()
    origins = bt.origins(len(y), horizon, n_origins, 1)
    frame = bt.run_backtest(Naive(), y, origins, horizon, levels=[80])
    filled = bt.empirical_intervals(frame, [80], min_residuals=2)
    for i in filled.index:
        later = frame["index"] >= frame.at[i, "origin"]  # targets not yet observed at row i's origin
        changed = frame.copy()
        changed.loc[later, "actual"] += rng.normal(scale=100, size=int(later.sum()))
        again = bt.empirical_intervals(changed, [80], min_residuals=2)
        assert again.at[i, "lo80"] == filled.at[i, "lo80"] or (np.isnan(again.at[i, "lo80"]) and np.isnan(filled.at[i, "lo80"]))
        assert again.at[i, "hi80"] == filled.at[i, "hi80"] or np.isnan(filled.at[i, "hi80"])


def test_empirical_intervals_by_hand():
    # Five earlier one-step errors 1..5, all known before origin 10.
    frame = pd.DataFrame({"origin": [3, 4, 5, 6, 7, 10], "h": 1, "index": [3, 4, 5, 6, 7, 10],
                          "actual": [1.0, 2.0, 3.0, 4.0, 5.0, 0.0], "forecast": 0.0, "lo80": np.nan, "hi80": np.nan})
    out = bt.empirical_intervals(frame, [80])
    assert out.at[5, "lo80"] == pytest.approx(np.quantile([1, 2, 3, 4, 5], 0.1))
    assert out.at[5, "hi80"] == pytest.approx(np.quantile([1, 2, 3, 4, 5], 0.9))
    assert np.isnan(out.at[4, "lo80"])  # only four errors before origin 7


def test_a_dropped_interrupt_stops_the_backtest_at_the_next_origin():
    import signal

    from stages.core import interrupts

    spy = Spy(refit_every=1)
    bt.run_backtest(spy, np.arange(30.0), [20, 22], horizon=2, levels=[80], progress=lambda _: interrupts.check())
    assert len(spy.calls) == 2  # no signal: every origin runs
    try:
        interrupts._on_signal(signal.SIGINT, None)
    except KeyboardInterrupt:
        pass  # what Python does with it when a finaliser was running
    try:
        calls = []
        with pytest.raises(KeyboardInterrupt, match="signal 2"):
            bt.run_backtest(spy, np.arange(30.0), [20, 22], horizon=2, levels=[80],
                            progress=calls.append)
        assert calls == [] and len(spy.calls) == 2  # stopped before the first origin
    finally:
        interrupts.reset()


def test_baselines_on_series_with_known_forecasts():
    line = 3.0 + 2.0 * np.arange(10)
    np.testing.assert_array_equal(Naive().fit(line).predict(3), [21.0, 21.0, 21.0])
    np.testing.assert_allclose(Drift().fit(line).predict(3), [23.0, 25.0, 27.0])  # a line continues exactly
    seasonal = np.tile([1.0, 5.0, 2.0, 8.0], 3)
    np.testing.assert_array_equal(SeasonalNaive(4).fit(seasonal).predict(6), [1.0, 5.0, 2.0, 8.0, 1.0, 5.0])
    np.testing.assert_array_equal(SeasonalNaive(1).fit(line).predict(2), Naive().fit(line).predict(2))
    np.testing.assert_array_equal(SeasonalNaive(4).fit(seasonal).fitted()[4:], seasonal[:-4])


def test_scores_with_and_without_season_by_hand():
    y = np.array([1.0, 3.0, 2.0, 6.0, 5.0, 9.0])
    scales = bt.naive_scales(y, [4], season_length=1)  # history 1, 3, 2, 6: naive errors 2, 1, 4
    assert scales[4] == pytest.approx(7 / 3)
    assert bt.naive_scales(y, [4], season_length=2)[4] == pytest.approx((1 + 3) / 2)
    rows = pd.DataFrame({"origin": [4, 4], "h": [1, 2], "index": [4, 5], "actual": [5.0, 9.0], "forecast": [6.0, 6.0],
                         "lo80": [4.0, 8.0], "hi80": [7.0, 8.5]})
    s = bt.score(rows, scales, [80])
    assert s["mae"] == pytest.approx(2.0) and s["mase"] == pytest.approx(2.0 / (7 / 3))
    assert s["coverage_80"] == 0.5 and s["width_80"] == pytest.approx((3.0 + 0.5) / 2)
    by_h = bt.score_by_horizon(rows, scales, [80])
    assert set(by_h) == {"h1", "h2", "all"} and by_h["h2"]["mae"] == pytest.approx(3.0)


RULE = {"min_lag_corr": 0.7, "lag_margin": 0.1, "min_change_ratio": 0.1}


def one_step(forecasts: np.ndarray, first: int) -> pd.DataFrame:
    return pd.DataFrame({"index": np.arange(first, first + len(forecasts)), "forecast": forecasts})


def test_persistence_fires_on_a_shifted_copy():
    y = np.random.default_rng(3).normal(size=60).cumsum() + 100
    shifted = y[29:59] + 0.5  # the truth one step late, plus a constant: looks good in MSE on a trend
    result = bt.persistence(y, one_step(shifted, 30), **RULE)
    assert result["persistent"] and result["lags_one_step"] and result["corr_lag1"] == pytest.approx(1.0)


def test_persistence_fires_on_a_forecast_that_never_moves_off_the_last_value():
    y = np.random.default_rng(4).normal(size=60).cumsum()
    result = bt.persistence(y, one_step(y[29:59] + 1e-3, 30), **RULE)
    assert result["near_zero_change"] and result["persistent"]


def test_persistence_stays_quiet_on_a_good_forecast():
    rng = np.random.default_rng(5)
    y = rng.normal(size=60).cumsum()
    good = y[30:60] + rng.normal(scale=0.1, size=30)
    result = bt.persistence(y, one_step(good, 30), **RULE)
    assert not result["persistent"] and result["corr_lag0"] > 0.9


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
    f = ArimaSpec(kind="arima", order=(1, 1, 0), seasonal_order=(0, 0, 0)).build(1, 3).fit(y)
    mean, bands = f.predict(4), f.predict_interval(4, [80, 95])
    assert (bands[95][0] < bands[80][0]).all() and (bands[80][0] < mean).all() and (mean < bands[80][1]).all()
    assert f.facts()["order"] == [1, 1, 0] and f.facts()["selected_by"] == "params"


# ------------------------------------------------ contract over every kind

TINY = {
    "naive": {"kind": "naive"},
    "seasonal_naive": {"kind": "seasonal_naive"},
    "drift": {"kind": "drift"},
    "arima": {"kind": "arima", "max_p": 1, "max_q": 1, "max_P": 1, "max_Q": 0},
    "keras": {"kind": "keras", "model": "tcn", "fit": {"seed": 1, "max_epochs": 2, "batch_size": 8},
              "arch": {"filters": 4, "kernel_size": 2}},
}


def test_the_contract_covers_every_registered_kind():
    assert set(TINY) == set(FORECASTERS)


@pytest.mark.parametrize("kind", list(FORECASTERS))
def test_forecaster_contract(kind):
    spec = FORECASTERS[kind].model_validate(TINY[kind])
    t = np.arange(48)
    y = 10 + 0.3 * t + 2 * np.sin(2 * np.pi * t / 4) + np.random.default_rng(9).normal(scale=0.3, size=48)
    first = spec.build(season_length=4, num_steps=3).fit(y)
    mean = first.predict(5)
    assert mean.shape == (5,) and np.isfinite(mean).all()
    again = spec.build(season_length=4, num_steps=3).fit(y).predict(5)
    np.testing.assert_array_equal(mean, again)  # seeded: the same history gives the same forecast
    assert first.fitted().shape == y.shape
    updated = first.update(np.append(y, 30.0)).predict(5)
    assert updated.shape == (5,)
    bands = first.predict_interval(5, [80])
    assert bands is None or (bands[80][0] <= bands[80][1]).all()
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
    from stages.core import forecasters

    y = 10 + np.tile([0.0, 3.0, 1.0, 5.0], 12) + np.random.default_rng(13).normal(scale=0.3, size=48).cumsum()
    spec = ArimaSpec(kind="arima", max_p=1, max_q=1, max_P=1, max_Q=1)
    monkeypatch.setattr(forecasters, "PARALLEL_MIN_FITS", 10**6)
    in_one = select_order(y, 4, spec)
    monkeypatch.setattr(forecasters, "PARALLEL_MIN_FITS", 1)
    monkeypatch.setattr(forecasters.os, "cpu_count", lambda: 2)
    assert select_order(y, 4, spec) == in_one and in_one["models_tried"] == 32


def test_a_stage_process_ends_with_its_grid_workers():
    """cli.run ends a stage without freeing its modules, but after stopping joblib's workers:
    left running they would hold the stage's output pipe, and DVC would wait for them (5 minutes)."""
    import subprocess
    import sys
    import textwrap

    from tests.project import ROOT

    script = textwrap.dedent("""
        import numpy as np
        from stages.core import cli, forecasters

        def main(argv):
            forecasters.os.cpu_count = lambda: 2
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


def test_the_length_check_names_the_most_demanding_forecaster():
    from stages.core.params import BacktestParams
    from stages.core.series import DataError

    backtest = BacktestParams(horizon=2, n_windows=3, step_size=2, calibration_windows=1)
    specs = {"naive": FORECASTERS["naive"](kind="naive"), "arima": ArimaSpec(kind="arima", order=[1, 0, 0])}
    # ARIMA needs max(10, 2 * 12 + 4) = 28 points before the first origin, then 2 + (3 + 1 - 1) * 2 = 8 more.
    bt.check_lengths(36, "in.csv", backtest, specs, season_length=12, num_steps=3)
    with pytest.raises(DataError, match=r"^in\.csv: 35 points is too short for backtest\.horizon=2, n_windows=3, "
                                        r"step_size=2, calibration_windows=1 with forecaster 'arima' \(needs at least 36: "
                                        r"28 before the first origin\)$"):
        bt.check_lengths(35, "in.csv", backtest, specs, season_length=12, num_steps=3)
