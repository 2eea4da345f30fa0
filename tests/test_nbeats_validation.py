"""benchmarks/nbeats_validation.py, the validation-only choice of the N-BEATS training settings, in a tiny version
through the same code: three series per panel, one seed, two epochs of two batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.project import ROOT

VARIANTS = ["mean start (before)", "last start"]


def run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/nbeats_validation.py"), "--sample", "3", "--quick",
                           "--panels", "m3_yearly", "--cache", str(tmp_path), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_each_variant_is_validated_once_per_seed_and_tabled(tmp_path):
    first = run(tmp_path, "--seeds", "0", "1", "--variants", *VARIANTS)
    assert first.returncode == 0, first.stderr[-2000:]
    records = sorted(tmp_path.glob("nbeats_g/*/m3_yearly-seed*.json"))
    assert len(records) == 4 and first.stdout.count(" validation ") == 4
    # The table's mean is the mean of the two seeds' validation losses, as cached.
    for name in VARIANTS:
        losses = [json.loads(p.read_text())["best_val_loss"] for p in records if json.loads(p.read_text())["variant"] == name]
        row = next(line for line in first.stdout.splitlines() if line.startswith(f"| {name} | yearly |"))
        assert row.split("|")[5].strip() == f"{np.mean(losses):.3f}"
    # Each fit keeps its validation curve, one value per look (2 with --quick), whose lowest is the best loss.
    for path in records:
        record = json.loads(path.read_text())
        assert len(record["val_curve"]) == 2
        assert min(record["val_curve"]) == pytest.approx(record["best_val_loss"], abs=1e-4)
    # The two starts are different networks: the same seed does not give the same validation loss.
    by_variant = {json.loads(p.read_text())["variant"]: json.loads(p.read_text())["best_val_loss"]
                  for p in records if p.name.endswith("seed0.json")}
    assert by_variant[VARIANTS[0]] != by_variant[VARIANTS[1]]
    # Resumed: what is cached is not trained again.
    stamps = [p.stat().st_mtime_ns for p in records]
    report = tmp_path / "report.md"
    figure = tmp_path / "curves.png"
    again = run(tmp_path, "--seeds", "0", "1", "--variants", *VARIANTS, "--report", str(report), "--figure", str(figure))
    assert again.returncode == 0 and " validation " not in again.stdout
    assert [p.stat().st_mtime_ns for p in records] == stamps
    # The report is the printed table under its heading.
    table = [line for line in again.stdout.splitlines() if line.startswith("|")]
    text = report.read_text()
    assert text.startswith("# N-BEATS training settings") and text.endswith("## nbeats_g\n\n" + "\n".join(table) + "\n")
    # The curves are drawn, every variant's.
    assert figure.stat().st_size > 10_000 and f"wrote {figure} ({', '.join(sorted(VARIANTS))})" in again.stdout


def test_a_recursive_entry_is_refused_naming_the_option(tmp_path):
    bad = run(tmp_path, "--model", "lstm_global")
    assert bad.returncode != 0 and "--model: lstm_global is not an output: direct entry" in bad.stderr
    assert not any(tmp_path.iterdir())
