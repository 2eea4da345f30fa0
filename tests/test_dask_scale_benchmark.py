"""benchmarks/dask_scale.py, tiny, through the same code as the measurement (real stages, a real Dask cluster)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.dask
ROOT = Path(__file__).resolve().parents[1]


def test_the_scale_benchmark_runs_every_stage_checks_the_cluster_bytes_and_resumes(tmp_path):
    results, report = tmp_path / "results", tmp_path / "scale.md"
    command = [sys.executable, "benchmarks/dask_scale.py", "--series", "30", "--sample", "6", "--classical", "8", "--quick",
               "--rounds", "2", "--results", str(results), "--report", str(report)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = report.read_text()
    # Both cluster runs gave the joblib run's forecasts byte for byte.
    assert text.count("| byte-identical |") == 2 and "**differs**" not in text
    assert "reference; every round byte-identical" in text
    # Two rounds: each engine's median and range, and the overhead as the median of the two rounds' ratios.
    walls = {e + s: json.loads((results / f"sample_{e}{s}.json").read_text())["wall_s"]
             for e in ("joblib", "dask2") for s in ("", "-r1")}
    ratios = [walls[f"dask2{s}"] / walls[f"joblib{s}"] - 1 for s in ("", "-r1")]
    assert f"{sum(ratios) / 2 * 100:+.1f}% wall time, the median of the rounds' ratios" in text
    # The output-volume run: nine forecasters on every series, as many as the whole classical set.
    volume = pd.read_csv(results / "project" / "data" / "panel" / "synthetic" / "forecasts-volume.csv")
    assert volume["forecaster"].nunique() == 9 and volume["id"].nunique() == 30
    for stage in ("ingest_panel", "evaluate_panel (the nine: the whole set's output volume)", "report",
                  "panel_model (one N-BEATS-G network, global)", "the same on Dask, 2 workers",
                  "panel@ with the classical set's output volume (9 forecasters: the four above and 5 copies of Naive2)",
                  "panel@ on joblib, 2 processes", "panel@ on Dask, 2 workers"):
        # Each stage's wall time, its largest process and its whole tree (the stage with its workers; on the cluster
        # the workers' own peaks beside it).
        assert re.search(rf"\| {re.escape(stage)} \| [0-9.]+ \| [0-9]+ \| [0-9]+( \+ 2 workers × [0-9]+)? \|",
                         text), stage
    assert text.count(" + 2 workers × ") == 2
    # The whole classical set on 8 series through every stage, on the cluster byte for byte as on joblib.
    whole = pd.read_csv(results / "project" / "data" / "panel" / "synthetic_classical" / "forecasts.csv")
    assert whole["forecaster"].nunique() == 9 and whole["id"].nunique() == 8
    assert re.search(r"worker peak [0-9]+ MiB, forecasts byte-identical to joblib's", text)
    assert "fast four's forecasts are byte-identical to joblib's" in text
    joblib = json.loads((results / "classical_joblib.json").read_text())
    # The stage and its workers hold at least the largest of them. (8 series are enough for joblib's two processes,
    # stages/lib/panel/run.py's MIN_SERIES_PER_CORE; a stage alone, sampled, can read a little under its ru_maxrss.)
    assert joblib["tree_peak_mb"] >= joblib["peak_mb"] > 50
    # The projection is the measured cost spread over the cores: 4x the cores, a quarter of the time.
    minutes = {int(c): int(m) for c, m in re.findall(r"\| (\d+) \| [0-9.]+ h \((\d+) min\) \|", text)}
    assert set(minutes) == {8, 32, 128} and abs(minutes[8] / max(minutes[32], 1) - 4) < 0.2
    forecasts = results / "project" / "data" / "panel" / "synthetic" / "forecasts.csv"
    assert forecasts.exists()
    measured = json.loads((results / "sample_dask2.json").read_text())
    assert measured["identical"] and measured["worker_peak_mb"] > 50
    # A rerun measures nothing again: every step is read from --results.
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and " ..." not in again.stdout
    assert report.read_text() == text
    # Other settings in the same folder are refused, naming it.
    other = subprocess.run([*command[:3], "31", *command[4:]], cwd=ROOT, capture_output=True, text=True)
    assert other.returncode != 0 and str(results) in other.stderr

