"""benchmarks/m3_classical.py, tiny: the same code as the all-M3 run, on a sample of one panel."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_m3_classical_benchmark_reports_coverage_and_resumes(tmp_path):
    results, report = tmp_path / "results", tmp_path / "m3.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "m3_classical.py"), "--panels", "m3_other", "--sample", "24",
           "--results", str(results), "--report", str(report)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    text = report.read_text()
    assert "| panel@m3_other |" in text and "95% coverage" in text
    metrics = json.loads((results / "project" / "reports" / "metrics" / "panel-m3_other.json").read_text())
    assert metrics["series"] == 24 and 0 < metrics["theta"]["coverage_95"] <= 1
    assert (tmp_path / "figures" / "m3" / "cd-m3_other.png").exists()
    assert "([diagram](figures/m3/cd-groups.png))" in text  # the pooled group's diagram, linked
    links = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert links and all((report.parent / link).exists() for link in links), links  # every figure link resolves
    # A rerun runs only the report again: every stage is read from --results.
    again = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert "panel_m3_other ..." not in again.stdout and "report ..." in again.stdout
    other = subprocess.run([*cmd[:3], "m3_yearly", *cmd[4:]], capture_output=True, text=True)
    assert other.returncode != 0 and str(results) in other.stderr
