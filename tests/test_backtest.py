"""The rolling-origin backtest: no origin sees its future, empirical intervals, interrupts, the length check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.lib.forecast import backtest as bt
from stages.lib.forecast.baselines import Naive
from stages.lib.forecast.base import Forecaster
from stages.lib.forecast.specs import SPECS, ArimaSpec, NaiveSpec, min_calibration


class Spy(Forecaster):
    """Records every history it is shown; forecasts the last value."""

    def __init__(self, refit_every: int) -> None:
        self.refit_every = refit_every
        self.calls: list[tuple[str, np.ndarray]] = []
        self.prepared: list[np.ndarray] = []

    def prepare(self, histories):
        self.prepared = [np.array(h) for h in histories]

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


class Pair(Spy):
    """Two members, the last value plus and minus ``gap``: their median (mean) is the last value."""

    def __init__(self, gap: float) -> None:
        super().__init__(refit_every=1)
        self.gap = gap

    def member_forecasts(self, horizon):
        return {"up": np.full(horizon, self.history[-1] + self.gap), "down": np.full(horizon, self.history[-1] - self.gap)}


def test_each_member_of_a_median_is_kept_and_scored_alone_by_hand():
    """run_backtest keeps every member's own forecast (member_<name>); member_scores scores each alone, as MASE
    and sMAPE over the rows, with their mean, sample sd and best, checked by hand."""
    from stages.lib.forecast.scoring import member_scores, naive_scales

    y = np.array([10.0, 12.0, 11.0, 14.0, 13.0, 15.0, 18.0, 16.0])
    origin_list = [5, 6]
    frame = bt.run_backtest(Pair(gap=1.0), y, origin_list, horizon=2, levels=[])
    assert list(frame.columns[-2:]) == ["member_up", "member_down"]
    np.testing.assert_array_equal(frame["member_up"], frame["forecast"] + 1.0)
    scales = naive_scales(y, origin_list, 1)
    assert scales == {5: 1.75, 6: 1.8}  # mean |change| of [10, 12, 11, 14, 13] and of [.., 15]: 7/4 and 9/5
    # Origin 5 forecasts y[4] = 13 for y[5:7] = 15, 18; origin 6 forecasts 15 for y[6:8] = 18, 16.
    actual, last = np.array([15.0, 18.0, 18.0, 16.0]), np.array([13.0, 13.0, 15.0, 15.0])
    scale = np.array([1.75, 1.75, 1.8, 1.8])
    up = np.mean(np.array([1.0, 4.0, 2.0, 0.0]) / scale)  # |actual - (last + 1)|
    down = np.mean(np.array([3.0, 6.0, 4.0, 2.0]) / scale)  # |actual - (last - 1)|
    m = member_scores(frame, scales)
    assert m["count"] == 2
    assert (m["by_member"]["up"]["mase"], m["by_member"]["down"]["mase"]) == (pytest.approx(up), pytest.approx(down))
    assert m["mase_mean"] == pytest.approx((up + down) / 2) and m["mase_best"] == pytest.approx(up)
    assert m["mase_sd"] == pytest.approx(abs(down - up) / np.sqrt(2))  # the sample sd of two values
    smape_up = 100 * np.mean(np.abs(actual - last - 1) / ((actual + last + 1) / 2))
    assert m["by_member"]["up"]["smape"] == pytest.approx(smape_up)
    assert member_scores(frame.drop(columns="member_down"), scales) == {}  # one member: nothing to spread over
    assert "member_up" not in bt.run_backtest(Spy(refit_every=1), y, origin_list, 2, []).columns


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
    # told ahead only the histories it is refitted on, each exactly the past of its origin
    refits = [origin for k, origin in enumerate(origins) if k % refit_every == 0]
    assert len(spy.prepared) == len(refits)
    for history, origin in zip(spy.prepared, refits):
        np.testing.assert_array_equal(history, y[:origin])
    assert (frame["index"] >= frame["origin"]).all() and (frame["index"] < frame["origin"] + horizon).all()
    np.testing.assert_array_equal(frame["actual"], y[frame["index"]])
    assert len(frame) == len(origins) * horizon


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_origins=st.integers(4, 14), horizon=st.integers(1, 3))
def test_empirical_intervals_use_only_errors_known_at_the_origin(seed, n_origins, horizon):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n_origins + horizon + 5).cumsum()
    origins = bt.origins(len(y), horizon, n_origins, 1)
    frame = bt.run_backtest(Naive(NaiveSpec(kind="naive")), y, origins, horizon, levels=[80])
    filled = bt.empirical_intervals(frame, [80])
    for i in filled.index:
        later = frame["index"] >= frame.at[i, "origin"]  # targets not yet observed at row i's origin
        changed = frame.copy()
        changed.loc[later, "actual"] += rng.normal(scale=100, size=int(later.sum()))
        again = bt.empirical_intervals(changed, [80])
        assert again.at[i, "lo80"] == filled.at[i, "lo80"] or (np.isnan(again.at[i, "lo80"]) and np.isnan(filled.at[i, "lo80"]))
        assert again.at[i, "hi80"] == filled.at[i, "hi80"] or np.isnan(filled.at[i, "hi80"])


def test_empirical_intervals_by_hand():
    # Five earlier one-step errors 1..5, all known before origin 10.
    frame = pd.DataFrame({"origin": [3, 4, 5, 6, 7, 10], "h": 1, "index": [3, 4, 5, 6, 7, 10],
                          "actual": [1.0, 2.0, 3.0, 4.0, 5.0, 0.0], "forecast": 0.0, "lo80": np.nan, "hi80": np.nan})
    out = bt.empirical_intervals(frame, [80])
    # Split conformal: the ceil(6 * 0.8) = 5th smallest absolute error, either side of the forecast.
    assert (out.at[5, "lo80"], out.at[5, "hi80"]) == (-5.0, 5.0)
    # Origin 7 knows four errors: ceil(5 * 0.8) = 4, the 4th; origin 6 knows three, too few for 80%.
    assert (out.at[4, "lo80"], out.at[4, "hi80"]) == (-4.0, 4.0)
    assert np.isnan(out.at[3, "lo80"]) and np.isnan(out.at[3, "hi80"])


def test_the_conformal_rank_and_the_fewest_errors_a_level_needs_by_hand():
    errors = np.array([-3.0, 1.0, -5.0, 2.0, 4.0])  # absolute: 1 2 3 4 5
    assert bt.conformal_radius(errors, 80) == 5.0  # k = ceil(6 * 0.8) = 5
    assert bt.conformal_radius(errors, 50) == 3.0  # k = ceil(6 * 0.5) = 3
    assert np.isnan(bt.conformal_radius(errors[:3], 80))  # k = ceil(4 * 0.8) = 4 > 3
    assert [min_calibration(level) for level in (50, 80, 90, 95, 99)] == [1, 4, 9, 19, 99]
    for level in (80, 90, 95):  # the least n with ceil((n + 1) * level / 100) <= n
        n = min_calibration(level)
        assert not np.isnan(bt.conformal_radius(np.ones(n), level))
        assert np.isnan(bt.conformal_radius(np.ones(n - 1), level))


def test_conformal_intervals_cover_their_level_over_many_origins_within_a_binomial_band():
    # A random walk forecast by the naive method: its one-step errors are the walk's iid steps, exchangeable
    # as the conformal guarantee assumes. Every origin's interval uses only the errors known before it.
    rng = np.random.default_rng(7)
    y = rng.standard_t(df=4, size=700).cumsum()  # heavy-tailed steps: a normal band would miss more
    origins = bt.origins(len(y), 1, 600, 1)
    frame = bt.empirical_intervals(bt.run_backtest(Naive(NaiveSpec(kind="naive")), y, origins, 1, [80, 95]),
                                   [80, 95])
    scored = frame[frame["origin"] >= origins[0] + 50]  # at least 50 calibration errors behind each
    for level in (80, 95):
        inside = (scored["actual"] >= scored[f"lo{level}"]) & (scored["actual"] <= scored[f"hi{level}"])
        p, n = level / 100, len(scored)
        band = 3 * np.sqrt(p * (1 - p) / n)
        assert p - band <= inside.mean() <= p + 1 / 51 + band, (level, inside.mean())


def test_a_dropped_interrupt_stops_the_backtest_at_the_next_origin():
    import signal

    from stages.lib.infra import interrupts

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



def test_the_length_check_names_the_most_demanding_forecaster():
    from stages.lib.config import BacktestParams
    from stages.lib.errors import DataError

    backtest = BacktestParams(horizon=2, n_windows=3, step_size=2, calibration_windows=1)
    specs = {"naive": SPECS["naive"](kind="naive"), "arima": ArimaSpec(kind="arima", order=[1, 0, 0])}
    # ARIMA needs max(10, 2 * 12 + 4) = 28 points before the first origin, then 2 + (3 + 1 - 1) * 2 = 8 more.
    bt.check_lengths(36, "in.csv", backtest, specs, season_length=12, num_steps=3)
    with pytest.raises(DataError, match=r"^in\.csv: 35 points is too short for backtest\.horizon=2, n_windows=3, "
                                        r"step_size=2, calibration_windows=1 with forecaster 'arima' \(needs at least 36: "
                                        r"28 before the first origin\)$"):
        bt.check_lengths(35, "in.csv", backtest, specs, season_length=12, num_steps=3)


def forecast_sales(tmp_path, monkeypatch, raw_params: dict, keras: list[str] = ()) -> tuple[np.ndarray, dict]:
    """Ingest sales, backtest its baselines and the ``keras`` forecasters of ``raw_params`` (every other forecaster
    is kept off sales, the statistical ones off everything) and evaluate, through the stages' own mains, untracked;
    the series and the metrics."""
    import json

    import yaml

    from stages import backtest, evaluate_forecast, ingest
    from stages.lib.infra import cli, paths
    from stages.lib.infra.paths import ROOT

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    monkeypatch.chdir(ROOT)  # the dataset's file is a path from the repository root
    raw_params["statistical"] = {}
    for name, spec in raw_params["forecasters"].items():
        spec["datasets"] = ["sales"] if name in keras else ["elnino"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")
    series = tmp_path / "series.csv"
    cli.run(ingest.main, ["--dataset", "sales", "--out", str(series)])
    cli.run(backtest.main, ["--dataset", "sales", "--group", "baselines", "--series", str(series),
                            "--out", str(tmp_path / "baselines")])
    for name in keras:
        cli.run(backtest.main, ["--dataset", "sales", "--forecaster", name, "--series", str(series),
                                "--out", str(tmp_path / "backtests" / name)])
    cli.run(evaluate_forecast.main, [
        "--dataset", "sales", "--series", str(series), "--baselines", str(tmp_path / "baselines"),
        "--statistical", str(tmp_path / "statistical"), "--backtests", str(tmp_path / "backtests"),
        "--metrics", str(tmp_path / "m.json"), "--plot-data", str(tmp_path / "plots"),
        "--figure", str(tmp_path / "f.png")])
    return pd.read_csv(series)["value"].to_numpy(), json.loads((tmp_path / "m.json").read_text())


def test_the_holdout_protocol_forecasts_a_dataset_own_horizon_from_one_origin(tmp_path, monkeypatch, raw_params):
    """backtest.protocol: holdout, with sales' horizon 6: one evaluation origin (the last 6 points held out), the
    naive forecast and its scores by hand, and the protocol recorded in the metrics."""
    # 80% only: 9 calibration origins leave 4 known errors at step 6, what a split-conformal 80% interval needs.
    raw_params["backtest"].update(protocol="holdout", calibration_windows=9, levels=[80])
    raw_params["datasets"]["sales"]["horizon"] = 6
    y, metrics = forecast_sales(tmp_path, monkeypatch, raw_params)  # the baselines alone on sales
    frame = pd.read_csv(tmp_path / "baselines/naive/forecasts.csv")
    evaluation = frame[frame["window"] == "evaluation"]
    assert set(evaluation["origin"]) == {45 - 6} and list(evaluation["h"]) == [1, 2, 3, 4, 5, 6]
    assert sorted(set(frame["origin"])) == list(range(45 - 6 - 9, 45 - 6 + 1))  # 9 calibration origins, a step apart
    # The evaluation origin's 80% band at step 6: the 4th smallest of the 4 known absolute step-6 errors.
    known = frame[(frame["h"] == 6) & (frame["index"] < 45 - 6)]
    radius = np.sort(np.abs(known["actual"] - known["forecast"]))[3]
    last = evaluation[evaluation["h"] == 6].iloc[0]
    assert len(known) == 4 and last["hi80"] - last["forecast"] == pytest.approx(radius)
    np.testing.assert_allclose(evaluation["forecast"], y[38])
    assert (metrics["protocol"], metrics["horizon"], metrics["n_windows"]) == ("holdout", 6, 1)
    assert metrics["naive"]["all"]["mae"] == pytest.approx(np.mean(np.abs(y[39:] - y[38])), rel=1e-6)
    assert metrics["naive"]["h6"]["mae"] == pytest.approx(abs(y[44] - y[38]), rel=1e-6)


def test_a_keras_forecaster_of_two_seeds_reports_each_seed_beside_their_median(tmp_path, monkeypatch, raw_params):
    """forecasters.lstm with seeds [1, 2] through the backtest and evaluate_forecast stages: forecasts.csv keeps each
    seed's forecast, the median is their mean, the metrics' `seeds` score each seed alone (MASE by hand from the
    file) and forecast.md's line says what the median buys."""
    from stages.report import seeds_lines

    lstm = raw_params["forecasters"]["lstm"]
    lstm.update(seeds=[1, 2], arch={"units": [4], "dense": []})
    lstm["fit"].update(max_epochs=2)
    y, metrics = forecast_sales(tmp_path, monkeypatch, raw_params, keras=["lstm"])
    frame = pd.read_csv(tmp_path / "backtests/lstm/forecasts.csv")
    assert not np.allclose(frame["member_seed1"], frame["member_seed2"])  # two networks
    np.testing.assert_allclose(frame["forecast"], (frame["member_seed1"] + frame["member_seed2"]) / 2)
    evaluation = frame[frame["window"] == "evaluation"]
    scale = evaluation["origin"].map(lambda o: np.mean(np.abs(np.diff(y[:o]))))  # sales has no season: naive MAE
    alone = {s: float(np.mean(np.abs(evaluation["actual"] - evaluation[f"member_seed{s}"]) / scale)) for s in (1, 2)}
    members = metrics["lstm"]["seeds"]
    # The metrics file keeps 6 significant digits.
    assert members["count"] == 2 and members["by_member"]["seed2"]["mase"] == pytest.approx(alone[2], rel=1e-5)
    assert members["mase_mean"] == pytest.approx((alone[1] + alone[2]) / 2, rel=1e-5)
    assert members["mase_best"] == pytest.approx(min(alone.values()), rel=1e-5)
    assert "seeds" not in metrics["naive"]  # one member
    line = seeds_lines(metrics, ["naive", "lstm"])[2]
    assert line.startswith("- lstm, the median of 2 seeds: MASE ") and "mean ± sd over the seeds" in line


def test_a_forecaster_its_datasets_leave_out_gets_no_folder_and_a_hand_typed_run_one_line(tmp_path, monkeypatch,
                                                                                           raw_params, capsys):
    import yaml

    from stages import backtest, ingest
    from stages.lib.infra import cli, paths
    from stages.lib.infra.paths import ROOT

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    monkeypatch.chdir(ROOT)
    for spec in raw_params["forecasters"].values():
        spec["datasets"] = ["elnino"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")
    series = tmp_path / "series.csv"
    cli.run(ingest.main, ["--dataset", "sales", "--out", str(series)])
    # backtest@sales starts no member: its folder is there, empty.
    cli.run(backtest.main, ["--dataset", "sales", "--group", "forecasters", "--series", str(series),
                            "--out", str(tmp_path / "backtest")])
    assert list((tmp_path / "backtest").iterdir()) == []
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        cli.run(backtest.main, ["--dataset", "sales", "--forecaster", "arima", "--series", str(series),
                                "--out", str(tmp_path / "arima")])
    assert stopped.value.code == 2 and not (tmp_path / "arima").exists()
    assert capsys.readouterr().err == "error: params.yaml: forecasters.arima.datasets does not list 'sales'\n"
