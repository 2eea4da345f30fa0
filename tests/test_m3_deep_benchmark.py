"""benchmarks/m3_deep.py, the long M3 run of the deep models, in a tiny version through the same code: two series
per panel, two members, two epochs of two batches. It resumes from its cache and reports ensembles by hand."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd

from tests.project import ROOT


def run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/m3_deep.py"), "--models", "nbeats_g", "--members", "2",
                           "--sample", "2", "--quick", "--cache", str(tmp_path / "cache"),
                           "--report", str(tmp_path / "m3_deep.md"), "--figure", str(tmp_path / "m3.png"), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_the_benchmark_trains_each_member_once_and_reports_its_ensembles(tmp_path):
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("nbeats_g member") == 8  # 2 members x 4 panels
    cached = tmp_path / "cache/nbeats_g/m3_monthly"
    members = [pd.read_csv(cached / f"00{i}.csv", dtype={"id": str}) for i in (0, 1)]
    assert len(members[0]) == 2 * 18 and members[0]["forecast"].notna().all()
    # Resumed: nothing is trained again, the cache is read as it is.
    stamp = (cached / "000.csv").stat().st_mtime_ns
    again = run(tmp_path)
    assert again.returncode == 0 and "nbeats_g member" not in again.stdout
    assert (cached / "000.csv").stat().st_mtime_ns == stamp
    report = (tmp_path / "m3_deep.md").read_text()
    assert "| nbeats_g | 1 |" in report and "| nbeats_g | 2 |" in report and (tmp_path / "m3.png").stat().st_size > 1000
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
