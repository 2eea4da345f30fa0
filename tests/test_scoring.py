"""Forecast scores by hand: point errors, MASE over rolling origins, coverage, and the persistence check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.forecast import scoring

ACTUAL = np.array([10.0, 20.0, 30.0, 40.0])
PRED = np.array([12.0, 18.0, 33.0, 40.0])


def test_errors_by_hand():
    # errors 2, -2, 3, 0
    assert scoring.mse(ACTUAL, PRED) == pytest.approx((4 + 4 + 9 + 0) / 4)
    assert scoring.rmse(ACTUAL, PRED) == pytest.approx(np.sqrt(17 / 4))
    assert scoring.mae(ACTUAL, PRED) == pytest.approx(7 / 4)
    assert scoring.mape(ACTUAL, PRED) == pytest.approx(100 * (0.2 + 0.1 + 0.1 + 0) / 4)


def test_mase_by_hand():
    train = np.array([1.0, 3.0, 2.0, 6.0])  # naive in-sample errors 2, 1, 4 -> MAE 7/3
    assert scoring.mase(ACTUAL, PRED, train) == pytest.approx((7 / 4) / (7 / 3))
    # Seasonal (season 2): errors |2-1|, |6-3| -> MAE 2
    assert scoring.mase(ACTUAL, PRED, train, season=2) == pytest.approx((7 / 4) / 2)


def test_mape_undefined_at_zero():
    assert np.isnan(scoring.mape(np.array([0.0, 1.0]), np.array([1.0, 1.0])))


def test_smape_by_hand():
    # |a - p| / ((|a| + |p|) / 2): 2/11, 2/19, 3/31.5, 0
    expected = 100 * (2 / 11 + 2 / 19 + 3 / 31.5 + 0) / 4
    assert scoring.smape(ACTUAL, PRED) == pytest.approx(expected)
    assert scoring.smape(np.array([0.0, 2.0]), np.array([0.0, 2.0])) == 0.0  # a pair of zeros is no error


def test_scaled_mae_divides_each_error_by_its_own_origin_scale():
    # errors 2, 2, 3, 0; scales 1, 2, 3, 4 -> (2 + 1 + 1 + 0) / 4
    assert scoring.scaled_mae(ACTUAL, PRED, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(1.0)
    assert np.isnan(scoring.scaled_mae(ACTUAL, PRED, np.array([1.0, 0.0, 1.0, 1.0])))  # a flat history


def test_scores_with_and_without_season_by_hand():
    y = np.array([1.0, 3.0, 2.0, 6.0, 5.0, 9.0])
    scales = scoring.naive_scales(y, [4], season_length=1)  # history 1, 3, 2, 6: naive errors 2, 1, 4
    assert scales[4] == pytest.approx(7 / 3)
    assert scoring.naive_scales(y, [4], season_length=2)[4] == pytest.approx((1 + 3) / 2)
    rows = pd.DataFrame({"origin": [4, 4], "h": [1, 2], "index": [4, 5], "actual": [5.0, 9.0], "forecast": [6.0, 6.0],
                         "lo80": [4.0, 8.0], "hi80": [7.0, 8.5]})
    s = scoring.score(rows, scales, [80])
    assert s["mae"] == pytest.approx(2.0) and s["mase"] == pytest.approx(2.0 / (7 / 3))
    assert s["coverage_80"] == 0.5 and s["width_80"] == pytest.approx((3.0 + 0.5) / 2)
    by_h = scoring.score_by_horizon(rows, scales, [80])
    assert set(by_h) == {"h1", "h2", "all"} and by_h["h2"]["mae"] == pytest.approx(3.0)


def test_origin_losses_are_each_origins_mase_in_origin_order():
    # origin 6 (scale 1): errors 2, 0; origin 7 (scale 2): errors 1, 3, each divided by 2.
    rows = pd.DataFrame({"origin": [7, 7, 6, 6], "h": [1, 2, 1, 2], "actual": [1.0, 4.0, 3.0, 5.0],
                         "forecast": [2.0, 1.0, 1.0, 5.0]})
    losses = scoring.origin_losses(rows, {6: 1.0, 7: 2.0})
    assert list(losses.index) == [6, 7]
    assert losses.tolist() == pytest.approx([(2 + 0) / 2, (0.5 + 1.5) / 2])
    # Their mean over equal-sized origins is the pooled MASE.
    assert losses.mean() == pytest.approx(scoring.score(rows, {6: 1.0, 7: 2.0}, [])["mase"])


RULE = {"min_lag_corr": 0.7, "lag_margin": 0.1, "min_change_ratio": 0.1}


def one_step(forecasts: np.ndarray, first: int) -> pd.DataFrame:
    return pd.DataFrame({"index": np.arange(first, first + len(forecasts)), "forecast": forecasts})


def test_persistence_fires_on_a_shifted_copy():
    y = np.random.default_rng(3).normal(size=60).cumsum() + 100
    shifted = y[29:59] + 0.5  # the truth one step late, plus a constant: looks good in MSE on a trend
    result = scoring.persistence(y, one_step(shifted, 30), **RULE)
    assert result["persistent"] and result["lags_one_step"] and result["corr_lag1"] == pytest.approx(1.0)


def test_persistence_fires_on_a_forecast_that_never_moves_off_the_last_value():
    y = np.random.default_rng(4).normal(size=60).cumsum()
    result = scoring.persistence(y, one_step(y[29:59] + 1e-3, 30), **RULE)
    assert result["near_zero_change"] and result["persistent"]


def test_persistence_stays_quiet_on_a_good_forecast():
    rng = np.random.default_rng(5)
    y = rng.normal(size=60).cumsum()
    good = y[30:60] + rng.normal(scale=0.1, size=30)
    result = scoring.persistence(y, one_step(good, 30), **RULE)
    assert not result["persistent"] and result["corr_lag0"] > 0.9


def test_mse_is_scored_beside_the_other_errors():
    assert scoring.score_by_horizon(pd.DataFrame({"origin": [5, 5], "h": [1, 2], "actual": [1.0, 4.0],
                                                  "forecast": [2.0, 1.0]}), {5: 1.0}, [])["all"]["mse"] == 5.0
    assert list(scoring.ERRORS) == ["mae", "mse", "rmse", "mape", "smape"]  # the article's own metric among them


def test_mean_rank_over_datasets_by_hand():
    scores = {"a": {"ets": 0.8, "arima": 0.9, "naive": 1.2},
              "b": {"ets": 1.1, "arima": 1.0, "naive": 1.0},   # arima and naive tie for first: 1.5 each
              "c": {"ets": 0.5, "arima": 0.7, "naive": 0.6}}
    ranks = scoring.mean_ranks(scores)
    assert ranks == {"ets": pytest.approx((1 + 3 + 1) / 3), "arima": pytest.approx((2 + 1.5 + 3) / 3),
                     "naive": pytest.approx((3 + 1.5 + 2) / 3)}
    assert list(ranks) == ["ets", "arima", "naive"]  # best first


def test_msis_by_hand():
    # 80%: alpha 0.2, a miss costs 2 / 0.2 = 10 times its distance. Row 1 inside (width 2, scale 1): 2.
    # Row 2 misses above by 5 (width 5 + 10 * 5 = 55, scale 2): 27.5. Mean 14.75.
    value = scoring.msis(np.array([0.0, 10.0]), np.array([-1.0, 0.0]), np.array([1.0, 5.0]), 80, np.array([1.0, 2.0]))
    assert value == pytest.approx(14.75)
    # A miss below counts the same way.
    assert scoring.msis(np.array([-3.0]), np.array([-1.0]), np.array([1.0]), 95, np.array([1.0])) == pytest.approx(
        2 + 40 * 2)


def test_score_has_the_msis_of_each_level_beside_its_coverage():
    rows = pd.DataFrame({"origin": [10, 10], "actual": [0.0, 10.0], "forecast": [0.0, 2.5],
                         "lo80": [-1.0, 0.0], "hi80": [1.0, 5.0]})
    out = scoring.score(rows, {10: 2.0}, [80])
    assert out["coverage_80"] == 0.5 and out["msis_80"] == pytest.approx((2 / 2 + 55 / 2) / 2)
